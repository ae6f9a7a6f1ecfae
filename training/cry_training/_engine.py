"""Load the integration's engine by path as the top-level package `cry_detector_engine`.

Importing `custom_components.cry_detector` would import Home Assistant, which the training
environment does not have, so the engine folder is registered on its own. Training therefore
uses the very feature, card, tracker and backend code the integration runs: there is no second
implementation of the features anywhere.

The folder is found relative to this file (training/cry_training -> ../../custom_components/
cry_detector/engine) or through the environment variable CRY_DETECTOR_ENGINE.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
import sys
from types import ModuleType
from typing import TYPE_CHECKING

PACKAGE = "cry_detector_engine"
ENV_VAR = "CRY_DETECTOR_ENGINE"
_RELATIVE = Path("custom_components") / "cry_detector" / "engine"


class EngineNotFoundError(ImportError):
    """The engine folder cannot be located."""


def engine_dir() -> Path:
    """Return the engine folder: $CRY_DETECTOR_ENGINE, else the repository's copy."""
    override = os.environ.get(ENV_VAR)
    candidates = [Path(override)] if override else []
    candidates.append(Path(__file__).resolve().parents[2] / _RELATIVE)
    for candidate in candidates:
        if (candidate / "__init__.py").is_file() and (
            candidate / "features.py"
        ).is_file():
            return candidate.resolve()
    raise EngineNotFoundError(
        f"cannot find the Cry Detector engine (looked in {', '.join(map(str, candidates))}); "
        f"set {ENV_VAR} to custom_components/cry_detector/engine of a checkout"
    )


def load_engine() -> ModuleType:
    """Register the engine folder as `cry_detector_engine` (once) and return the package."""
    loaded = sys.modules.get(PACKAGE)
    if loaded is not None:
        return loaded
    folder = engine_dir()
    spec = importlib.util.spec_from_file_location(
        PACKAGE, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    if spec is None or spec.loader is None:  # pragma: no cover - only for broken files
        raise EngineNotFoundError(f"cannot load the engine from {folder}")
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    try:
        spec.loader.exec_module(package)
    except BaseException:
        del sys.modules[PACKAGE]
        raise
    return package


def engine_module(name: str) -> ModuleType:
    """Import a submodule of the engine by its name relative to the engine ("scan")."""
    load_engine()
    return importlib.import_module(f"{PACKAGE}.{name}")


load_engine()

if TYPE_CHECKING:
    # For type checkers only: at run time these are the same files, loaded by path.
    from custom_components.cry_detector.engine import (
        backends,
        card,
        errors,
        features,
        tracker,
    )
    from custom_components.cry_detector.engine.backends import numpy_backend
else:
    backends = engine_module("backends")
    card = engine_module("card")
    errors = engine_module("errors")
    features = engine_module("features")
    tracker = engine_module("tracker")
    numpy_backend = engine_module("backends.numpy_backend")

__all__ = [
    "ENV_VAR",
    "PACKAGE",
    "EngineNotFoundError",
    "backends",
    "card",
    "engine_dir",
    "engine_module",
    "errors",
    "features",
    "load_engine",
    "numpy_backend",
    "tracker",
]
