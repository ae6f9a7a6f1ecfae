"""`cry-train export`: float32 .tflite + model card, verified against the engine before writing.

Keras, LiteRT and the engine's NumPy backend must agree on held-out inputs (1e-4), and a model
whose operators the NumPy backend cannot run is refused: nothing is written then.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
from dataclasses import dataclass, replace
import datetime as dt
import io
import json
import math
from pathlib import Path
import tempfile
from typing import Any

import numpy as np
import numpy.typing as npt

from ._engine import (
    backends,
    card as engine_card,
    errors as engine_errors,
    numpy_backend,
)
from .config import Config, load_config
from .dataset import load_clips, read_split
from .metrics import tracker_for
from .train import (
    BEST_MODEL,
    CONFIG_FILE,
    HELDOUT_FILE,
    HISTORY_FILE,
    LAST_MODEL,
    SELECTION_FILE,
    SPLIT_FILE,
    SUMMARY_FILE,
)

Log = Callable[[str], None]
FloatArray = npt.NDArray[np.float32]
PARITY_TOLERANCE = 1e-4
NON_COMMERCIAL_MARKERS = ("-NC", " NC", "NC-", "non-commercial", "noncommercial")
# What `--operating_point` takes from the recommended point into the card's tracker.
TRACKER_POINT_SETTINGS = (
    "smoothing_windows",
    "min_cry_seconds",
    "hysteresis",
    "hold_seconds",
)


class ExportError(Exception):
    """The model cannot be exported (unsupported operators, parity failure, missing files)."""


@dataclass(frozen=True)
class ExportResult:
    """What was written and how it was verified."""

    model_path: Path
    card_path: Path
    model_bytes: int
    operators: tuple[str, ...]
    parity: dict[str, Any]
    card: Any


def convert(model: Any) -> bytes:
    """Convert a Keras model to a float32 .tflite flatbuffer (no quantisation)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = []
    with contextlib.redirect_stdout(
        io.StringIO()
    ):  # the converter prints the signature
        model_bytes: bytes = converter.convert()
    return model_bytes


def check_operators(model_bytes: bytes) -> tuple[str, ...]:
    """Return the model's operators; ExportError when the NumPy backend cannot run them all."""
    try:
        model = numpy_backend.NumpyTfliteModel(model_bytes)
    except engine_errors.UnsupportedOpError as err:
        raise ExportError(f"refusing to export: {err}") from err
    except engine_errors.ModelError as err:
        raise ExportError(
            f"refusing to export: the NumPy backend cannot load it: {err}"
        ) from err
    unsupported = sorted(set(model.operator_names) - set(numpy_backend.supported_ops()))
    if unsupported:  # pragma: no cover - NumpyTfliteModel already refuses these
        raise ExportError(f"refusing to export: unsupported operators {unsupported}")
    return tuple(model.operator_names)


def _backend_outputs(
    model_path: Path, card: Any, name: str, patches: FloatArray
) -> FloatArray:
    """Run patches through one engine backend."""
    backend = backends.load_backend(model_path, card, preferred=name)
    try:
        return np.stack([backend.predict(patch) for patch in patches]).astype(
            np.float32
        )
    finally:
        backend.close()


def parity_report(
    model_path: Path,
    card: Any,
    keras_model: Any,
    patches: FloatArray,
    tolerance: float = PARITY_TOLERANCE,
) -> dict[str, Any]:
    """Compare Keras, LiteRT and NumPy outputs; ExportError beyond the tolerance."""
    if patches.shape[0] == 0:
        raise ExportError("no held-out patches to check parity on")
    outputs = {
        "keras": np.asarray(
            keras_model(patches[..., None], training=False), dtype=np.float32
        )
    }
    available = backends.available_backends()
    for name in ("litert", "numpy"):
        if name in available:
            outputs[name] = _backend_outputs(model_path, card, name, patches)
    if "numpy" not in outputs:
        raise ExportError("the NumPy backend is not available (pip install tflite)")
    names = sorted(outputs)
    report: dict[str, Any] = {
        "patches": int(patches.shape[0]),
        "tolerance": tolerance,
        "backends": names,
    }
    for position, first in enumerate(names):
        for second in names[position + 1 :]:
            difference = float(np.max(np.abs(outputs[first] - outputs[second])))
            report[f"max_abs_diff_{first}_{second}"] = difference
            if not difference <= tolerance:
                raise ExportError(
                    f"refusing to export: {first} and {second} disagree by {difference:.2e} "
                    f"(more than {tolerance:.0e}) on held-out inputs"
                )
    return report


def _json_safe(value: Any) -> Any:
    """Replace nan/inf by None and numpy scalars by Python numbers, recursively."""
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def export_keras(
    model: Any,
    output: Path,
    card: Any,
    heldout: FloatArray,
    *,
    evaluate: Callable[[Path], dict[str, Any]] | None = None,
    tolerance: float = PARITY_TOLERANCE,
    log: Log = print,
) -> ExportResult:
    """Convert, verify (operators, parity), optionally evaluate, then write model + card."""
    model_bytes = convert(model)
    operators = check_operators(model_bytes)
    log(f"converted: {len(model_bytes)} bytes, operators {', '.join(operators)}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=output.parent) as folder:
        staged = Path(folder) / output.name
        staged.write_bytes(model_bytes)
        engine_card.write_card(card, engine_card.card_path_for(staged))
        parity = parity_report(staged, card, model, heldout, tolerance)
        log(
            "parity: "
            + ", ".join(
                f"{k} {v:.1e}" for k, v in parity.items() if k.startswith("max_abs")
            )
        )
        metrics = dict(card.metrics)
        metrics["model"] = {
            **metrics.get("model", {}),
            "bytes": len(model_bytes),
            "operators": list(operators),
        }
        metrics["parity"] = parity
        if evaluate is not None:
            metrics.update(evaluate(staged))
        final = replace(card, metrics=_json_safe(metrics))
        engine_card.write_card(final, engine_card.card_path_for(staged))
        staged.replace(output)
        engine_card.card_path_for(staged).replace(engine_card.card_path_for(output))
    log(f"wrote {output} and {engine_card.card_path_for(output)}")
    return ExportResult(
        output,
        engine_card.card_path_for(output),
        len(model_bytes),
        operators,
        parity,
        final,
    )


def non_commercial_sources(data_sources: list[dict[str, Any]]) -> list[str]:
    """Names of sources whose license text says non-commercial."""
    return [
        f"{entry['name']} ({entry['license']})"
        for entry in data_sources
        if any(
            marker.lower() in str(entry["license"]).lower()
            for marker in NON_COMMERCIAL_MARKERS
        )
    ]


def build_card(
    config: Config,
    *,
    labels: list[str],
    threshold: float,
    training: dict[str, Any],
    metrics: dict[str, Any],
    created: str | None = None,
    tracker_settings: dict[str, float] | None = None,
    name: str = "",
) -> Any:
    """The model card for a trained model (limitations include every non-commercial source)."""
    features = config.feature_config()
    limitations = list(config.export.limitations)
    restricted = non_commercial_sources(training.get("data_sources", []))
    if restricted:
        limitations.append(
            "Trained on data under non-commercial licences: "
            + "; ".join(restricted)
            + ". Use this model for non-commercial purposes only."
        )
    tracker = tracker_for(
        threshold, {**config.selection.tracker, **(tracker_settings or {})}
    )
    return engine_card.ModelCard(
        format_version=engine_card.FORMAT_VERSION,
        name=config.export.name or name or "cry-detector-model",
        version=config.export.version,
        created=created or dt.date.today().isoformat(),  # noqa: DTZ011 - a calendar date
        features=features,
        input_shape=(1, features.patch_frames, features.mel_bands, 1),
        labels=tuple(labels),
        positive_label=config.data.positive_label,
        threshold=float(threshold),
        tracker={key: float(getattr(tracker, key)) for key in engine_card.TRACKER_KEYS},
        training=_json_safe(training),
        metrics=_json_safe(metrics),
        limitations=tuple(limitations),
    )


def _read_json(path: Path) -> Any:
    """Read a JSON file from a run folder; ExportError when missing."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ExportError(f"{path}: {err} (run `cry-train train` first)") from err


def _strip_curves(result: dict[str, Any]) -> dict[str, Any]:
    """An evaluation made card-sized: no ROC points or file names, fewer per-class rows.

    Only classes with detections (the false positives) and the positive classes stay.
    """
    card_sized = {
        key: value
        for key, value in result.items()
        if key not in ("roc", "model", "card")
    }
    if "per_class" in card_sized:
        card_sized["per_class"] = [
            row
            for row in card_sized["per_class"]
            if row.get("detected") or row.get("label") == result.get("positive_label")
        ]
    return card_sized


def _describe_evaluation(result: dict[str, Any]) -> str:
    """Say which model an extra evaluation used and what that model had never seen."""
    sources = ", ".join(result.get("sources", []))
    text = f"evaluation of {result.get('model', '?')} on {sources}"
    card_file = Path(str(result.get("model", ""))).with_suffix(".json")
    if not card_file.is_file():
        return text
    split = engine_card.load_card(card_file).training.get("config", {}).get("split", {})
    held_out = ", ".join(split.get("holdout_sources", []))
    if held_out:
        text += (
            f": a model trained without {held_out} and without "
            f"{split.get('test_fraction', 0):.0%} of the groups of every other source, "
            "evaluated on exactly those"
        )
    return text


def export_run(
    train_dir: Path,
    output: Path,
    *,
    evaluate: bool = True,
    extra_metrics: dict[str, Path] | None = None,
    backend: str | None = None,
    log: Log = print,
    progress: bool = True,
    negative_hours: float = 24.0,
    operating_point: Path | None = None,
    checkpoint: str = "best",
) -> ExportResult:
    """Export the selected checkpoint of a training run, evaluated on its test split.

    With `operating_point` (an `operating-points --output` file of the validation split), the
    card takes its recommended threshold and tracker settings instead of the selection's.
    `checkpoint="last"` exports the final weights (with their last validation figures) instead
    of the selected ones.
    """
    import keras

    from .evaluate import EvalOptions, evaluate_clips
    from .model import count_macs, inference_model

    train_dir = Path(train_dir)
    config = load_config(train_dir / CONFIG_FILE)
    if checkpoint not in {"best", "last"}:
        raise ExportError(f"checkpoint must be best or last, got {checkpoint!r}")
    summary = _read_json(train_dir / SUMMARY_FILE)
    if checkpoint == "last":
        selection = _read_json(train_dir / HISTORY_FILE)[-1]
        trained = keras.models.load_model(train_dir / LAST_MODEL)
    else:
        selection = _read_json(train_dir / SELECTION_FILE)
        trained = keras.models.load_model(train_dir / BEST_MODEL)
    model = inference_model(trained, config.model)
    heldout = np.load(train_dir / HELDOUT_FILE).astype(np.float32)
    training = {
        "data_sources": summary["data_sources"],
        "clips": summary["clips"],
        "windows": summary["windows"],
        "training_seconds": summary["seconds"],
        "selected_step": selection.get("step"),
        "checkpoint": checkpoint,
        **(
            {"hard_negative_mining": summary["mining"]} if summary.get("mining") else {}
        ),
        **({"teacher": summary["teacher"]} if summary.get("teacher") else {}),
        "seed": config.seed,
        "framework": f"keras {keras.__version__}",
        "config": config.to_dict(),
    }
    metrics: dict[str, Any] = {
        "model": {"parameters": int(model.count_params()), "macs": count_macs(model)},
        "validation": {
            key: selection.get(key)
            for key in (
                "threshold",
                "false_alarms_per_hour",
                "episode_recall",
                "clip_auc",
                "window_auc",
                "step",
            )
        },
    }
    holdout = ", ".join(config.split.holdout_sources)
    notes = {
        "validation": "the selected checkpoint on the validation groups (selection data)",
        "test": (
            f"held-out groups ({config.split.test_fraction:.0%}) of every source"
            + (f" and the held-out sources {holdout}" if holdout else "")
            + ", never used for training or selection, run through the engine "
            "(features, backend, Pipeline, tracker); false episodes per hour are measured on "
            "the test negatives (environmental sounds, adult vocalisations, speech, music), "
            "a harder mix than a quiet nursery"
        ),
    }
    for name, path in (extra_metrics or {}).items():
        extra = _read_json(Path(path))
        metrics[name] = _strip_curves(extra)
        notes[name] = _describe_evaluation(extra)
    threshold = float(selection["threshold"])
    tracker_settings: dict[str, float] = {}
    if operating_point is not None:
        points = _read_json(Path(operating_point))
        if points.get("split") != "val":
            raise ExportError(
                f"{operating_point}: operating points must come from the validation split, "
                f"not {points.get('split')!r}"
            )
        chosen = points["recommended"]
        threshold = float(chosen["threshold"])
        tracker_settings = {
            name: chosen[name]
            # hysteresis and hold: points files written before they were swept lack them
            for name in TRACKER_POINT_SETTINGS
            if name in chosen
        }
        metrics["validation_operating_point"] = chosen
        notes["validation_operating_point"] = (
            f"threshold and tracker from `cry-train operating-points` on the validation split "
            f"({points['cries']} cries, {points['negative_hours']} h of replayed negatives): "
            "the fewest false episodes per 24 h with episode recall and cry-minute error "
            "within the rule (checkpoint selection's threshold was "
            f"{float(selection['threshold']):g})"
        )
    metrics["notes"] = notes
    card = build_card(
        config,
        labels=summary["labels"],
        threshold=threshold,
        training=training,
        metrics=metrics,
        tracker_settings=tracker_settings,
        name=Path(output).stem,
    )

    def evaluate_test(model_path: Path) -> dict[str, Any]:
        splits = read_split(train_dir / SPLIT_FILE)
        clips = [
            c
            for c in load_clips(train_dir / SPLIT_FILE)
            if splits.get(c.path.resolve()) == "test"
        ]
        if not clips:
            log("no test split: the card has validation metrics only")
            return {}
        log(
            f"evaluating on the test split ({len(clips)} clips, held-out groups) through the engine"
        )
        result = evaluate_clips(
            model_path,
            clips,
            # seed 0 like `evaluate`
            EvalOptions(
                backend=backend, progress=progress, negative_hours=negative_hours
            ),
            log,
        )
        return {"test": _strip_curves(result)}

    return export_keras(
        model,
        output,
        card,
        heldout,
        evaluate=evaluate_test if evaluate else None,
        log=log,
    )
