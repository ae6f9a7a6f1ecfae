"""`cry-train train`: a staged DS-CNN training on cached, augmented engine features.

Clips are split by group, features come from the engine, and checkpoints are selected the way
deployment uses them: false alarms per hour under a target first, then recall.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
import json
import math
import os
from pathlib import Path
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from ._progress import progress_bar
from .augment import Augmenter, pitch_shift
from .config import Config, save_config
from .dataset import (
    Clip,
    assign_splits,
    load_data_dirs,
    select_clips,
    source_summary,
    write_split,
)
from .metrics import SelectionScore, best_threshold, roc_auc, stream_scores
from .windows import (
    WindowPlan,
    WindowSet,
    build_windows,
    cache_key,
    cached,
    clip_identity,
    clip_rng,
    concatenate_windows,
    make_loader,
)

Log = Callable[[str], None]
FloatArray = npt.NDArray[np.float32]

BEST_MODEL = "best.keras"
LAST_MODEL = "last.keras"
SELECTION_FILE = "selection.json"
HISTORY_FILE = "history.json"
SUMMARY_FILE = "summary.json"
SPLIT_FILE = "split.csv"
CONFIG_FILE = "config.yaml"
HELDOUT_FILE = "heldout_patches.npy"
HELDOUT_PATCHES = 64
LABELS_KEY = "labels"


@dataclass(frozen=True)
class PreparedData:
    """The clips, their split and the three window sets."""

    clips: list[Clip]
    splits: dict[Path, str]
    train: WindowSet
    val: WindowSet
    test: WindowSet
    # Soft targets of the training windows (distillation); None: the labels themselves.
    train_targets: FloatArray | None = None
    teacher: dict[str, Any] | None = None  # what taught them, for the model card


@dataclass(frozen=True)
class TrainResult:
    """Where the outputs went and what was selected."""

    train_dir: Path
    selection: dict[str, Any]
    seconds: float


def configure_tensorflow(threads: int, seed: int) -> None:
    """Pin threads, seeds and deterministic ops (before TensorFlow runs anything)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except (
        RuntimeError
    ):  # already initialised in this process (tests): keep its settings
        pass
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A progress bar over clips (stderr)."""
    return progress_bar(enabled=enabled, total=total, desc=desc, unit="clip")


def prepare_data(
    config: Config, train_dir: Path, log: Log, progress: bool = True
) -> PreparedData:
    """Select clips, split them by group, compute (or load cached) feature windows."""
    data = config.data
    features = config.feature_config()
    clips, warnings = select_clips(
        load_data_dirs(data.data_dir),
        positive_label=data.positive_label,
        negative_label=data.negative_label,
        wanted_words=data.wanted_words,
        sources=data.sources,
    )
    for warning in warnings:
        log(f"note: {warning}")
    splits = assign_splits(
        clips,
        seed=config.seed,
        val_fraction=config.split.val_fraction,
        test_fraction=config.split.test_fraction,
        holdout_sources=config.split.holdout_sources,
    )
    write_split(train_dir / SPLIT_FILE, clips, splits)
    by_split = {
        name: [c for c in clips if splits[c.path] == name]
        for name in ("train", "val", "test")
    }
    for name, members in by_split.items():
        positives = sum(c.label == data.positive_label for c in members)
        log(
            f"{name}: {len(members)} clips ({positives} {data.positive_label}), "
            f"{len({c.group for c in members})} groups"
        )
    max_seconds = data.clip_duration_ms / 1000.0 if data.clip_duration_ms else None
    loader = make_loader(features.sample_rate, max_seconds)
    builder = _WindowBuilder(
        Path(config.cache_dir) if config.cache_dir else None, log, progress
    )
    sets = {}
    for name in ("val", "test"):
        plan = WindowPlan(
            features, data.positive_label, max_seconds=max_seconds, seed=config.seed
        )
        sets[name] = builder.windows(name, by_split[name], plan, loader)
    train_plan = WindowPlan(
        features,
        data.positive_label,
        copies=config.augment.copies,
        max_windows=data.max_windows_per_clip,
        max_seconds=max_seconds,
        seed=config.seed,
        positive_floor_db=data.positive_window_floor_db,
    )
    sets["train"] = builder.train_windows(by_split["train"], train_plan, config, loader)
    if not config.distill.teacher:
        return PreparedData(clips, splits, sets["train"], sets["val"], sets["test"])
    targets, teacher = _distillation_targets(
        config,
        by_split["train"],
        sets["train"],
        train_plan,
        loader,
        log=log,
        progress=progress,
    )
    return PreparedData(
        clips, splits, sets["train"], sets["val"], sets["test"], targets, teacher
    )


def _distillation_targets(
    config: Config,
    clips: Sequence[Clip],
    windows: WindowSet,
    plan: WindowPlan,
    loader: Callable[[Clip], FloatArray],
    *,
    log: Log,
    progress: bool,
) -> tuple[FloatArray, dict[str, Any]]:
    """The teacher's soft targets for the training windows, and the card's record of it."""
    from . import teacher as teaching

    distill = config.distill
    teacher = teaching.Teacher.load(
        Path(distill.checkpoint) if distill.checkpoint else None,
        config.teacher_cache_dir,
    )
    targets, auc = teaching.teacher_targets(
        clips,
        windows,
        plan,
        loader,
        teacher=teacher,
        distill=distill,
        progress=progress,
    )
    log(f"teacher: cross-fitted probe clip ROC-AUC {auc:.4f} on the training split")
    record = {
        **teaching.TEACHER_CARD,
        "checkpoint_sha256_16": teacher.digest,
        "weight": distill.weight,
        "probe_clip_roc_auc_crossfitted": round(auc, 4),
    }
    return targets, record


@dataclass(frozen=True)
class _WindowBuilder:
    """Builds a split's windows through the feature cache, with progress and a log line."""

    cache_dir: Path | None
    log: Log
    progress: bool

    def windows(
        self,
        name: str,
        clips: Sequence[Clip],
        plan: WindowPlan,
        loader: Callable[[Clip], FloatArray],
        *,
        augmenter: Augmenter | None = None,
        extra: dict[str, Any] | None = None,
    ) -> WindowSet:
        """Load the split's windows from the cache, or compute and cache them."""
        key = cache_key(clips, plan, extra or {})
        path = self.cache_dir / f"{name}-{key}.npz" if self.cache_dir else None

        def build() -> WindowSet:
            with _progress_bar(len(clips), f"features {name}", self.progress) as bar:
                return build_windows(clips, plan, loader, augmenter, bar.update)

        windows, was_cached = cached(path, build)
        source = "cache" if was_cached else "computed"
        self.log(
            f"{name}: {len(windows)} windows ({int(windows.labels.sum())} positive), {source}"
        )
        return windows

    def train_windows(
        self,
        clips: Sequence[Clip],
        plan: WindowPlan,
        config: Config,
        loader: Callable[[Clip], FloatArray],
    ) -> WindowSet:
        """Training windows: clean + augmented copies, training negatives as backgrounds."""
        audio: dict[Path, FloatArray] = {}

        def load(clip: Clip) -> FloatArray:
            if clip.path not in audio:
                audio[clip.path] = loader(clip)
            return audio[clip.path]

        negatives = [c for c in clips if c.label != config.data.positive_label]
        augmenter = Augmenter(
            config.augment,
            plan.config.sample_rate,
            lambda: [load(c) for c in negatives],
        )
        extra = {"augment": asdict(config.augment), "backgrounds": "train negatives v2"}
        windows = self.windows(
            "train", clips, plan, load, augmenter=augmenter, extra=extra
        )
        hard = config.hard_negatives
        if hard.pitched_cries <= 0:
            return windows
        cries = [
            replace(c, label=config.data.negative_label)
            for c in clips
            if c.label == config.data.positive_label
        ]

        def load_pitched(clip: Clip) -> FloatArray:
            rng = clip_rng(plan.seed, f"pitch:{clip_identity(clip)}", 0)
            return pitch_shift(
                load(clip),
                float(rng.uniform(hard.pitch_factor[0], hard.pitch_factor[1])),
            )

        pitched = self.windows(
            "train-pitched",
            cries,
            replace(plan, copies=hard.pitched_cries - 1),
            load_pitched,
            augmenter=augmenter,
            extra={**extra, "hard_negatives": asdict(hard)},
        )
        return concatenate_windows(windows, pitched)


def class_weights(labels: npt.NDArray[np.int8]) -> npt.NDArray[np.float32]:
    """Balanced class weights n / (2 n_c) for labels 0/1."""
    counts = np.bincount(labels.astype(np.int64), minlength=2).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (2.0 * np.maximum(counts, 1.0)), 0.0)
    return weights.astype(np.float32)


class BatchSampler:
    """Yields (indices, sample weights); class balance by weights, by sampling, or none."""

    def __init__(
        self, labels: npt.NDArray[np.int8], batch_size: int, balance: str, seed: int
    ) -> None:
        """Prepare the permutation state and weights."""
        self.labels = labels
        self.batch_size = batch_size
        self.balance = balance
        self.rng = np.random.default_rng([seed, 1])
        self.weights = (
            class_weights(labels) if balance == "weights" else np.ones(2, np.float32)
        )
        self._order = np.zeros(0, np.int64)
        self._by_class = [np.flatnonzero(labels == value) for value in (0, 1)]
        self._pool = np.arange(
            labels.size
        )  # every window once, plus emphasised repeats

    def emphasize(self, indices: npt.NDArray[np.int64], repeats: int) -> None:
        """From the next pass on, these windows come `repeats` more times (replacing earlier ones)."""
        extra = np.repeat(np.asarray(indices, np.int64), repeats)
        self._pool = np.concatenate((np.arange(self.labels.size), extra))
        self._by_class = [
            self._pool[self.labels[self._pool] == value] for value in (0, 1)
        ]

    def next(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Return the next batch."""
        if self.balance == "sampling" and all(group.size for group in self._by_class):
            half = self.batch_size // 2
            indices = np.concatenate(
                (
                    self.rng.choice(self._by_class[0], self.batch_size - half),
                    self.rng.choice(self._by_class[1], half),
                )
            )
            return indices, np.ones(indices.size, np.float32)
        if self._order.size < self.batch_size:
            self._order = np.concatenate(
                (self._order, self.rng.permutation(self._pool))
            )
        indices, self._order = (
            self._order[: self.batch_size],
            self._order[self.batch_size :],
        )
        return indices, self.weights[self.labels[indices]]


def clip_runs(
    windows: WindowSet, probabilities: FloatArray
) -> tuple[
    list[FloatArray], list[FloatArray], npt.NDArray[np.float64], npt.NDArray[np.int8]
]:
    """Group window probabilities by clip (in order): (negative runs, positive runs, clip max, clip labels)."""
    order = np.lexsort((windows.window_index, windows.clip_index))
    clip_ids = windows.clip_index[order]
    boundaries = np.flatnonzero(np.diff(clip_ids)) + 1
    runs = np.split(probabilities[order], boundaries)
    labels = np.split(windows.labels[order], boundaries)
    clip_labels = np.array([run_labels[0] for run_labels in labels], dtype=np.int8)
    clip_max = np.array([float(run.max()) for run in runs])
    negatives = [
        run for run, label in zip(runs, clip_labels, strict=True) if label == 0
    ]
    positives = [
        run for run, label in zip(runs, clip_labels, strict=True) if label == 1
    ]
    return negatives, positives, clip_max, clip_labels


def evaluate_checkpoint(
    model: Any, windows: WindowSet, config: Config, hop_seconds: float
) -> tuple[SelectionScore, dict[str, float]]:
    """Score the current weights on validation windows the way deployment would."""
    probabilities = model.predict(
        windows.patches[..., None], batch_size=512, verbose=0
    )[:, 1]
    negatives, positives, clip_max, clip_labels = clip_runs(
        windows, probabilities.astype(np.float32)
    )
    scores = stream_scores(
        negatives,
        positives,
        hop_seconds,
        thresholds=config.selection.thresholds,
        settings=config.selection.tracker,
        max_false_alarms_per_hour=config.selection.max_false_alarms_per_hour,
    )
    best = best_threshold(scores)
    window_auc = roc_auc(probabilities, windows.labels)
    return best, {"clip_auc": roc_auc(clip_max, clip_labels), "window_auc": window_auc}


def _heldout_sample(data: PreparedData, seed: int) -> FloatArray:
    """A few held-out patches (test, else val) of both classes, for export parity checks."""
    source = data.test if len(data.test) else data.val
    rng = np.random.default_rng([seed, 2])
    chosen: list[int] = []
    for value in (0, 1):
        members = np.flatnonzero(source.labels == value)
        take = min(members.size, HELDOUT_PATCHES // 2)
        chosen.extend(rng.choice(members, take, replace=False).tolist() if take else [])
    return source.patches[np.sort(np.asarray(chosen, dtype=np.int64))].astype(
        np.float32
    )


def train(
    config: Config, train_dir: Path, *, log: Log = print, progress: bool = True
) -> TrainResult:
    """Run the whole training; write checkpoints, selection, history and the resolved config."""
    config.check()
    started = time.monotonic()
    train_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, train_dir / CONFIG_FILE)
    data = prepare_data(config, train_dir, log, progress)
    configure_tensorflow(config.training.threads, config.seed)
    if not len(data.train) or data.train.labels.min() == data.train.labels.max():
        raise ValueError("the training split needs windows of both classes")
    np.save(train_dir / HELDOUT_FILE, _heldout_sample(data, config.seed))
    features = config.feature_config()
    runner = _Runner(config, train_dir, data, features.patch_hop_seconds, log)
    runner.run(progress)
    seconds = time.monotonic() - started
    summary = {
        "seconds": round(seconds, 1),
        "feature_seconds": round(runner.started - started, 1),
        "training_seconds": round(time.monotonic() - runner.started, 1),
        "labels": [config.data.negative_label, config.data.positive_label],
        "windows": {
            name: _counts(getattr(data, name)) for name in ("train", "val", "test")
        },
        "clips": {
            name: sum(1 for s in data.splits.values() if s == name)
            for name in ("train", "val", "test")
        },
        "data_sources": _sources_with_splits(data),
        "selection": runner.selection,
        "mining": runner.mining,
        **({"teacher": data.teacher} if data.teacher else {}),
    }
    (train_dir / SUMMARY_FILE).write_text(
        json.dumps(summary, indent=2) + "\n", encoding="utf-8"
    )
    log(
        f"done in {seconds:.0f} s; best step {runner.selection.get('step')}: "
        f"threshold {runner.selection.get('threshold')}, "
        f"{runner.selection.get('false_alarms_per_hour')} false alarms/h, "
        f"episode recall {runner.selection.get('episode_recall')}"
    )
    return TrainResult(train_dir, runner.selection, seconds)


def _counts(windows: WindowSet) -> dict[str, int]:
    """Window counts per class."""
    positives = int(windows.labels.sum())
    return {"positive": positives, "negative": len(windows) - positives}


def _sources_with_splits(data: PreparedData) -> list[dict[str, Any]]:
    """Per-source summary with clip counts per split."""
    summary = source_summary(data.clips)
    for entry in summary:
        members = [c for c in data.clips if c.source == entry["name"]]
        entry["split_clips"] = {
            name: sum(1 for c in members if data.splits[c.path] == name)
            for name in ("train", "val", "test")
        }
    return summary


class _Runner:
    """The training loop state: model, sampler, best checkpoint, history."""

    def __init__(
        self,
        config: Config,
        train_dir: Path,
        data: PreparedData,
        hop_seconds: float,
        log: Log,
    ) -> None:
        """Build the model and the batch sampler."""
        import keras

        from .model import build_model

        self.config = config
        self.train_dir = train_dir
        self.data = data
        self.hop_seconds = hop_seconds
        self.log = log
        features = config.feature_config()
        self.model = build_model(
            config.model, features.patch_frames, features.mel_bands
        )
        if config.training.init_from:
            start = keras.models.load_model(config.training.init_from)
            self.model.set_weights(start.get_weights())
            log(f"weights initialised from {config.training.init_from}")
        self.model.compile(
            optimizer=keras.optimizers.Adam(config.training.learning_rate[0]),
            loss=keras.losses.CategoricalCrossentropy(),
            metrics=["accuracy"],
        )
        targets = (
            data.train.labels.astype(np.float32)
            if data.train_targets is None
            else data.train_targets
        )
        # (not crying, crying) per window: one-hot labels, or the teacher's mix
        self.targets = np.stack((1.0 - targets, targets), axis=1).astype(np.float32)
        self.sampler = BatchSampler(
            data.train.labels,
            config.training.batch_size,
            config.training.class_balance,
            config.seed,
        )
        self.selection: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.mining: list[dict[str, Any]] = []
        self.best_key: tuple[bool, float, float] | None = None
        self.started = time.monotonic()

    def run(self, progress: bool) -> None:
        """All stages, evaluating every eval_step_interval steps and at each stage end."""
        settings = self.config.training
        total = sum(settings.how_many_training_steps)
        step, loss_avg, acc_avg = 0, math.nan, math.nan
        with progress_bar(
            enabled=progress, total=total, desc="train", unit="step"
        ) as bar:
            for stage, (steps, rate) in enumerate(
                zip(
                    settings.how_many_training_steps,
                    settings.learning_rate,
                    strict=True,
                )
            ):
                self.model.optimizer.learning_rate.assign(rate)
                if stage + 1 in self.config.hard_negatives.mine_before_stages:
                    self._mine(step, stage + 1, bar.write)
                for stage_step in range(steps):
                    indices, weights = self.sampler.next()
                    logs = self.model.train_on_batch(
                        self.data.train.patches[indices][..., None],
                        self.targets[indices],
                        sample_weight=weights,
                        return_dict=True,
                    )
                    step += 1
                    loss_avg = _ema(loss_avg, float(logs["loss"]))
                    acc_avg = _ema(acc_avg, float(logs["accuracy"]))
                    bar.update(1)
                    bar.set_postfix(
                        stage=stage + 1,
                        lr=f"{rate:g}",
                        loss=f"{loss_avg:.4f}",
                        acc=f"{acc_avg:.3f}",
                        refresh=False,
                    )
                    if (
                        step % settings.eval_step_interval == 0
                        or stage_step == steps - 1
                    ):
                        self._evaluate(step, stage + 1, loss_avg, acc_avg, bar.write)
        self.model.save(self.train_dir / LAST_MODEL)
        if not self.selection:  # no validation clips: keep the last weights
            self.model.save(self.train_dir / BEST_MODEL)
            self.selection = {
                "step": step,
                "threshold": 0.5,
                "note": "no validation split",
            }
            self._write(SELECTION_FILE, self.selection)

    def _mine(self, step: int, stage: int, write: Log) -> None:
        """Find the training negatives the model now calls crying; emphasise them from here on."""
        hard = self.config.hard_negatives
        negatives = np.flatnonzero(self.data.train.labels == 0)
        scores = self.model.predict(
            self.data.train.patches[negatives][..., None], batch_size=512, verbose=0
        )[:, 1]
        mined = negatives[scores >= hard.mining_threshold]
        self.sampler.emphasize(mined, hard.mined_repeats)
        self.mining.append(
            {
                "step": step,
                "stage": stage,
                "negatives": int(negatives.size),
                "mined": int(mined.size),
                "threshold": hard.mining_threshold,
                "repeats": hard.mined_repeats,
            }
        )
        write(
            f"before stage {stage}: {mined.size} of {negatives.size} training negatives score "
            f">= {hard.mining_threshold}; each now comes {hard.mined_repeats} more times per pass"
        )

    def _evaluate(
        self, step: int, stage: int, loss: float, accuracy: float, write: Log
    ) -> None:
        """Validate, record history, keep the checkpoint when it is the best so far."""
        entry: dict[str, Any] = {
            "step": step,
            "stage": stage,
            "loss": loss,
            "accuracy": accuracy,
        }
        if len(self.data.val):
            score, extra = evaluate_checkpoint(
                self.model, self.data.val, self.config, self.hop_seconds
            )
            entry.update(asdict(score), **extra)
            improved = self.best_key is None or score.key() > self.best_key
            if improved:
                self.best_key = score.key()
                self.model.save(self.train_dir / BEST_MODEL)
                self.selection = {
                    **entry,
                    "seconds": round(time.monotonic() - self.started, 1),
                }
                self._write(SELECTION_FILE, self.selection)
            write(
                f"step {step}: loss {loss:.4f} acc {accuracy:.3f} | val clip AUC {extra['clip_auc']:.4f} "
                f"threshold {score.threshold:.2f}: {score.false_alarms_per_hour:.2f} false alarms/h, "
                f"episode recall {score.episode_recall:.3f}{' *best*' if improved else ''}"
            )
        self.history.append(entry)
        self._write(HISTORY_FILE, self.history)

    def _write(self, name: str, data: Any) -> None:
        """Write a JSON file into the run folder."""
        (self.train_dir / name).write_text(
            json.dumps(data, indent=2) + "\n", encoding="utf-8"
        )


def _ema(average: float, value: float, weight: float = 0.05) -> float:
    """Exponential moving average that starts at the first value."""
    return value if math.isnan(average) else (1 - weight) * average + weight * value
