"""The model card: JSON beside the model that says how to feed it and read its output."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
import json
from pathlib import Path
from typing import Any

from .errors import ModelCardError
from .features import FeatureConfig, is_finite_number, short_repr
from .tracker import TrackerConfig

__all__ = [
    "FORMAT_VERSION",
    "FeatureConfig",
    "ModelCard",
    "ModelCardError",
    "card_path_for",
    "load_card",
    "write_card",
]

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
# Card `tracker` keys: TrackerConfig fields except threshold, which is a top-level card field.
TRACKER_KEYS = tuple(f.name for f in fields(TrackerConfig) if f.name != "threshold")


def _fail(name: str, requirement: str, value: object) -> ModelCardError:
    """Build the error for one bad card field."""
    return ModelCardError(
        f"field '{name}' must be {requirement}, got {short_repr(value)}"
    )


def _text(data: dict[str, Any], name: str) -> str:
    """Return a non-empty string field."""
    value = data[name]
    if not isinstance(value, str) or not value.strip():
        raise _fail(name, "a non-empty string", value)
    return value


def _string_list(data: dict[str, Any], name: str) -> tuple[str, ...]:
    """Return a list-of-strings field as a tuple."""
    value = data[name]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _fail(name, "a list of strings", value)
    return tuple(value)


def _int_list(data: dict[str, Any], name: str) -> tuple[int, ...]:
    """Return a list-of-integers field as a tuple."""
    value = data[name]
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) for item in value
    ):
        raise _fail(name, "a list of integers", value)
    return tuple(value)


def _object(data: dict[str, Any], name: str) -> dict[str, Any]:
    """Return an object field (copied)."""
    value = data[name]
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise _fail(name, "an object", value)
    return dict(value)


def _format_version(data: dict[str, Any], name: str) -> int:
    """Return a supported format_version."""
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, "an integer", value)
    if value not in SUPPORTED_FORMAT_VERSIONS:
        raise ModelCardError(
            f"field 'format_version' is {value}, this version reads {list(SUPPORTED_FORMAT_VERSIONS)}"
        )
    return value


def _threshold(data: dict[str, Any], name: str) -> float:
    """Return a number field (range checked by the card)."""
    value = data[name]
    if not is_finite_number(value):
        raise _fail(name, "a number in (0, 1)", value)
    return float(value)


def _features(data: dict[str, Any], name: str) -> FeatureConfig:
    """Return the feature config."""
    return FeatureConfig.from_dict(data[name])


def _tracker(data: dict[str, Any], name: str) -> dict[str, float]:
    """Return the tracker defaults: known keys, non-negative numbers."""
    value = _object(data, name)
    for key, item in value.items():
        if key not in TRACKER_KEYS:
            raise ModelCardError(
                f"field 'tracker' has unknown key '{key}' (known: {list(TRACKER_KEYS)})"
            )
        if not is_finite_number(item) or item < 0:
            raise _fail(f"tracker.{key}", "a non-negative number", item)
    return {key: float(item) for key, item in value.items()}


_PARSERS: dict[str, Callable[[dict[str, Any], str], Any]] = {
    "format_version": _format_version,
    "name": _text,
    "version": _text,
    "created": _text,
    "features": _features,
    "input_shape": _int_list,
    "labels": _string_list,
    "positive_label": _text,
    "threshold": _threshold,
    "tracker": _tracker,
    "training": _object,
    "metrics": _object,
    "limitations": _string_list,
}


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to run a model: features, input shape, labels, threshold, provenance."""

    format_version: int
    name: str
    version: str
    created: str
    features: FeatureConfig
    input_shape: tuple[int, ...]
    labels: tuple[str, ...]
    positive_label: str
    threshold: float
    tracker: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    limitations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Check the relations between fields; raise ModelCardError naming the field."""
        if self.format_version not in SUPPORTED_FORMAT_VERSIONS:
            raise _fail(
                "format_version",
                f"one of {list(SUPPORTED_FORMAT_VERSIONS)}",
                self.format_version,
            )
        if not isinstance(self.features, FeatureConfig):
            raise _fail("features", "a FeatureConfig", self.features)
        expected = (1, self.features.patch_frames, self.features.mel_bands, 1)
        if tuple(self.input_shape) != expected:
            raise _fail(
                "input_shape",
                f"{list(expected)} (1, patch_frames, mel_bands, 1)",
                list(self.input_shape),
            )
        if len(self.labels) < 2 or any(not label for label in self.labels):
            raise _fail("labels", "at least two non-empty labels", list(self.labels))
        if len(set(self.labels)) != len(self.labels):
            raise _fail("labels", "unique", list(self.labels))
        if self.positive_label not in self.labels:
            raise _fail(
                "positive_label",
                f"one of the labels {list(self.labels)}",
                self.positive_label,
            )
        if not (is_finite_number(self.threshold) and 0.0 < self.threshold < 1.0):
            raise _fail("threshold", "a number in (0, 1)", self.threshold)

    @property
    def positive_index(self) -> int:
        """Index of the positive label in the model output."""
        return self.labels.index(self.positive_label)

    def tracker_config(self, **overrides: Any) -> TrackerConfig:
        """Return the card's tracker defaults (and threshold) as a TrackerConfig, with overrides."""
        values: dict[str, Any] = {
            "threshold": self.threshold,
            **self.tracker,
            **overrides,
        }
        if "smoothing_windows" in values:
            values["smoothing_windows"] = int(values["smoothing_windows"])
        return TrackerConfig(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready card."""
        return {
            "format_version": self.format_version,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "features": self.features.to_dict(),
            "input_shape": list(self.input_shape),
            "labels": list(self.labels),
            "positive_label": self.positive_label,
            "threshold": self.threshold,
            "tracker": dict(self.tracker),
            "training": self.training,
            "metrics": self.metrics,
            "limitations": list(self.limitations),
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "model card") -> ModelCard:
        """Build a card from parsed JSON; errors name `source` (the file) and the field."""
        try:
            return cls._parse(data)
        except ModelCardError as err:
            raise ModelCardError(f"{source}: {err}", reason=err.reason) from err

    @classmethod
    def _parse(cls, data: Any) -> ModelCard:
        """Build a card from parsed JSON; errors name the field."""
        if not isinstance(data, dict):
            raise ModelCardError(
                f"the card must be a JSON object, got {type(data).__name__}"
            )
        missing = [name for name in _PARSERS if name not in data]
        if missing:
            raise ModelCardError(f"missing field(s) {missing}")
        unknown = sorted(str(name) for name in data if name not in _PARSERS)
        if unknown:
            raise ModelCardError(f"unknown field(s) {unknown}")
        values = {name: parse(data, name) for name, parse in _PARSERS.items()}
        return cls(**values)


def card_path_for(model_path: Path) -> Path:
    """Return the card path for a model: X.tflite -> X.json."""
    return Path(model_path).with_suffix(".json")


def load_card(path: Path) -> ModelCard:
    """Read and validate a card file; ModelCardError(reason card_missing|invalid_card)."""
    path = Path(path)
    if not path.is_file():
        raise ModelCardError(f"{path}: model card not found", reason="card_missing")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ModelCardError(f"{path}: cannot read model card: {err}") from err
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ModelCardError(f"{path}: not valid JSON: {err}") from err
    except RecursionError as err:
        raise ModelCardError(f"{path}: JSON nested too deeply") from err
    return ModelCard.from_dict(data, source=str(path))


def write_card(card: ModelCard, path: Path) -> None:
    """Write the card as JSON (atomically: temp file then rename)."""
    path = Path(path)
    try:
        text = json.dumps(card.to_dict(), indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        raise ModelCardError(f"{path}: card is not JSON-serialisable: {err}") from err
    ModelCard.from_dict(json.loads(text), source=str(path))
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
