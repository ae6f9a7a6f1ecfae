"""`cry-train evaluate`: metrics through the runtime code (engine features, backend, tracker).

Clip score = the highest window probability; the negatives are also played as one long stream
through the engine's Pipeline and EpisodeTracker, with the cries spread through it.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import defaultdict
from collections.abc import Callable, Sequence
import contextlib
from dataclasses import dataclass
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._engine import (
    backends,
    card as engine_card,
    engine_module,
    features as engine_features,
)
from ._progress import progress_bar
from .audio import read_audio, to_int16
from .augment import synthetic_background
from .dataset import Clip, load_clips, read_split, select_clips
from .metrics import counts_at, recall_at_fpr, roc_auc, roc_curve
from .windows import clip_patches

if TYPE_CHECKING:
    from custom_components.cry_detector.engine import (
        pipeline as pipeline_module,
        sources,
    )
else:
    pipeline_module = engine_module("pipeline")
    sources = engine_module("sources")

Log = Callable[[str], None]
FloatArray = npt.NDArray[np.float32]
ROC_POINTS = 200


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate."""

    backend: str | None = None  # litert | tflite_runtime | numpy; None = best available
    threshold: float | None = None  # None = the card's
    seed: int = 0
    chunk_seconds: float = (
        0.5  # stream chunking (streaming output equals batch output anyway)
    )
    progress: bool = True
    # Also replay the negatives as one stream this long (0 = not), each pass in a new order
    # with its own gain and noise floor: false episodes per 24 h need far more audio than
    # the corpus holds.
    negative_hours: float = 0.0


@dataclass
class Scored:
    """A clip and its window probabilities."""

    clip: Clip
    probabilities: FloatArray

    @property
    def score(self) -> float:
        """Clip score: the highest window probability."""
        return float(self.probabilities.max()) if self.probabilities.size else 0.0


def _load_int16(clip: Clip, sample_rate: int) -> npt.NDArray[np.int16]:
    """Decode a clip to the int16 mono samples a runtime source delivers."""
    return to_int16(read_audio(clip.path, sample_rate))


def _bar(items: Sequence[Any], desc: str, enabled: bool) -> Any:
    """Iterate with a progress bar (stderr)."""
    return progress_bar(items, enabled=enabled, desc=desc, unit="clip")


def score_clips(
    clips: Sequence[Clip],
    card: Any,
    backend: Any,
    progress: bool = False,
) -> list[Scored]:
    """Window probabilities of every clip (short clips are centred in one patch of zeros)."""
    config = card.features
    results = []
    for clip in _bar(clips, "scoring clips", progress):
        samples = _load_int16(clip, config.sample_rate)
        patches = clip_patches(
            engine_features.to_float(samples).astype(np.float32), config
        )
        probabilities = np.array(
            [backend.predict(patch)[card.positive_index] for patch in patches],
            dtype=np.float32,
        )
        results.append(Scored(clip, probabilities))
    return results


def _stream_plan(
    negatives: Sequence[Clip], cries: Sequence[Clip], seed: int
) -> list[tuple[Clip, bool]]:
    """Negatives in a seeded random order with the cries spread evenly between them."""
    rng = np.random.default_rng([seed, 3])
    order = [negatives[i] for i in rng.permutation(len(negatives))]
    plan: list[tuple[Clip, bool]] = [(clip, False) for clip in order]
    for rank, cry in enumerate(cries):
        position = round((rank + 0.5) * len(order) / max(len(cries), 1))
        plan.insert(min(position + rank, len(plan)), (cry, True))
    return plan


class PlanSource(sources.AudioSource):
    """The stream plan as an engine AudioSource: clips back to back, stamped from 0 s.

    It waits while the pipeline is more than `backlog_seconds` behind, so the pipeline's
    bounded queue never drops audio however fast files decode.
    """

    def __init__(
        self,
        plan: Sequence[tuple[Clip, bool]],
        sample_rate: int,
        chunk_seconds: float = 0.5,
        backlog_seconds: float = 3.0,
        vary: Variation | None = None,
    ) -> None:
        """Prepare to read the plan; `vary` changes each played clip (replays)."""
        self.sample_rate = sample_rate
        self._vary = vary
        self._decoded: dict[Path, npt.NDArray[np.int16]] = {}
        self._played = 0
        self.description = f"evaluation stream of {len(plan)} clips"
        self._plan = list(plan)
        self._chunk = max(1, int(chunk_seconds * sample_rate))
        self._backlog = backlog_seconds
        self._pending: list[npt.NDArray[np.int16]] = []
        self.position = 0  # samples delivered
        self.processed_until = 0.0  # end of the newest window the pipeline reported
        self.cries: list[tuple[float, float]] = []
        self.played: list[tuple[float, Clip]] = []  # (start in stream seconds, clip)
        self.negative_samples = 0
        self.on_clip: Callable[[int], Any] | None = None  # progress
        self._progressed = asyncio.Event()

    @property
    def negative_seconds(self) -> float:
        """Seconds of negative audio delivered so far."""
        return self.negative_samples / self.sample_rate

    def processed(self, end: float) -> None:
        """The pipeline reported a window ending at `end` (called on the event loop)."""
        self.processed_until = max(self.processed_until, end)
        self._progressed.set()

    async def open(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close."""

    async def read(self) -> sources.AudioChunk | None:
        """The next chunk of the stream (decoding the next clip when needed)."""
        while self.position / self.sample_rate - self.processed_until > self._backlog:
            self._progressed.clear()
            with contextlib.suppress(TimeoutError):  # re-check now and then, never hang
                await asyncio.wait_for(self._progressed.wait(), 1.0)
        while not self._pending:
            if not self._plan:
                return None
            self._queue_clip(*self._plan.pop(0))
        samples = self._pending.pop(0)
        chunk = sources.AudioChunk(samples, self.position / self.sample_rate)
        self.position += samples.size
        return chunk

    def _queue_clip(self, clip: Clip, is_cry: bool) -> None:
        """Decode a clip into chunks; note where the cries are."""
        if self._vary is None:
            samples = _load_int16(clip, self.sample_rate)
        else:  # replays: decode each clip once
            if clip.path not in self._decoded:
                self._decoded[clip.path] = _load_int16(clip, self.sample_rate)
            samples = self._vary(self._decoded[clip.path], self._played)
        self._played += 1
        start = (self.position + sum(p.size for p in self._pending)) / self.sample_rate
        self.played.append((start, clip))
        if is_cry:
            self.cries.append((start, start + samples.size / self.sample_rate))
        else:
            self.negative_samples += samples.size
        self._pending.extend(
            samples[i : i + self._chunk] for i in range(0, samples.size, self._chunk)
        )
        if self.on_clip is not None:
            self.on_clip(1)


Variation = Callable[[npt.NDArray[np.int16], int], npt.NDArray[np.int16]]
REPLAY_GAIN_DB = (-12.0, 6.0)
REPLAY_NOISE_DBFS = (-75.0, -50.0)  # a quiet room to a noise machine at low volume


def replay_variation(sample_rate: int, seed: int) -> Variation:
    """Each replayed clip gets its own gain and noise floor (white/pink/brown/fan)."""

    def vary(samples: npt.NDArray[np.int16], played: int) -> npt.NDArray[np.int16]:
        rng = np.random.default_rng([seed, 5, played])
        gain = 10.0 ** (rng.uniform(*REPLAY_GAIN_DB) / 20.0)
        floor = 10.0 ** (rng.uniform(*REPLAY_NOISE_DBFS) / 20.0)
        noise = synthetic_background(samples.size, sample_rate, rng) * floor
        return to_int16(samples.astype(np.float32) / 32768.0 * gain + noise)

    return vary


def replay_plan(
    negatives: Sequence[Clip], hours: float, seed: int
) -> list[tuple[Clip, bool]]:
    """The negatives in a new seeded order each pass, passes until `hours` are filled."""
    seconds = sum(clip.seconds or 0.0 for clip in negatives)
    if seconds <= 0:
        return []
    passes = math.ceil(hours * 3600.0 / seconds)
    return [
        (clip, False)
        for index in range(passes)
        for clip, _ in _stream_plan(negatives, [], seed + 1000 * (index + 1))
    ]


def play_plan(
    plan: Sequence[tuple[Clip, bool]],
    card: Any,
    backend: Any,
    tracker_config: Any,
    on_result: Callable[[Any], None],
    *,
    chunk_seconds: float = 0.5,
    vary: Variation | None = None,
    progress: bool = False,
) -> PlanSource:
    """Play a plan as one stream through the engine's Pipeline; every result goes to on_result.

    Returns the played source: its cries, played clips and negative samples.
    """
    source = PlanSource(plan, card.features.sample_rate, chunk_seconds, vary=vary)

    def deliver(result: Any) -> None:
        source.processed(result.end)
        on_result(result)

    async def play() -> None:
        pipeline = pipeline_module.Pipeline(
            source, card, backend, tracker_config, deliver
        )
        async with source:
            await pipeline.run()

    with progress_bar(
        enabled=progress, total=len(plan), desc="stream", unit="clip"
    ) as bar:
        source.on_clip = bar.update
        asyncio.run(play())
    return source


def stream_episodes(
    plan: Sequence[tuple[Clip, bool]],
    card: Any,
    backend: Any,
    tracker_config: Any,
    options: EvalOptions,
    *,
    vary: Variation | None = None,
) -> tuple[list[Any], PlanSource]:
    """Play the plan through the engine's Pipeline; return (ended episodes, the played source)."""
    episodes: list[Any] = []

    def on_result(result: Any) -> None:
        if result.update.ended is not None:
            episodes.append(result.update.ended)

    source = play_plan(
        plan,
        card,
        backend,
        tracker_config,
        on_result,
        chunk_seconds=options.chunk_seconds,
        vary=vary,
        progress=options.progress,
    )
    return episodes, source


def detection_tolerance(features: Any, tracker_config: Any) -> float:
    """How long after a cry ends an episode may still begin and count as finding it."""
    return (
        features.patch_seconds
        + tracker_config.smoothing_windows * features.patch_hop_seconds
    )


def _overlaps(episode: Any, interval: tuple[float, float], tolerance: float) -> bool:
    """Whether an episode overlaps a cry interval widened by the detection delay."""
    return bool(episode.start < interval[1] + tolerance and episode.end > interval[0])


def stream_metrics(
    episodes: Sequence[Any],
    cries: Sequence[tuple[float, float]],
    negative_seconds: float,
    tolerance: float,
) -> dict[str, Any]:
    """False episodes per hour of negatives and episode recall on the inserted cries."""
    false_episodes = [
        episode
        for episode in episodes
        if not any(_overlaps(episode, cry, tolerance) for cry in cries)
    ]
    detected = sum(
        any(_overlaps(episode, cry, tolerance) for episode in episodes) for cry in cries
    )
    hours = negative_seconds / 3600.0
    cry_seconds = sum(end - start for start, end in cries)
    tracked_seconds = sum(episode.duration for episode in episodes)
    return {
        "negative_hours": round(hours, 4),
        "false_episodes": len(false_episodes),
        "false_episodes_per_hour": _round(len(false_episodes) / hours)
        if hours > 0
        else None,
        "false_cry_seconds": round(sum(e.duration for e in false_episodes), 2),
        "inserted_cries": len(cries),
        "detected_cries": int(detected),
        "episode_recall": _round(detected / len(cries)) if cries else None,
        # Cry-minute error: the tracker's cry time (false episodes included) against the true
        # length of the inserted cries (clips labelled crying; their pauses count as crying).
        "cry_seconds": round(cry_seconds, 2),
        "tracked_cry_seconds": round(tracked_seconds, 2),
        "cry_minute_error": _round(abs(tracked_seconds - cry_seconds) / cry_seconds)
        if cry_seconds > 0
        else None,
    }


def _round(value: float, digits: int = 4) -> float | None:
    """Round for JSON; nan becomes None."""
    return None if value is None or math.isnan(value) else round(float(value), digits)


def per_class_table(
    scored: Sequence[Scored], threshold: float, positive_label: str
) -> list[dict[str, Any]]:
    """One row per (label, source, class): clips, hits at the threshold, rate, mean/max score."""
    rows: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for item in scored:
        rows[(item.clip.label, item.clip.source, item.clip.cls)].append(item.score)
    table = []
    for (label, source, cls), scores in rows.items():
        hits = sum(score >= threshold for score in scores)
        table.append(
            {
                "label": label,
                "source": source,
                "class": cls,
                "clips": len(scores),
                "detected": int(hits),
                "rate": _round(hits / len(scores)),
                "mean_score": _round(float(np.mean(scores))),
                "max_score": _round(float(np.max(scores))),
            }
        )
    # False positives first (most frequent first), then the positives.
    return sorted(
        table,
        key=lambda row: (
            row["label"] == positive_label,
            -(row["rate"] or 0),
            row["class"],
        ),
    )


def clip_metrics(
    scored: Sequence[Scored], threshold: float, positive_label: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, list[float]]]:
    """(clip-level ROC metrics, counts at the threshold, downsampled ROC curve)."""
    scores = np.array([item.score for item in scored])
    labels = np.array([item.clip.label == positive_label for item in scored])
    recall_1, threshold_1 = recall_at_fpr(scores, labels, 0.01)
    recall_5, threshold_5 = recall_at_fpr(scores, labels, 0.05)
    # No negative clip at all over the threshold: what <= 1 false episode a day asks of a
    # stream that replays every negative many times.
    recall_0, _ = recall_at_fpr(scores, labels, 0.0)
    level = {
        "clips": int(labels.size),
        "positives": int(labels.sum()),
        "negatives": int((~labels).sum()),
        "roc_auc": _round(roc_auc(scores, labels)),
        "recall_at_1pct_fpr": _round(recall_1),
        "score_threshold_at_1pct_fpr": _round(threshold_1, 6)
        if math.isfinite(threshold_1)
        else None,
        "recall_at_5pct_fpr": _round(recall_5),
        "score_threshold_at_5pct_fpr": _round(threshold_5, 6)
        if math.isfinite(threshold_5)
        else None,
        "recall_above_every_negative": _round(recall_0),
    }
    counts = counts_at(scores, labels, threshold)
    at_threshold = {
        "threshold": threshold,
        "precision": _round(counts.precision),
        "recall": _round(counts.recall),
        "false_positive_rate": _round(counts.false_positive_rate),
        "true_positives": counts.true_positives,
        "false_positives": counts.false_positives,
    }
    fpr, tpr, _ = (
        roc_curve(scores, labels)
        if labels.any() and (~labels).any()
        else (np.zeros(0),) * 3
    )
    keep = np.unique(
        np.linspace(0, max(fpr.size - 1, 0), min(fpr.size, ROC_POINTS)).astype(int)
    )
    curve = (
        {
            "fpr": [round(float(v), 5) for v in fpr[keep]],
            "tpr": [round(float(v), 5) for v in tpr[keep]],
        }
        if fpr.size
        else {"fpr": [], "tpr": []}
    )
    return level, at_threshold, curve


def evaluate_clips(
    model_path: Path,
    clips: Sequence[Clip],
    options: EvalOptions = EvalOptions(),
    log: Log = print,
) -> dict[str, Any]:
    """Evaluate a model file (its card beside it) with an engine backend."""
    card, backend = backends.load_model(Path(model_path), options.backend)
    try:
        return {
            "model": str(model_path),
            **evaluate_backend(card, backend, clips, options),
        }
    finally:
        backend.close()


def evaluate_backend(
    card: Any, backend: Any, clips: Sequence[Clip], options: EvalOptions = EvalOptions()
) -> dict[str, Any]:
    """Clip-level and streaming metrics of a loaded backend on clips (label = card positive or not)."""
    threshold = options.threshold if options.threshold is not None else card.threshold
    positive = card.positive_label
    scored = score_clips(clips, card, backend, options.progress)
    level, at_threshold, curve = clip_metrics(scored, threshold, positive)
    tracker_config = card.tracker_config(threshold=threshold)
    plan = _stream_plan(
        [c for c in clips if c.label != positive],
        [c for c in clips if c.label == positive],
        options.seed,
    )
    episodes, source = stream_episodes(plan, card, backend, tracker_config, options)
    tolerance = detection_tolerance(card.features, tracker_config)
    result = {
        "card": {
            "name": card.name,
            "version": card.version,
            "threshold": card.threshold,
        },
        "backend": backend.name,
        "positive_label": positive,
        "sources": sorted({clip.source for clip in clips}),
        "clip_level": level,
        "at_threshold": at_threshold,
        "stream": stream_metrics(
            episodes, source.cries, source.negative_seconds, tolerance
        ),
        "tracker": {
            name: getattr(tracker_config, name)
            for name in (
                "threshold",
                "hysteresis",
                "smoothing_windows",
                "min_cry_seconds",
                "hold_seconds",
                "cooldown_seconds",
            )
        },
        "per_class": per_class_table(scored, threshold, positive),
        "roc": curve,
    }
    if options.negative_hours > 0:
        result["long_stream"] = long_stream_metrics(
            card,
            backend,
            [c for c in clips if c.label != positive],
            tracker_config,
            options,
        )
    return result


def long_stream_metrics(
    card: Any,
    backend: Any,
    negatives: Sequence[Clip],
    tracker_config: Any,
    options: EvalOptions,
) -> dict[str, Any]:
    """False episodes in options.negative_hours of the negatives replayed (varied) as one stream."""
    plan = replay_plan(negatives, options.negative_hours, options.seed)
    vary = replay_variation(card.features.sample_rate, options.seed)
    episodes, source = stream_episodes(
        plan, card, backend, tracker_config, options, vary=vary
    )
    hours = source.negative_seconds / 3600.0
    return {
        "negative_hours": round(hours, 3),
        "negative_clips": len(negatives),
        "passes": len(plan) // max(len(negatives), 1),
        "variation": {
            "gain_db": list(REPLAY_GAIN_DB),
            "noise_floor_dbfs": list(REPLAY_NOISE_DBFS),
            "order": "new seeded order each pass",
        },
        "false_episodes": len(episodes),
        "false_episodes_per_24h": _round(len(episodes) * 24.0 / hours)
        if hours > 0
        else None,
        "false_cry_seconds": round(sum(e.duration for e in episodes), 1),
        "by_class": _episodes_by_class(episodes, source.played),
    }


def _episodes_by_class(
    episodes: Sequence[Any], played: Sequence[tuple[float, Clip]]
) -> dict[str, int]:
    """Count episodes by the source/class of the clip playing when each began, most first."""
    starts = [start for start, _ in played]
    counts: dict[str, int] = defaultdict(int)
    for episode in episodes:
        index = max(0, bisect.bisect_right(starts, episode.start) - 1)
        clip = played[index][1]
        counts[f"{clip.source}/{clip.cls}"] += 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def clips_for_evaluation(
    *,
    data_dir: Path | None,
    split_file: Path | None,
    split: str | None,
    sources: Sequence[str],
    positive_label: str,
    negative_label: str = "not_crying",
) -> list[Clip]:
    """Clips from a data folder (manifest or label folders), restricted to a split / sources."""
    if data_dir is None and split_file is None:
        raise ValueError("give a data folder or a split file")
    clips = load_clips(data_dir) if data_dir is not None else load_clips(split_file)  # type: ignore[arg-type]
    if split_file is not None and split is not None:
        splits = read_split(split_file)
        clips = [clip for clip in clips if splits.get(clip.path.resolve()) == split]
    selected, _ = select_clips(
        clips,
        positive_label=positive_label,
        negative_label=negative_label,
        sources=sources,
    )
    return selected


def card_for(model_path: Path) -> Any:
    """Load the card beside a model."""
    return engine_card.load_card(engine_card.card_path_for(Path(model_path)))


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Human-readable summary of an evaluation."""
    level, at, stream = result["clip_level"], result["at_threshold"], result["stream"]
    lines = [
        f"model {result['model']} ({result['backend']} backend), sources {', '.join(result['sources'])}",
        f"clips: {level['clips']} ({level['positives']} positive, {level['negatives']} negative)",
        (
            f"ROC-AUC {level['roc_auc']}; recall at 1% FPR {level['recall_at_1pct_fpr']}, "
            f"at 5% FPR {level['recall_at_5pct_fpr']}, "
            # cards written before this figure existed lack it
            f"above every negative {level.get('recall_above_every_negative', 'not recorded')}"
        ),
        f"at threshold {at['threshold']}: precision {at['precision']}, recall {at['recall']}, FPR {at['false_positive_rate']}",
        (
            f"stream: {stream['false_episodes']} false episodes in {stream['negative_hours']} h "
            f"of negatives = {stream['false_episodes_per_hour']}/h; {stream['detected_cries']}/"
            f"{stream['inserted_cries']} inserted cries found "
            f"(episode recall {stream['episode_recall']})"
        ),
    ]
    if "long_stream" in result:
        long = result["long_stream"]
        classes = ", ".join(
            f"{name} {n}" for name, n in list(long["by_class"].items())[:6]
        )
        lines.append(
            f"long stream: {long['false_episodes']} false episodes in {long['negative_hours']} h "
            f"({long['passes']} varied passes over {long['negative_clips']} negatives) = "
            f"{long['false_episodes_per_24h']} per 24 h"
            + (f"; from {classes}" if classes else "")
        )
    lines.append("false positives by class (at the threshold):")
    lines.extend(
        f"  {row['source']}/{row['class']}: {row['detected']}/{row['clips']} "
        f"(max score {row['max_score']})"
        for row in result["per_class"]
        if row["detected"] and row["label"] != result["positive_label"]
    )
    return lines


def write_report(result: dict[str, Any], path: Path) -> None:
    """A PNG: ROC curve, and the detection rate per class at the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["per_class"]
    figure, (roc_axis, bar_axis) = plt.subplots(
        1,
        2,
        figsize=(14, max(4.0, 0.22 * len(rows) + 1.5)),
        gridspec_kw={"width_ratios": [1, 1.4]},
    )
    roc_axis.plot(result["roc"]["fpr"], result["roc"]["tpr"], lw=2)
    roc_axis.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    roc_axis.set_xscale("symlog", linthresh=0.01)
    roc_axis.set_xlim(0, 1)
    roc_axis.set_ylim(0, 1.01)
    roc_axis.set_xlabel("false positive rate (clips)")
    roc_axis.set_ylabel("recall (clips)")
    roc_axis.set_title(f"ROC, AUC {result['clip_level']['roc_auc']}")
    roc_axis.grid(alpha=0.3)
    names = [f"{row['source']}/{row['class']}" for row in rows]
    rates = [row["rate"] or 0.0 for row in rows]
    colours = [
        "tab:green" if row["label"] == result["positive_label"] else "tab:red"
        for row in rows
    ]
    bar_axis.barh(range(len(rows)), rates, color=colours)
    bar_axis.set_yticks(range(len(rows)), names, fontsize=7)
    bar_axis.invert_yaxis()
    bar_axis.set_xlim(0, 1)
    bar_axis.set_xlabel(
        f"fraction of clips scored >= {result['at_threshold']['threshold']} (red: false positives)"
    )
    stream = result["stream"]
    bar_axis.set_title(
        f"per class; stream: {stream['false_episodes_per_hour']} false episodes/h, episode recall {stream['episode_recall']}"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
