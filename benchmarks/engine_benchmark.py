"""Print the CPU cost per second of audio of each engine stage, the whole scan pipeline, and peak RSS.

Usage: ``scripts/run python benchmarks/engine_benchmark.py [--seconds 600] [--model MODEL.tflite]``

The engine is loaded by path as the top-level package ``cry_detector_engine`` (as training does),
so Home Assistant is not imported. Audio is synthesised (room tone, speech-like bursts, music,
knocks, cry bouts) and written as FLAC; the whole-pipeline scan of that file runs in a fresh child
process, so its peak RSS is what a scan really needs (engine, NumPy, PyAV, LiteRT), not the
synthesis.
Default model: the bundled one, else the tiny DS-CNN test fixture (untrained: same cost).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
import importlib
import json
from pathlib import Path
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_CANDIDATES = [
    REPO_ROOT / "custom_components" / "cry_detector" / "models" / "default.tflite",
    REPO_ROOT / "tests" / "fixtures" / "models" / "tiny_dscnn.tflite",
]
CHUNK_SECONDS = 0.1  # what the sources deliver

sys.path.insert(0, str(REPO_ROOT / "training"))
from cry_training._engine import load_engine  # noqa: E402 - the one by-path engine loader


def engine(name: str) -> Any:
    """Import an engine submodule."""
    return importlib.import_module(f"cry_detector_engine.{name}")


def synthesise(seconds: float, rate: int) -> np.ndarray:
    """int16 audio at the model's rate: a scene with a cry bout every 2 minutes."""
    sys.path.insert(0, str(REPO_ROOT))
    from tests.engine.audio import scene, to_int16

    cries = [
        (float(t), float(t) + 20.0) for t in np.arange(30.0, seconds - 25.0, 120.0)
    ]
    return to_int16(scene(seconds, cries=cries, rate=rate, seed=1))


def cpu_seconds(work: Callable[[], object]) -> tuple[float, float]:
    """Run work once; return (process CPU seconds, all threads; wall seconds)."""
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    return time.process_time() - cpu, time.perf_counter() - wall


def bench_features(samples: np.ndarray, card: Any) -> tuple[float, list[np.ndarray]]:
    """The pipeline's PatchStream over the audio in 0.1 s chunks."""
    stream = engine("features").PatchStream(card.features)
    patches: list[np.ndarray] = []
    step = round(card.features.sample_rate * CHUNK_SECONDS)

    def work() -> None:
        for start in range(0, samples.size, step):
            patches.extend(stream.push(samples[start : start + step]))

    cpu, _ = cpu_seconds(work)
    return cpu, patches


def bench_backend(
    name: str, model: Path, card: Any, patches: list[np.ndarray]
) -> tuple[float, float] | None:
    """Predict every patch with one backend; None when the backend is unavailable."""
    backends = engine("backends")
    if name not in backends.available_backends():
        return None
    backend = backends.load_backend(model, card, preferred=name)
    try:
        backend.predict(patches[0])  # warm-up (allocations, delegate setup)
        cpu, wall = cpu_seconds(lambda: [backend.predict(patch) for patch in patches])
    finally:
        backend.close()
    return cpu, wall


def peak_rss_kib() -> int:
    """Peak RSS of this process in KiB.

    getrusage's ru_maxrss survives execve on Linux (a child started by a big parent reports the
    parent's peak), so prefer the kernel's per-address-space high-water mark VmHWM.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def scan_only(path: Path, model: Path) -> None:
    """Child process: scan the file through the Pipeline class; print the figures as JSON."""
    load_engine()
    scan = engine("scan")
    card, backend = scan.load_scan_model(model)
    try:
        holder: list[Any] = []
        cpu, wall = cpu_seconds(
            lambda: holder.append(
                asyncio.run(scan.async_scan_file(path, card, backend))
            )
        )
    finally:
        backend.close()
    result = holder[0]
    figures = {
        "cpu": cpu,
        "wall": wall,
        "episodes": len(result.episodes),
        "stats": result.to_dict(windows=False)["stats"],
        "peak_rss_kib": peak_rss_kib(),
    }
    print(json.dumps(figures))


def bench_pipeline(path: Path, model: Path) -> dict[str, Any]:
    """Run the scan in a fresh Python process (clean peak RSS); return its figures."""
    command = [
        sys.executable,
        __file__,
        "--scan-only",
        str(path),
        "--model",
        str(model),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=600.0, help="audio length (default 600)"
    )
    parser.add_argument(
        "--model", type=Path, help="model .tflite (default: bundled, else fixture)"
    )
    parser.add_argument("--scan-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scan_only:
        scan_only(args.scan_only, args.model)
        return
    load_engine()
    av = importlib.import_module("av")
    model = args.model or next(p for p in MODEL_CANDIDATES if p.is_file())
    card = engine("card").load_card(engine("card").card_path_for(model))
    seconds = args.seconds
    print(
        f"Engine benchmark: {seconds:.0f} s of synthesised audio at {card.features.sample_rate} Hz, "
        f"model {model.name} "
        f"({model.stat().st_size} bytes), Python {sys.version.split()[0]}, PyAV {av.__version__}"
    )
    rate = card.features.sample_rate
    samples = synthesise(seconds, rate)

    cpu, patches = bench_features(samples, card)
    print(
        f"  features (PatchStream: LogMelFrontend + PatchAssembler): {cpu / seconds * 1000:7.3f} ms CPU per audio second"
    )
    windows_per_second = len(patches) / seconds
    for name in ("litert", "numpy"):
        timing = bench_backend(name, model, card, patches)
        if timing is None:
            print(f"  inference {name}: not available")
            continue
        cpu, wall = timing
        print(
            f"  inference {name:7s}: {cpu / len(patches) * 1000:7.3f} ms CPU per window "
            f"({wall / len(patches) * 1000:.3f} ms wall), {cpu / seconds * 1000:7.3f} ms CPU per audio "
            f"second ({windows_per_second:.2f} windows/s)"
        )

    with tempfile.TemporaryDirectory() as folder:
        sys.path.insert(0, str(REPO_ROOT))
        from tests.engine.audio import write_audio

        path = write_audio(Path(folder) / "bench.flac", samples, rate)
        figures = bench_pipeline(path, model)
    stats, cpu, wall = figures["stats"], figures["cpu"], figures["wall"]
    print(
        f"  whole pipeline (scan: FLAC decode + features + {stats['backend']} + tracker): "
        f"{cpu / seconds * 1000:7.3f} ms CPU per audio second, {wall:.2f} s wall for {seconds:.0f} s "
        f"({seconds / wall:.0f}x real time), worker real-time factor {stats['real_time_factor']:.5f}, "
        f"{stats['windows']} windows, {stats['overruns']} overruns, {figures['episodes']} episodes"
    )
    print(
        f"  peak RSS of the scanning process: {figures['peak_rss_kib'] / 1024:.1f} MiB"
    )
    peak_kib = resource.getrusage(
        resource.RUSAGE_SELF
    ).ru_maxrss  # (no exec: ru_maxrss is right)
    print(
        f"  (peak RSS of this process, with {seconds:.0f} s of synthesised float audio: {peak_kib / 1024:.1f} MiB)"
    )


if __name__ == "__main__":
    main()
