"""Training configuration: defaults, YAML files, command-line overrides, the resolved copy."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
import types
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from ._engine import errors as engine_errors, features as engine_features


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


@dataclass
class DataConfig:
    """Where the clips come from and how they become labels."""

    data_dir: str = ""  # one folder, or several separated by commas (merged)
    positive_label: str = "crying"
    negative_label: str = "not_crying"
    # Labels to use (folder names / manifest labels); empty = all. Every label other than the
    # positive one trains the negative class.
    wanted_words: list[str] = field(default_factory=list)
    sources: list[str] = field(
        default_factory=list
    )  # manifest sources to use; empty = all
    clip_duration_ms: int | None = None  # use at most this much of each clip
    input_sample_rate: int | None = None  # rate of the raw clips (information only)
    max_windows_per_clip: int = 24  # training windows per clip and copy (long files)
    # A cry clip is labelled as a whole, but the pauses between its bursts are room noise: its
    # training windows more than this many dB below the clip's loudest are left out (null = keep).
    positive_window_floor_db: float | None = None


@dataclass
class SplitConfig:
    """Group split: train / val (checkpoint selection) / test (reported metrics)."""

    val_fraction: float = 0.15
    test_fraction: float = 0.15
    holdout_sources: list[str] = field(default_factory=list)  # whole sources -> test


@dataclass
class AugmentConfig:
    """Nursery-like augmentation of training clips (waveform domain, before the features)."""

    copies: int = 2  # augmented copies per training clip, besides the clean one
    background_probability: float = 0.8
    synthetic_background_probability: float = (
        0.3  # noise machine / fan instead of a corpus clip
    )
    snr_db: list[float] = field(default_factory=lambda: [0.0, 25.0])
    gain_db: list[float] = field(default_factory=lambda: [-20.0, 10.0])
    band_limit_probability: float = 0.5
    lowpass_hz: list[float] = field(default_factory=lambda: [1800.0, 4000.0])
    highpass_hz: list[float] = field(default_factory=lambda: [40.0, 400.0])
    reverb_probability: float = 0.5
    rt60_seconds: list[float] = field(default_factory=lambda: [0.15, 0.9])
    direct_to_reverb_db: list[float] = field(default_factory=lambda: [-3.0, 12.0])
    time_shift_ms: float = 250.0


@dataclass
class HardNegativeConfig:
    """Synthetic hard negatives: training cries pitched down to an adult voice's range.

    Adult crying, moaning, screaming and laughing share a cry's rhythm and harmonic sweeps;
    what they lack is its 300-600 Hz fundamental. A training cry resampled by a factor in
    `pitch_factor` (0.4-0.7: F0 120-420 Hz, slower) labelled negative teaches exactly that.
    """

    pitched_cries: int = 0  # pitched-down copies of every training cry (0 = off)
    pitch_factor: list[float] = field(default_factory=lambda: [0.4, 0.7])
    # Mining: before these stages (1-based), training negatives the model scores at or above
    # mining_threshold are found and seen `mined_repeats` more times per pass from then on.
    mine_before_stages: list[int] = field(default_factory=list)
    mining_threshold: float = 0.5
    mined_repeats: int = 4


@dataclass
class DistillConfig:
    """A frozen pretrained embedding as teacher (teacher.py), off unless `teacher` names one.

    A probe on its embedding gives each training window a probability, mixed into the label.
    """

    teacher: str = ""  # "" = off; "aisfx" (pip install --no-deps aisfx==0.1.2)
    # The teacher's checkpoint.pth; empty = the one inside the installed aisfx package.
    checkpoint: str = ""
    weight: float = 0.5  # target = (1 - weight) x label + weight x teacher probability
    folds: int = 5  # the probe is cross-fitted: no window is scored by a probe that saw its group
    l2: float = 5.0  # the probe's L2 penalty


@dataclass
class ModelConfig:
    """DS-CNN shape: a first convolution, then depthwise-separable blocks."""

    architecture: str = "ds_cnn"
    first_filters: int = 24
    first_kernel: list[int] = field(default_factory=lambda: [3, 3])
    first_stride: list[int] = field(default_factory=lambda: [2, 2])
    blocks: list[list[int]] = field(
        default_factory=lambda: [[48, 2], [48, 1], [64, 2], [64, 1]]
    )  # [filters, stride]
    dropout: float = 0.1


@dataclass
class TrainingConfig:
    """Optimisation: staged schedule (steps and learning rate per stage), batches, balance."""

    batch_size: int = 64
    how_many_training_steps: list[int] = field(default_factory=lambda: [3000, 1000])
    learning_rate: list[float] = field(default_factory=lambda: [0.001, 0.0001])
    eval_step_interval: int = 250
    class_balance: str = "weights"  # weights | sampling | none
    threads: int = 2
    # A .keras model of the same architecture whose weights start the training (fine-tuning,
    # e.g. onto other features); relative to the directory cry-train runs in. Empty: random.
    init_from: str = ""


@dataclass
class SelectionConfig:
    """Checkpoint selection the way deployment uses the model: false alarms first, then recall."""

    max_false_alarms_per_hour: float = 1.0
    thresholds: list[float] = field(
        default_factory=lambda: [
            *(round(0.2 + 0.05 * step, 2) for step in range(15)),
            0.95,
            0.97,
            0.98,
            0.99,
        ]
    )
    tracker: dict[str, float] = field(
        default_factory=lambda: {
            "hysteresis": 0.1,
            "smoothing_windows": 2,
            "min_cry_seconds": 2.0,
            "hold_seconds": 4.0,
            "cooldown_seconds": 0.0,
        }
    )


@dataclass
class ExportConfig:
    """Model card identity."""

    name: str = ""  # empty: the exported file's name (my-baby.tflite -> "my-baby")
    version: str = "1.0.0"
    limitations: list[str] = field(
        default_factory=lambda: [
            (
                "All training cries come from one source (donateacry: parents' phone "
                "recordings, 8 kHz telephone-band originals); other babies, microphones and "
                "rooms score differently. Retrain on your own recordings for best results."
            ),
            "Infants 0-2 years only: cries of toddlers over 2 years are absent from the data.",
            "Features are band-limited to 60-3800 Hz because every cry was recorded at 8 kHz.",
            (
                "Metrics come from held-out groups of the same small corpus and overestimate "
                "real-world performance; see metrics.heldout_source for an unseen source."
            ),
            (
                "Trained negatives are environmental sounds, adult vocalisations, speech, "
                "music and room tone; other sounds (e.g. some cats, toys, TV cartoons) may "
                "trigger it."
            ),
            (
                "False alarms: metrics.test.long_stream counts false episodes in 24 h of the "
                "test negatives replayed (a new order, gain and noise floor each pass). That "
                "repeats well under an hour of distinct, deliberately hard sounds: it measures "
                "how reliably they are rejected, not a real nursery's day. Adult crying, "
                "screaming and laughing, cats and alarms remain the main false alarms."
            ),
            "Not a medical device: do not rely on it for a baby's safety.",
        ]
    )


@dataclass
class Config:
    """Everything `cry-train train` needs; saved resolved beside the outputs."""

    seed: int = 20261123
    cache_dir: str = ".cache/features"
    features: dict[str, Any] = field(
        default_factory=dict
    )  # overrides of the engine defaults
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    hard_negatives: HardNegativeConfig = field(default_factory=HardNegativeConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def feature_config(self) -> engine_features.FeatureConfig:
        """Return the engine FeatureConfig (defaults plus `features` overrides)."""
        try:
            return engine_features.FeatureConfig.from_dict(dict(self.features))
        except engine_errors.ModelCardError as err:
            raise ConfigError(str(err)) from err

    @property
    def teacher_cache_dir(self) -> Path | None:
        """Where the distillation teacher's embeddings are cached (None: not cached)."""
        return Path(self.cache_dir) / "teacher" if self.cache_dir else None

    def to_dict(self) -> dict[str, Any]:
        """Return plain data (YAML/JSON ready)."""
        return asdict(self)

    def check(self) -> None:
        """Validate relations the types cannot express; raise ConfigError naming the key."""
        self.feature_config()
        stages = self.training
        if not stages.how_many_training_steps or any(
            steps < 1 for steps in stages.how_many_training_steps
        ):
            raise ConfigError(
                "training.how_many_training_steps must be positive integers"
            )
        if len(stages.how_many_training_steps) != len(stages.learning_rate):
            raise ConfigError(
                "training.how_many_training_steps and training.learning_rate need the same "
                f"number of stages, got {stages.how_many_training_steps} and {stages.learning_rate}"
            )
        if any(rate <= 0 for rate in stages.learning_rate):
            raise ConfigError("training.learning_rate values must be positive")
        if stages.class_balance not in ("weights", "sampling", "none"):
            raise ConfigError(
                "training.class_balance must be weights, sampling or none"
            )
        if stages.batch_size < 1 or stages.eval_step_interval < 1:
            raise ConfigError(
                "training.batch_size and eval_step_interval must be positive"
            )
        if (
            not 0 <= self.split.val_fraction < 1
            or not 0 <= self.split.test_fraction < 1
        ):
            raise ConfigError("split fractions must be in [0, 1)")
        if self.split.val_fraction + self.split.test_fraction >= 1:
            raise ConfigError(
                "split.val_fraction + split.test_fraction must be below 1"
            )
        if self.augment.copies < 0 or self.data.max_windows_per_clip < 1:
            raise ConfigError("augment.copies >= 0 and data.max_windows_per_clip >= 1")
        floor = self.data.positive_window_floor_db
        if floor is not None and floor <= 0:
            raise ConfigError(
                f"data.positive_window_floor_db must be positive dB or null, got {floor}"
            )
        for name in (
            "snr_db",
            "gain_db",
            "lowpass_hz",
            "highpass_hz",
            "rt60_seconds",
            "direct_to_reverb_db",
        ):
            low_high = getattr(self.augment, name)
            if len(low_high) != 2 or low_high[0] > low_high[1]:
                raise ConfigError(f"augment.{name} must be [low, high], got {low_high}")
        factor = self.hard_negatives.pitch_factor
        if (
            self.hard_negatives.pitched_cries < 0
            or len(factor) != 2
            or not 0 < factor[0] <= factor[1]
        ):
            raise ConfigError(
                "hard_negatives.pitched_cries >= 0 and pitch_factor [low, high] > 0"
            )
        stages = len(self.training.how_many_training_steps)
        hard = self.hard_negatives
        if (
            any(not 2 <= stage <= stages for stage in hard.mine_before_stages)
            or not 0 < hard.mining_threshold < 1
            or hard.mined_repeats < 1
        ):
            raise ConfigError(
                f"hard_negatives: mine_before_stages must name stages 2..{stages}, "
                "mining_threshold be in (0, 1) and mined_repeats >= 1"
            )
        distill = self.distill
        if (
            distill.teacher not in ("", "aisfx")
            or not 0 < distill.weight <= 1
            or distill.folds < 2
            or distill.l2 <= 0
        ):
            raise ConfigError(
                "distill: teacher must be '' or 'aisfx', weight in (0, 1], folds >= 2, l2 > 0"
            )
        if self.model.architecture != "ds_cnn":
            raise ConfigError(
                f"model.architecture: only ds_cnn, got {self.model.architecture!r}"
            )
        if not self.selection.thresholds or not all(
            0 < value < 1 for value in self.selection.thresholds
        ):
            raise ConfigError("selection.thresholds must be numbers in (0, 1)")


def _matches(value: Any, hint: Any) -> bool:
    """Loose runtime check of a YAML value against a type hint."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arm) for arm in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = get_args(hint)
        return isinstance(value, list) and all(_matches(entry, item) for entry in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, hint)


def _coerce(value: Any, hint: Any) -> Any:
    """Turn ints into floats where a float is expected (YAML writes 1 for 1.0)."""
    if hint is float and isinstance(value, int):
        return float(value)
    if get_origin(hint) is list and isinstance(value, list):
        (item,) = get_args(hint)
        return [_coerce(entry, item) for entry in value]
    if get_origin(hint) in (Union, types.UnionType):
        arms = [arm for arm in get_args(hint) if _matches(value, arm)]
        return _coerce(value, arms[0]) if arms else value
    return value


def merge(instance: Any, data: dict[str, Any], prefix: str = "") -> None:
    """Apply nested overrides to a config dataclass in place; ConfigError on unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{prefix or 'config'} must be a mapping, got {type(data).__name__}"
        )
    hints = get_type_hints(type(instance))
    known = {item.name for item in fields(instance)}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(f"unknown config key {name!r}")
        current = getattr(instance, key)
        if is_dataclass(current):
            merge(current, value, f"{name}.")
        elif not _matches(value, hints[key]):
            raise ConfigError(f"config key {name!r} has the wrong type: {value!r}")
        else:
            setattr(instance, key, _coerce(value, hints[key]))


def load_config(path: Path | None = None) -> Config:
    """Return defaults overlaid with a YAML file (when given)."""
    config = Config()
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read config: {err}") from err
        merge(config, data)
    return config


def set_value(config: Config, assignment: str) -> None:
    """Apply one `dotted.key=yaml-value` override."""
    key, separator, text = assignment.partition("=")
    if not separator or not key:
        raise ConfigError(f"--set wants key=value, got {assignment!r}")
    value: Any = yaml.safe_load(text)
    for part in reversed(key.split(".")):
        value = {part: value}
    merge(config, value)


def save_config(config: Config, path: Path) -> None:
    """Write the resolved configuration as YAML."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)
    path.write_text(text, encoding="utf-8")
