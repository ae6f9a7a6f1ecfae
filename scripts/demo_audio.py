"""Build the demo stream: a few minutes of a nursery with cries at known times.

Made from the real recordings in ../shared/data/cry-corpus when it is there (room tone, spoken
digits, music, door knocks and infant cries), synthesised otherwise. Written as 16 kHz mono FLAC
with a JSON timeline beside it; `--check` scans it with the bundled model and reports which of the
known cries the model finds.

    scripts/run python scripts/demo_audio.py [--output .cache/demo/nursery-demo.flac]
        [--corpus DIR] [--synthetic] [--force] [--check]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
import csv
from dataclasses import asdict, dataclass
import json
import os
from pathlib import Path
import sys
from typing import Any

import numpy as np
import numpy.typing as npt

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.engine import audio  # noqa: E402

RATE = 16000
DEFAULT_OUTPUT = REPO_ROOT / ".cache" / "demo" / "nursery-demo.flac"
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "data" / "cry-corpus"
# Bump when the timeline or the mixing changes, so old demo files are rebuilt.
FORMAT_VERSION = 1

Audio = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Event:
    """One sound of the demo: what it is, when, and where its audio came from."""

    kind: str
    start: float
    end: float
    level_dbfs: float
    clips: tuple[str, ...] = ()


# kind, start s, end s, RMS level (dBFS). A quiet room first, then a cry within seconds, so a new
# user sees the sensor flip soon after the start; distractors in between, three cries per loop.
TIMELINE: tuple[tuple[str, float, float, float], ...] = (
    ("cry", 5.0, 29.0, -24.0),
    ("speech", 36.0, 44.0, -28.0),
    ("music", 49.0, 61.0, -30.0),
    ("knock", 65.0, 70.0, -30.0),
    ("speech", 74.0, 80.0, -28.0),
    ("cry", 86.0, 116.0, -24.0),
    ("music", 122.0, 134.0, -30.0),
    ("knock", 138.0, 143.0, -30.0),
    ("speech", 146.0, 152.0, -28.0),
    ("cry", 157.0, 175.0, -26.0),
)
DURATION = 180.0
ROOM_TONE_DBFS = -52.0

# Corpus classes used per kind (label, source, class prefix). Cries: donateacry; no adult
# vocalisations (deeply_nonverbal), which the card lists as a known source of false alarms.
CORPUS_CLASSES: dict[str, tuple[str, str, str]] = {
    "room": ("not_crying", "giulbia/own", "silence_room_tone"),
    "cry": ("crying", "donateacry", "infant_cry/"),
    "speech": ("not_crying", "fsdd", "speech_digits"),
    "music": ("not_crying", "librosa_data", "music"),
    "knock": ("not_crying", "esc50_fold4", "door_knock"),
}


def _rms(signal: Audio) -> float:
    """Return the RMS of a signal."""
    return float(np.sqrt(np.mean(signal * signal))) if signal.size else 0.0


def _to_level(signal: Audio, level_dbfs: float) -> Audio:
    """Scale a signal to an RMS level (measured over its loud part, not its silences)."""
    frames = signal[: signal.size // 160 * 160].reshape(-1, 160)
    if not frames.size:
        return signal
    frame_rms = np.sqrt(np.mean(frames * frames, axis=1))
    loud = frame_rms[frame_rms >= 0.1 * frame_rms.max()]
    reference = float(np.sqrt(np.mean(loud * loud))) if loud.size else 0.0
    if reference == 0.0:
        return signal
    scaled: Audio = signal * (10.0 ** (level_dbfs / 20.0) / reference)
    return scaled


def _fade(signal: Audio, seconds: float = 0.05) -> Audio:
    """Fade a piece in and out, so cuts between clips do not click."""
    count = min(round(seconds * RATE), signal.size // 2)
    if count:
        ramp = np.linspace(0.0, 1.0, count)
        signal[:count] *= ramp
        signal[-count:] *= ramp[::-1]
    return signal


class CorpusClips:
    """Clips of the cry corpus by demo kind, in a fixed (seeded) order."""

    def __init__(self, corpus: Path, seed: int = 2026) -> None:
        """Read the manifest."""
        self.corpus = corpus
        self.rng = np.random.default_rng(seed)
        with (corpus / "manifest.csv").open(newline="", encoding="utf-8") as handle:
            self.rows = list(csv.DictReader(handle))

    def paths(self, kind: str) -> list[str]:
        """Return the relative paths of a kind's clips, shuffled reproducibly."""
        label, source, klass = CORPUS_CLASSES[kind]
        paths = sorted(
            row["path"]
            for row in self.rows
            if row["label"] == label
            and row["source"] == source
            and row["class"].startswith(klass)
        )
        if not paths:
            raise FileNotFoundError(f"no {kind} clips ({source}) in {self.corpus}")
        order = self.rng.permutation(len(paths))
        return [paths[i] for i in order]

    def fill(self, kind: str, seconds: float, gap: float) -> tuple[Audio, list[str]]:
        """Concatenate clips of a kind (gap seconds apart) to fill `seconds`."""
        out = np.zeros(round(seconds * RATE))
        used: list[str] = []
        position = 0
        for path in self._cycle(self.paths(kind)):
            if position >= out.size:
                break
            clip = audio.read_audio(self.corpus / path, RATE).astype(np.float64) / 32768
            piece = _fade(clip[: out.size - position].copy())
            out[position : position + piece.size] = piece
            used.append(path)
            position += piece.size + round(gap * RATE)
        return out, used

    @staticmethod
    def _cycle(paths: list[str]) -> Iterator[str]:
        """Repeat the paths forever."""
        while True:
            yield from paths


def _corpus_event(
    clips: CorpusClips, kind: str, seconds: float
) -> tuple[Audio, list[str]]:
    """Real audio for one event."""
    gaps = {"cry": 0.3, "speech": 0.25, "music": 0.0, "knock": 0.0}
    if kind == "music":
        # One piece, from its middle: the openings are often quiet.
        path = clips.paths("music")[0]
        piece = audio.read_audio(clips.corpus / path, RATE).astype(np.float64) / 32768
        begin = max(0, piece.size // 3)
        segment = piece[begin : begin + round(seconds * RATE)]
        return _fade(segment.copy(), 0.5), [path]
    return clips.fill(kind, seconds, gaps[kind])


def _band_noise(count: int, rng: np.random.Generator) -> Audio:
    """White noise limited to 300-3800 Hz, unit RMS."""
    spectrum = np.fft.rfft(rng.normal(size=count))
    freqs = np.fft.rfftfreq(count, 1.0 / RATE)
    spectrum[(freqs < 300.0) | (freqs > 3800.0)] = 0.0
    noise = np.fft.irfft(spectrum, n=count)
    return noise / (float(np.std(noise)) or 1.0)


def _cry_call(seconds: float, rng: np.random.Generator) -> Audio:
    """One cry call: a rising-falling 400-700 Hz melody with vibrato and harsh, breathy voice.

    Real cries are not clean tones: turbulent (noisy) phonation is part of what makes them cries,
    so band-limited noise is mixed with the harmonics (tests' `cry()` is clean harmonics only).
    """
    count = round(seconds * RATE)
    t = np.arange(count) / RATE
    low, high = rng.uniform(400.0, 450.0), rng.uniform(550.0, 700.0)
    f0 = low + (high - low) * np.sin(np.pi * t / seconds) ** 0.6
    f0 *= 1.0 + 0.03 * np.sin(2.0 * np.pi * rng.uniform(4.0, 7.0) * t)
    voiced = audio.harmonic_tone(f0, RATE)
    voiced /= _rms(voiced) or 1.0
    envelope = np.minimum(1.0, np.minimum(t, seconds - t) / 0.08)
    result: Audio = (voiced + 0.3 * _band_noise(count, rng)) * envelope
    return result


def synthetic_cry_bout(seconds: float, seed: int) -> Audio:
    """Crying: 1-2 s calls with 0.2-0.5 s inhalation pauses, filling `seconds`."""
    rng = np.random.default_rng(seed)
    out = np.zeros(round(seconds * RATE))
    position = 0
    while position < out.size:
        call = _cry_call(rng.uniform(1.0, 2.0), rng)[: out.size - position]
        out[position : position + call.size] = call
        position += call.size + round(rng.uniform(0.2, 0.5) * RATE)
    return out


def _synthetic_event(kind: str, seconds: float, seed: int) -> Audio:
    """Synthesised audio for one event (distractors from tests/engine/audio.py)."""
    makers: dict[str, Callable[[], Audio]] = {
        "cry": lambda: synthetic_cry_bout(seconds, seed),
        "speech": lambda: audio.speech_like(seconds, RATE, seed=seed),
        "music": lambda: audio.music(seconds, RATE, seed=seed),
        "knock": lambda: audio.door_knocks(
            seconds, RATE, knock_times=(0.5, 0.8, 1.1, 3.0, 3.3), seed=seed
        ),
    }
    return _fade(makers[kind]())


def build(corpus: Path | None) -> tuple[Audio, list[Event]]:
    """Mix the demo: room tone under everything, events placed on the timeline."""
    total = round(DURATION * RATE)
    clips = CorpusClips(corpus) if corpus is not None else None
    events: list[Event] = []
    if clips is not None:
        room, used = clips.fill("room", DURATION, 0.0)
        track = _to_level(room, ROOM_TONE_DBFS)[:total]
        events.append(Event("room", 0.0, DURATION, ROOM_TONE_DBFS, tuple(used)))
    else:
        track = audio.room_tone(DURATION, RATE, level_dbfs=ROOM_TONE_DBFS, seed=1)
        events.append(Event("room", 0.0, DURATION, ROOM_TONE_DBFS))
    for number, (kind, start, end, level) in enumerate(TIMELINE):
        if clips is not None:
            sound, used = _corpus_event(clips, kind, end - start)
        else:
            sound, used = _synthetic_event(kind, end - start, seed=10 + number), []
        audio.place(track, _to_level(sound, level), start, RATE)
        events.append(Event(kind, start, end, level, tuple(used)))
    peak = float(np.max(np.abs(track)))
    if peak > 0.97:
        track *= 0.97 / peak
    return track, events


def check(path: Path, events: list[Event]) -> dict[str, Any]:
    """Scan the demo with the bundled model; which known cries are found, which alarms are false."""
    from custom_components.cry_detector.engine.scan import scan_file

    result = scan_file(path)
    cries = [event for event in events if event.kind == "cry"]
    found = [
        any(ep.start < cry.end and ep.end > cry.start for ep in result.episodes)
        for cry in cries
    ]
    false = [
        ep
        for ep in result.episodes
        if not any(ep.start < cry.end + 2.0 and ep.end > cry.start for cry in cries)
    ]
    return {
        "backend": result.stats.backend,
        "cries": len(cries),
        "cries_detected": sum(found),
        "false_episodes": len(false),
        "cry_seconds_per_loop": round(result.cry_seconds, 1),
        "episodes": [
            {"start": round(ep.start, 1), "end": round(ep.end, 1)}
            for ep in result.episodes
        ],
    }


def timeline_path(output: Path) -> Path:
    """Return the JSON written beside the audio."""
    return output.with_suffix(".json")


def origin(corpus: Path | None) -> str:
    """Name where the demo's audio comes from."""
    return "cry-corpus" if corpus is not None else "synthesised"


def is_current(output: Path, corpus: Path | None) -> bool:
    """Whether an up-to-date demo from the wanted origin is already there."""
    try:
        info = json.loads(timeline_path(output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        output.is_file()
        and info.get("format_version") == FORMAT_VERSION
        and info.get("origin") == origin(corpus)
    )


def main(argv: list[str] | None = None) -> int:
    """Build the demo stream if needed; print where it is and what it holds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--corpus",
        type=Path,
        default=Path(os.environ.get("CRY_CORPUS", DEFAULT_CORPUS)),
    )
    parser.add_argument("--synthetic", action="store_true", help="ignore the corpus")
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    parser.add_argument(
        "--check", action="store_true", help="scan it with the bundled model"
    )
    args = parser.parse_args(argv)
    output: Path = args.output
    corpus: Path | None = args.corpus
    if args.synthetic or corpus is None or not (corpus / "manifest.csv").is_file():
        corpus = None
    if args.force or not is_current(output, corpus):
        output.parent.mkdir(parents=True, exist_ok=True)
        track, events = build(corpus)
        audio.write_audio(output, track, RATE)
        info: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "origin": origin(corpus),
            "seconds": DURATION,
            "events": [asdict(event) for event in events],
        }
        timeline_path(output).write_text(json.dumps(info, indent=1), encoding="utf-8")
    info = json.loads(timeline_path(output).read_text(encoding="utf-8"))
    cries = [e for e in info["events"] if e["kind"] == "cry"]
    print(
        f"Demo stream: {output} ({info['seconds']:.0f} s, {info['origin']}); cries at "
        + ", ".join(f"{e['start']:.0f}-{e['end']:.0f} s" for e in cries)
    )
    if args.check:
        events = [Event(**{**e, "clips": tuple(e["clips"])}) for e in info["events"]]
        report = check(output, events)
        info["check"] = report
        timeline_path(output).write_text(json.dumps(info, indent=1), encoding="utf-8")
        print(
            f"Bundled model ({report['backend']}): {report['cries_detected']} of "
            f"{report['cries']} cries detected, {report['false_episodes']} false episodes, "
            f"{report['cry_seconds_per_loop']} s of crying per loop"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
