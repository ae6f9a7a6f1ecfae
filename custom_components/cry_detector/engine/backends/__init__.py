"""Inference backends: LiteRT when importable, else a pure-NumPy interpreter of the same .tflite.

Preference order: `ai_edge_litert` -> `tflite_runtime` -> `numpy`. A runtime that fails to
import (ImportError, or OSError for a broken native library) is simply not available.
"""

from __future__ import annotations

import importlib
import logging
import math
from pathlib import Path
from typing import Final, Protocol

import numpy as np

# Parent-relative on purpose: training loads engine/ by path as another top-level package.
from ..card import ModelCard, card_path_for, load_card
from ..errors import ModelCardError, ModelError, UnsupportedOpError
from .litert import LITERT, TFLITE_RUNTIME, LiteRtBackend, import_interpreter
from .numpy_backend import BACKEND_NAME as NUMPY, NumpyBackend, parse_model

__all__ = [
    "BACKEND_ORDER",
    "Backend",
    "available_backends",
    "check_model",
    "load_backend",
    "load_model",
    "read_model",
]

_LOGGER = logging.getLogger(__name__)

BACKEND_ORDER: Final = (LITERT, TFLITE_RUNTIME, NUMPY)
# Our models are ~100 KB; refuse to read anything absurd into memory.
MAX_MODEL_BYTES: Final = 64 * 1024 * 1024


class Backend(Protocol):
    """A loaded model that turns one feature patch into label probabilities."""

    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    def predict(self, patch: np.ndarray) -> np.ndarray:
        """Return (n_labels,) float32 probabilities for a (patch_frames, mel_bands) patch."""

    def close(self) -> None:
        """Release the interpreter."""


def _importable(name: str) -> bool:
    """Whether the runtime behind backend `name` imports."""
    try:
        if name == NUMPY:
            importlib.import_module("tflite")
        else:
            import_interpreter(name)
    except (ImportError, OSError) as err:
        _LOGGER.debug("Backend %s is not available: %s", name, err)
        return False
    return True


def available_backends() -> list[str]:
    """Return the importable backends, most preferred first."""
    return [name for name in BACKEND_ORDER if _importable(name)]


def read_model(model_path: Path) -> bytes:
    """Read a model file; ModelError(reason model_missing|invalid_model)."""
    path = Path(model_path)
    try:
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise ModelError(
                f"{path}: model file is {size} bytes, more than a model can be"
            )
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise ModelError(
            f"{path}: model file not found", reason="model_missing"
        ) from err
    except OSError as err:
        raise ModelError(f"{path}: cannot read the model file: {err}") from err
    if not data:
        raise ModelError(f"{path}: the model file is empty")
    return data


def _candidates(preferred: str | None) -> list[str]:
    """Return the backends to try, in order; ModelError when `preferred` is unavailable."""
    available = available_backends()
    if preferred is None:
        if not available:
            raise ModelError(
                "no inference backend: install ai-edge-litert (or tflite)",
                reason="backend_unavailable",
            )
        return available
    if preferred not in BACKEND_ORDER:
        raise ModelError(
            f"unknown backend {preferred!r} (known: {', '.join(BACKEND_ORDER)})",
            reason="backend_unavailable",
        )
    if preferred not in available:
        raise ModelError(
            f"backend {preferred!r} is not available here (available: {', '.join(available) or 'none'})",
            reason="backend_unavailable",
        )
    return [preferred]


def _create(name: str, model_bytes: bytes, num_threads: int) -> Backend:
    """Create one backend for the model bytes."""
    if name == NUMPY:
        return NumpyBackend(model_bytes)
    return LiteRtBackend(name, model_bytes, num_threads=num_threads)


def _shape_matches(model_shape: tuple[int, ...], card_shape: tuple[int, ...]) -> bool:
    """Compare shapes; a batch dimension of -1 or 1 on either side counts as equal."""
    if len(model_shape) != len(card_shape) or not model_shape:
        return False
    if model_shape[0] in (-1, 1) and card_shape[0] in (-1, 1):
        return model_shape[1:] == card_shape[1:]
    return model_shape == card_shape


def check_model(card: ModelCard, backend: Backend) -> None:
    """Raise ModelCardError(reason card_mismatch) when the model does not fit its card."""
    input_shape, output_shape = tuple(backend.input_shape), tuple(backend.output_shape)
    if not _shape_matches(input_shape, tuple(card.input_shape)):
        raise ModelCardError(
            f"model input shape {list(input_shape)} does not match the card's input_shape "
            f"{list(card.input_shape)}",
            reason="card_mismatch",
        )
    n_labels = len(card.labels)
    if (
        not output_shape
        or output_shape[-1] != n_labels
        or math.prod(output_shape) != n_labels
    ):
        raise ModelCardError(
            f"model output shape {list(output_shape)} does not match the card's "
            f"{n_labels} labels {list(card.labels)}",
            reason="card_mismatch",
        )
    for what in ("input", "output"):
        dtype = getattr(backend, f"{what}_dtype", "float32")
        if dtype != "float32":
            raise ModelCardError(
                f"model {what} type is {dtype}, the card's features need float32",
                reason="card_mismatch",
            )


def load_backend(
    model_path: Path,
    card: ModelCard,
    preferred: str | None = None,
    num_threads: int = 1,
) -> Backend:
    """Load the model with the best available backend (or `preferred`) and check it against the card.

    Raises ModelError (reason model_missing|invalid_model|backend_unavailable),
    UnsupportedOpError, or ModelCardError(reason card_mismatch).
    """
    path = Path(model_path)
    model_bytes = read_model(path)
    candidates = _candidates(preferred)
    if NUMPY in available_backends():
        # A structural check first, so no native runtime ever sees a corrupt flatbuffer.
        try:
            parse_model(model_bytes)
        except ModelError as err:
            raise ModelError(f"{path}: {err}", reason=err.reason) from err
    errors: list[ModelError] = []
    for name in candidates:
        try:
            backend = _create(name, model_bytes, num_threads)
        except (ImportError, OSError) as err:
            errors.append(
                ModelError(
                    f"backend {name} failed to import: {err}",
                    reason="backend_unavailable",
                )
            )
            continue
        except ModelError as err:
            _LOGGER.warning("The %s backend cannot load %s: %s", name, path, err)
            errors.append(err)
            continue
        try:
            check_model(card, backend)
        except ModelCardError as err:
            backend.close()
            raise ModelCardError(f"{path}: {err}", reason=err.reason) from err
        _LOGGER.debug("Loaded %s with the %s backend", path, name)
        return backend
    raise _most_telling(errors, path)


def _most_telling(errors: list[ModelError], path: Path) -> ModelError:
    """Pick the error to report when every backend failed: unsupported ops first."""
    chosen = next(
        (err for err in errors if isinstance(err, UnsupportedOpError)), errors[0]
    )
    error = type(chosen)(f"{path}: {chosen}", reason=chosen.reason)
    error.__cause__ = chosen
    return error


def load_model(
    model_path: Path, preferred: str | None = None
) -> tuple[ModelCard, Backend]:
    """Load the card beside the model (X.tflite -> X.json), then the backend, and check both."""
    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found", reason="model_missing")
    card = load_card(card_path_for(path))
    return card, load_backend(path, card, preferred)
