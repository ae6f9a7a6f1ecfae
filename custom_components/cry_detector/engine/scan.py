"""Scan recordings offline with the same pipeline the integration runs live.

`python -m custom_components.cry_detector.engine scan FILE... [--model PATH] [--threshold X]
[--windows] [--json] [--backend NAME]`
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass
import json
from pathlib import Path
import sys
from typing import Any, TextIO

from .backends import BACKEND_ORDER, Backend, load_model
from .card import ModelCard
from .errors import CryDetectorError, ModelError
from .pipeline import Pipeline, PipelineStats, WindowResult
from .sources.file import FileSource
from .tracker import Episode, TrackerConfig

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default.tflite"
# Offline: a generous queue; the reader waits for the worker instead of dropping audio.
SCAN_QUEUE_SECONDS = 30.0

Window = tuple[float, float, float, float]


@dataclass(frozen=True)
class ScanResult:
    """What a scan found: every window (start, end, probability, dBFS), the episodes, cry time."""

    path: Path
    windows: list[Window]
    episodes: list[Episode]
    cry_seconds: float
    stats: PipelineStats

    def to_dict(self, *, windows: bool = True) -> dict[str, Any]:
        """Return a JSON-ready summary (optionally without the per-window list)."""
        data: dict[str, Any] = {
            "path": str(self.path),
            "audio_seconds": round(self.stats.audio_seconds, 3),
            "episodes": [
                {
                    "start": round(episode.start, 3),
                    "end": round(episode.end, 3),
                    "seconds": round(episode.duration, 3),
                    "peak_probability": round(episode.peak_probability, 4),
                }
                for episode in self.episodes
            ],
            "cry_seconds": round(self.cry_seconds, 3),
            "cry_minutes": round(self.cry_seconds / 60.0, 4),
            "stats": asdict(self.stats),
        }
        if windows:
            data["windows"] = [
                {
                    "start": round(s, 3),
                    "end": round(e, 3),
                    "probability": round(p, 4),
                    "dbfs": round(d, 1),
                }
                for s, e, p, d in self.windows
            ]
        return data


def load_scan_model(
    model_path: Path | None = None, preferred_backend: str | None = None
) -> tuple[ModelCard, Backend]:
    """Load the model (default: the bundled one) and its card; ModelError when there is none."""
    path = Path(model_path) if model_path is not None else DEFAULT_MODEL
    if model_path is None and not path.is_file():
        raise ModelError(
            f"no bundled model at {path}; pass --model PATH", reason="model_missing"
        )
    return load_model(path, preferred_backend)


async def async_scan_file(
    path: Path | str,
    card: ModelCard,
    backend: Backend,
    tracker_config: TrackerConfig | None = None,
) -> ScanResult:
    """Scan one file with an already loaded model (times are seconds from the file's start)."""
    windows: list[Window] = []
    episodes: list[Episode] = []

    def collect(result: WindowResult) -> None:
        if result.end > result.start:
            windows.append(
                (result.start, result.end, result.probability, result.level_dbfs)
            )
        if result.update.ended is not None:
            episodes.append(result.update.ended)

    source = FileSource(path, sample_rate=card.features.sample_rate, start_time=0.0)
    config = tracker_config if tracker_config is not None else card.tracker_config()
    async with source:
        pipeline = Pipeline(
            source, card, backend, config, collect, queue_seconds=SCAN_QUEUE_SECONDS
        )
        await pipeline.run()
    return ScanResult(
        Path(path),
        windows,
        episodes,
        pipeline.tracker.total_cry_seconds,
        pipeline.stats,
    )


def scan_file(
    path: Path | str,
    model_path: Path | None = None,
    tracker_config: TrackerConfig | None = None,
    preferred_backend: str | None = None,
) -> ScanResult:
    """Scan one file (blocking; runs its own event loop): load the model, run the pipeline."""
    card, backend = load_scan_model(model_path, preferred_backend)
    try:
        return asyncio.run(async_scan_file(path, card, backend, tracker_config))
    finally:
        backend.close()


# -- command line --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m custom_components.cry_detector.engine",
        description="Cry Detector listening engine tools.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    scan = commands.add_parser("scan", help="find crying episodes in audio files")
    scan.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="audio files (anything FFmpeg decodes)",
    )
    scan.add_argument(
        "--model",
        type=Path,
        help=f"model .tflite with its .json card (default {DEFAULT_MODEL})",
    )
    scan.add_argument(
        "--threshold",
        type=float,
        help="cry probability threshold (default: the card's)",
    )
    scan.add_argument(
        "--backend",
        choices=BACKEND_ORDER,
        help="inference backend (default: best available)",
    )
    scan.add_argument(
        "--windows", action="store_true", help="also list every window's probability"
    )
    scan.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def _print_text(result: ScanResult, show_windows: bool, out: TextIO) -> None:
    """Print one file's result for people."""
    stats = result.stats
    print(f"{result.path}: {stats.audio_seconds:.1f} s of audio", file=out)
    if show_windows:
        for start, end, probability, level in result.windows:
            print(
                f"  window {start:9.3f} - {end:9.3f}  p={probability:.3f}  {level:6.1f} dBFS",
                file=out,
            )
    if not result.episodes:
        print("  no crying episodes", file=out)
    for episode in result.episodes:
        print(
            f"  episode {episode.start:9.2f} - {episode.end:9.2f}  {episode.duration:6.1f} s"
            f"  (peak {episode.peak_probability:.2f})",
            file=out,
        )
    print(
        f"  total cry: {result.cry_seconds / 60.0:.2f} min ({result.cry_seconds:.1f} s)",
        file=out,
    )
    speed = 1.0 / stats.real_time_factor if stats.real_time_factor > 0 else float("inf")
    print(
        f"  {stats.backend}: {stats.windows} windows, inference {stats.inference_ms_mean:.2f} ms mean"
        f" / {stats.inference_ms_p95:.2f} ms p95, real-time factor {stats.real_time_factor:.4f}"
        f" ({speed:.0f}x real time), {stats.overruns} overruns",
        file=out,
    )


def main(
    argv: Sequence[str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the command line; return the exit status (0 ok, 1 a file or the model failed)."""
    # Looked up per call, not bound at import: callers (and pytest) swap sys.stdout/stderr.
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    try:
        card, backend = load_scan_model(args.model, args.backend)
    except CryDetectorError as error:
        print(f"error: {error}", file=err)
        return 1
    try:
        config = card.tracker_config(
            **({} if args.threshold is None else {"threshold": args.threshold})
        )
    except ValueError as error:
        backend.close()
        print(f"error: --threshold: {error}", file=err)
        return 2
    try:
        results, failures = asyncio.run(
            _scan_all(args.files, card, backend, config, err)
        )
    finally:
        backend.close()
    if args.json:
        document = {
            "model": card.name,
            "model_version": card.version,
            "backend": backend.name,
            "threshold": config.threshold,
            "files": [result.to_dict(windows=args.windows) for result in results],
            "errors": failures,
        }
        print(json.dumps(document, indent=2), file=out)
    else:
        for result in results:
            _print_text(result, args.windows, out)
    return 1 if failures else 0


async def _scan_all(
    files: list[Path],
    card: ModelCard,
    backend: Backend,
    config: TrackerConfig,
    err: TextIO,
) -> tuple[list[ScanResult], list[dict[str, str]]]:
    """Scan the files one after another; report the ones that fail and go on."""
    results: list[ScanResult] = []
    failures: list[dict[str, str]] = []
    for path in files:
        try:
            results.append(await async_scan_file(path, card, backend, config))
        except CryDetectorError as error:
            print(f"error: {path}: {error}", file=err)
            failures.append(
                {"path": str(path), "reason": error.reason, "error": str(error)}
            )
    return results, failures
