"""Print per-inference time of each available backend on .tflite models.

Usage: ``scripts/run python benchmarks/backends.py [MODEL.tflite ...] [--runs N]``

Without model arguments it times the shipped model (if any) and the test fixtures. A bigger,
realistic DS-CNN (~48k parameters) is written by
``.venv-train/bin/python tests/fixtures/make_models.py --bench DIR``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import statistics
import sys
import time

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from custom_components.cry_detector.engine.backends import (  # noqa: E402
    Backend,
    available_backends,
)
from custom_components.cry_detector.engine.backends.litert import (  # noqa: E402
    LiteRtBackend,
)
from custom_components.cry_detector.engine.backends.numpy_backend import (  # noqa: E402
    NumpyBackend,
)
from custom_components.cry_detector.engine.errors import ModelError  # noqa: E402

DEFAULT_MODELS = [
    REPO_ROOT / "custom_components" / "cry_detector" / "models" / "default.tflite",
    *sorted((REPO_ROOT / "tests" / "fixtures" / "models").glob("tiny_*.tflite")),
    REPO_ROOT / "tests" / "fixtures" / "models" / "op_coverage.tflite",
]


def open_backend(name: str, model_bytes: bytes) -> Backend:
    """Create backend `name` for the model, without a card."""
    if name == "numpy":
        return NumpyBackend(model_bytes)
    return LiteRtBackend(name, model_bytes, num_threads=1)


def time_backend(name: str, model_bytes: bytes, runs: int) -> str:
    """Return one line: load time, mean and p95 inference time in milliseconds."""
    started = time.perf_counter()
    try:
        backend = open_backend(name, model_bytes)
    except ModelError as err:
        return f"  {name:15s} cannot load: {err}"
    load_ms = (time.perf_counter() - started) * 1000
    patch_shape = backend.input_shape[1:3]
    patches = (
        np.random.default_rng(0).normal(size=(runs, *patch_shape)).astype(np.float32)
    )
    try:
        for patch in patches[: min(10, runs)]:  # warm-up
            backend.predict(patch)
        timings = []
        for patch in patches:
            started = time.perf_counter()
            backend.predict(patch)
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        backend.close()
    p95 = float(np.percentile(timings, 95))
    return (
        f"  {name:15s} load {load_ms:7.1f} ms   inference mean {statistics.fmean(timings):7.3f} ms"
        f"   p95 {p95:7.3f} ms"
    )


def main() -> None:
    """Time every available backend on every model given (or the defaults)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--runs", type=int, default=200)
    arguments = parser.parse_args()
    models = arguments.models or [path for path in DEFAULT_MODELS if path.is_file()]
    backends = available_backends()
    print(f"backends: {', '.join(backends)}; {arguments.runs} runs each, 1 thread")
    for path in models:
        model_bytes = path.read_bytes()
        print(f"{path.name} ({len(model_bytes) / 1024:.0f} KiB)")
        for name in backends:
            print(time_backend(name, model_bytes, arguments.runs))


if __name__ == "__main__":
    main()
