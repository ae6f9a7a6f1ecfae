"""The default model in one report: compute against a YAMNet-sized network, then accuracy.

    .venv-train/bin/python benchmarks/model_report.py [--model M.tflite] [--no-evaluate]

1. Compute: `compute.py`'s side-by-side timing with a YAMNet-shaped network (LiteRT, 1 thread).
2. Accuracy recorded in the model card: test split, held-out source, 24 h negative stream.
3. Unless --no-evaluate or the corpus is missing (../shared/data/cry-corpus or --corpus): the
   test split evaluated again, now, through the engine. The split is recomputed from the corpus
   and the card's own training config (seed, fractions, held-out sources), so these figures
   check the card's.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys
from typing import Any

import compute

sys.path.insert(0, str(compute.REPO / "training"))

from cry_training.dataset import assign_splits, load_clips, select_clips
from cry_training.evaluate import (
    EvalOptions,
    card_for,
    evaluate_clips,
    summary_lines,
)

DEFAULT_MODEL = compute.REPO / "custom_components/cry_detector/models/default.tflite"
DEFAULT_CORPUS = compute.REPO.parent / "shared" / "data" / "cry-corpus"


def test_clips(card: Any, corpus: Path) -> list[Any]:
    """The card's test split of the corpus, recomputed from its training config."""
    config = card.training["config"]
    data, split = config["data"], config["split"]
    clips, _ = select_clips(
        load_clips(corpus),
        positive_label=data["positive_label"],
        negative_label=data["negative_label"],
        wanted_words=data["wanted_words"],
        sources=data["sources"],
    )
    splits = assign_splits(
        clips,
        seed=config["seed"],
        val_fraction=split["val_fraction"],
        test_fraction=split["test_fraction"],
        holdout_sources=split["holdout_sources"],
    )
    return [clip for clip in clips if splits[clip.path] == "test"]


def card_lines(card: Any) -> list[str]:
    """The accuracy figures the card records."""
    lines = []
    for name in ("test", "heldout_source"):
        result = card.metrics.get(name)
        if result:
            lines.append(f"[{name}] " + card.metrics["notes"].get(name, ""))
            lines += [
                "  " + line for line in summary_lines({"model": "card", **result})
            ]
    return lines


def main() -> None:
    """Print compute, the card's accuracy and (corpus permitting) a fresh evaluation."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--negative_hours", type=float, default=24.0)
    parser.add_argument("--no-evaluate", dest="evaluate", action="store_false")
    args = parser.parse_args()
    card = card_for(args.model)
    print(f"== {card.name} {card.version}: compute per second of audio ==")
    compute.print_table(compute.measure(args.model, args.repeats))
    print("\n== accuracy recorded in the model card ==")
    print("\n".join(card_lines(card)))
    if not args.evaluate:
        return
    if not (args.corpus / "manifest.csv").is_file():
        print(f"\n(corpus not found at {args.corpus}: no fresh evaluation)")
        return
    clips = test_clips(card, args.corpus)
    print(
        f"\n== the test split evaluated now ({len(clips)} clips from {args.corpus}) =="
    )
    options = EvalOptions(progress=False, negative_hours=args.negative_hours)
    result = evaluate_clips(args.model, clips, options, log=lambda _: None)
    print("\n".join(summary_lines(result)))


if __name__ == "__main__":
    main()
