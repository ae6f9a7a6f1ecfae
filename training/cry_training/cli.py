"""The `cry-train` command (also `python -m cry_training`): prepare, train, export, evaluate, scan."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import json
import os
from pathlib import Path
import sys
from typing import Any

from .config import Config, ConfigError, load_config, set_value

EXIT_ERROR = 2
EXIT_REFUSED = 3

# Flags of TensorFlow's speech_commands/train.py that have no meaning here: features come from the
# model card and the architecture is the DS-CNN. Accepted (so old commands run) and reported.
IGNORED_SPEECH_COMMANDS_FLAGS = (
    "window_size_ms",
    "window_stride_ms",
    "dct_coefficient_count",
    "feature_bin_count",
    "model_architecture",
    "summaries_dir",
    "save_step_interval",
    "start_checkpoint",
    "silence_percentage",
    "unknown_percentage",
    "background_volume",
    "check_nans",
    "quantize",
    "preprocess",
    "verbosity",
    "optimizer",
    "data_url",
)


def _csv(text: str) -> list[str]:
    """Split a comma-separated flag value."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _add_prepare(commands: Any) -> None:
    """prepare: raw recordings -> clips + manifest.csv."""
    parser = commands.add_parser(
        "prepare", help="cut and convert raw recordings into clips"
    )
    parser.add_argument(
        "input",
        type=Path,
        help="folder with <label>/ sub-folders, or a manifest.csv (or its folder)",
    )
    parser.add_argument(
        "output",
        type=Path,
        help="output folder (gets <label>/<source>/ clips and manifest.csv)",
    )
    parser.add_argument(
        "--clip_seconds",
        type=float,
        default=5.0,
        help="clip length; 0 keeps whole files (default 5)",
    )
    parser.add_argument(
        "--sample_rate",
        type=int,
        default=16000,
        help="output rate in Hz (default 16000, the model's)",
    )
    parser.add_argument(
        "--gain_db",
        type=float,
        default=0.0,
        help="gain in dB, clipped at full scale (sox 'vol N dB')",
    )
    parser.add_argument(
        "--offset_seconds",
        type=float,
        default=0.0,
        help="skip this much at the start of each file",
    )
    parser.add_argument(
        "--min_seconds",
        type=float,
        default=1.0,
        help="drop a last piece shorter than this",
    )
    parser.add_argument(
        "--max_clips_per_file",
        type=int,
        default=None,
        help="keep at most N clips per file",
    )
    parser.add_argument(
        "--format", dest="audio_format", choices=("flac", "wav"), default="flac"
    )
    parser.add_argument(
        "--source",
        default="own",
        help="source name for the folder layout (default own)",
    )
    parser.add_argument(
        "--license", dest="license_text", default="own recording (private)"
    )
    parser.add_argument(
        "--group_by",
        choices=("file", "folder"),
        default="file",
        help="folder layout: a group is one file, or the first sub-folder (e.g. one baby)",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def _add_train(commands: Any) -> None:
    """train: the original author's flags plus --config and --set."""
    parser = commands.add_parser(
        "train", help="train a model (accepts speech_commands-style flags)"
    )
    parser.add_argument(
        "--config", type=Path, help="YAML config (see configs/default.yaml)"
    )
    parser.add_argument(
        "--train_dir", type=Path, default=Path("runs/train"), help="output folder"
    )
    parser.add_argument(
        "--data_dir",
        help="manifest.csv folder or <label>/ folders (several: comma-separated)",
    )
    parser.add_argument(
        "--wanted_words", type=_csv, help="labels to use, e.g. silence,crying"
    )
    parser.add_argument(
        "--sample_rate",
        type=int,
        help="rate of the raw clips (they are resampled to the card's rate)",
    )
    parser.add_argument(
        "--clip_duration_ms", type=int, help="use at most this much of each clip"
    )
    parser.add_argument(
        "--how_many_training_steps",
        type=lambda t: [int(v) for v in _csv(t)],
        help="steps per stage, e.g. 1000,200",
    )
    parser.add_argument(
        "--learning_rate",
        type=lambda t: [float(v) for v in _csv(t)],
        help="rate per stage, e.g. 0.001,0.0001",
    )
    parser.add_argument("--batch_size", type=int)
    parser.add_argument("--eval_step_interval", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--validation_percentage", type=float, help="percent of groups for validation"
    )
    parser.add_argument(
        "--testing_percentage", type=float, help="percent of groups for testing"
    )
    parser.add_argument("--time_shift_ms", type=float)
    parser.add_argument(
        "--background_frequency", type=float, help="probability of mixing a background"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config value, e.g. --set augment.copies=1 (repeatable)",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    for flag in IGNORED_SPEECH_COMMANDS_FLAGS:
        parser.add_argument(f"--{flag}", dest=f"ignored_{flag}", help=argparse.SUPPRESS)


def _add_export(commands: Any) -> None:
    """export: .tflite + card from a run."""
    parser = commands.add_parser(
        "export", help="write .tflite + model card (verified against the engine)"
    )
    parser.add_argument("--train_dir", type=Path, required=True)
    parser.add_argument(
        "--output", type=Path, required=True, help="X.tflite (the card goes to X.json)"
    )
    parser.add_argument(
        "--no-evaluate",
        dest="evaluate",
        action="store_false",
        help="skip the test-split evaluation",
    )
    parser.add_argument(
        "--metrics",
        action="append",
        default=[],
        metavar="NAME=EVAL.json",
        help="add an evaluation (cry-train evaluate --output) to the card's metrics",
    )
    parser.add_argument("--backend", help="engine backend for the evaluation")
    parser.add_argument(
        "--negative_hours",
        type=float,
        default=24.0,
        help="also replay the test negatives (varied) as one stream this long (0: no)",
    )
    parser.add_argument(
        "--checkpoint",
        choices=["best", "last"],
        default="best",
        help="the selected checkpoint (default) or the final weights",
    )
    parser.add_argument(
        "--operating_point",
        type=Path,
        help="take threshold, smoothing and min cry from the recommendation of "
        "`cry-train operating-points --split val --output FILE`",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def _add_model_and_clips(parser: argparse.ArgumentParser) -> None:
    """--model, which clips (--data / --split_file, --split, --sources) and --backend."""
    parser.add_argument(
        "--model", type=Path, required=True, help="X.tflite with X.json beside it"
    )
    parser.add_argument(
        "--data", type=Path, help="manifest.csv folder or <label>/ folders"
    )
    parser.add_argument("--split_file", type=Path, help="split.csv of a training run")
    parser.add_argument(
        "--split",
        help="only clips of this split (train, val, test; val to choose, test to report)",
    )
    parser.add_argument(
        "--sources", type=_csv, default=[], help="only these sources (comma-separated)"
    )
    parser.add_argument(
        "--backend", help="litert, tflite_runtime or numpy (default: best available)"
    )


def _selected_clips(args: argparse.Namespace, positive_label: str) -> list[Any]:
    """The clips --data / --split_file, --split and --sources select."""
    from .evaluate import clips_for_evaluation

    return clips_for_evaluation(
        data_dir=args.data,
        split_file=args.split_file,
        split=args.split,
        sources=args.sources,
        positive_label=positive_label,
    )


def _add_evaluate(commands: Any) -> None:
    """evaluate: runtime-pipeline metrics on a data folder."""
    parser = commands.add_parser("evaluate", help="metrics through the runtime code")
    _add_model_and_clips(parser)
    parser.add_argument("--threshold", type=float, help="instead of the card's")
    parser.add_argument(
        "--seed", type=int, default=0, help="order of the negatives in the stream"
    )
    parser.add_argument(
        "--negative_hours",
        type=float,
        default=0.0,
        help="also replay the negatives (varied) as one stream this long, e.g. 24",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    parser.add_argument(
        "--report", type=Path, help="write a PNG report (ROC, per-class bars)"
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def _add_operating_points(commands: Any) -> None:
    """operating-points: false episodes per day vs episode recall for each tracker setting."""
    parser = commands.add_parser(
        "operating-points",
        help="episode recall and false episodes per 24 h for each threshold / tracker setting",
    )
    _add_model_and_clips(parser)
    parser.add_argument("--negative_hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output", type=Path, help="also write every point as JSON here"
    )


def _add_teacher_probe(commands: Any) -> None:
    """teacher-probe: how well the frozen teacher alone separates a split (linear probe)."""
    parser = commands.add_parser(
        "teacher-probe",
        help="the distillation teacher alone: a probe fitted on a split's train clips, scored on another",
    )
    parser.add_argument(
        "--split_file", type=Path, required=True, help="split.csv of a training run"
    )
    parser.add_argument(
        "--split", default="test", help="the clips to score (default: test)"
    )
    parser.add_argument(
        "--sources", type=_csv, default=[], help="only these sources are scored"
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="aiSFX checkpoint.pth (default: the installed)"
    )
    parser.add_argument("--l2", type=float, default=5.0, help="the probe's L2 penalty")
    parser.add_argument(
        "--cache_dir",
        type=Path,
        default=Config().teacher_cache_dir,
        help="embedding cache (training's, by default)",
    )
    parser.add_argument("--output", type=Path, help="also write the figures as JSON")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def _add_import(commands: Any) -> None:
    """import: clips saved and labelled in Home Assistant -> clips + manifest.csv."""
    parser = commands.add_parser(
        "import", help="labelled clips saved by Home Assistant -> a data folder"
    )
    parser.add_argument(
        "clips", type=Path, help="the clips folder, e.g. /media/cry_detector"
    )
    parser.add_argument(
        "--output", type=Path, required=True, help="data folder to write"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="cry-train", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_prepare(commands)
    _add_train(commands)
    _add_export(commands)
    _add_evaluate(commands)
    _add_operating_points(commands)
    _add_teacher_probe(commands)
    _add_import(commands)
    scan = commands.add_parser(
        "scan", help="the engine's scan of audio files", add_help=False
    )
    scan.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def config_from_args(args: argparse.Namespace) -> tuple[Config, list[str]]:
    """Defaults <- --config YAML <- flags <- --set; return (config, notes)."""
    config = load_config(args.config)
    notes = []
    direct = {
        ("data", "data_dir"): args.data_dir,
        ("data", "wanted_words"): args.wanted_words,
        ("data", "clip_duration_ms"): args.clip_duration_ms,
        ("data", "input_sample_rate"): args.sample_rate,
        ("training", "how_many_training_steps"): args.how_many_training_steps,
        ("training", "learning_rate"): args.learning_rate,
        ("training", "batch_size"): args.batch_size,
        ("training", "eval_step_interval"): args.eval_step_interval,
        ("augment", "time_shift_ms"): None
        if args.time_shift_ms is None
        else float(args.time_shift_ms),
        ("augment", "background_probability"): args.background_frequency,
        ("split", "val_fraction"): None
        if args.validation_percentage is None
        else args.validation_percentage / 100,
        ("split", "test_fraction"): None
        if args.testing_percentage is None
        else args.testing_percentage / 100,
    }
    for (section, key), value in direct.items():
        if value is not None:
            setattr(getattr(config, section), key, value)
    if args.seed is not None:
        config.seed = args.seed
    for assignment in args.overrides:
        set_value(config, assignment)
    rate = config.feature_config().sample_rate
    if args.sample_rate is not None and args.sample_rate != rate:
        notes.append(
            f"--sample_rate={args.sample_rate}: clips are resampled to the model's {rate} Hz"
        )
    notes.extend(
        f"--{flag} is ignored: features come from the model card, the model is a DS-CNN"
        for flag in IGNORED_SPEECH_COMMANDS_FLAGS
        if getattr(args, f"ignored_{flag}") is not None
    )
    if not config.data.data_dir:
        raise ConfigError("no data: give --data_dir or data.data_dir in --config")
    return config, notes


def _run_prepare(args: argparse.Namespace) -> int:
    """Run prepare."""
    from .prepare import PrepareOptions, prepare

    options = PrepareOptions(
        clip_seconds=args.clip_seconds,
        sample_rate=args.sample_rate,
        gain_db=args.gain_db,
        offset_seconds=args.offset_seconds,
        min_seconds=args.min_seconds,
        max_clips_per_file=args.max_clips_per_file,
        audio_format=args.audio_format,
        source=args.source,
        license_text=args.license_text,
        group_by=args.group_by,
    )
    prepare(args.input, args.output, options, progress=args.progress)
    return 0


def _run_train(args: argparse.Namespace) -> int:
    """Run train."""
    from .train import train

    config, notes = config_from_args(args)
    for note in notes:
        print(f"note: {note}")
    train(config, args.train_dir, progress=args.progress)
    return 0


def _parse_metrics(items: Sequence[str]) -> dict[str, Path]:
    """NAME=FILE pairs."""
    result = {}
    for item in items:
        name, separator, path = item.partition("=")
        if not separator or not name or not path:
            raise ConfigError(f"--metrics wants NAME=FILE, got {item!r}")
        result[name] = Path(path)
    return result


def _run_export(args: argparse.Namespace) -> int:
    """Run export."""
    from .export import ExportError, export_run

    try:
        export_run(
            args.train_dir,
            args.output,
            evaluate=args.evaluate,
            extra_metrics=_parse_metrics(args.metrics),
            backend=args.backend,
            progress=args.progress,
            negative_hours=args.negative_hours,
            operating_point=args.operating_point,
            checkpoint=args.checkpoint,
        )
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    """Run evaluate."""
    from .evaluate import (
        EvalOptions,
        card_for,
        evaluate_clips,
        summary_lines,
        write_report,
    )

    card = card_for(args.model)
    clips = _selected_clips(args, card.positive_label)
    options = EvalOptions(
        backend=args.backend,
        threshold=args.threshold,
        seed=args.seed,
        progress=args.progress,
        negative_hours=args.negative_hours,
    )
    result = evaluate_clips(args.model, clips, options)
    text = json.dumps(result, indent=2, allow_nan=False)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n", encoding="utf-8")
    if args.report is not None:
        write_report(result, args.report)
    if args.json:
        print(text)
    else:
        print("\n".join(summary_lines(result)))
    return 0


def _run_operating_points(args: argparse.Namespace) -> int:
    """Run operating-points."""
    from ._engine import backends
    from .operating import operating_points, table_lines

    card, backend = backends.load_model(args.model, args.backend)
    try:
        clips = _selected_clips(args, card.positive_label)
        result = operating_points(
            card, backend, clips, negative_hours=args.negative_hours, seed=args.seed
        )
    finally:
        backend.close()
    result = {"model": str(args.model), "split": args.split, **result}
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("\n".join(table_lines(result)))
    return 0


def _run_teacher_probe(args: argparse.Namespace) -> int:
    """Run teacher-probe."""
    from ._engine import features
    from .evaluate import Scored, clip_metrics, clips_for_evaluation
    from .teacher import Teacher, probe_scores
    from .windows import make_loader

    def clips(split: str, sources: list[str]) -> list[Any]:
        return clips_for_evaluation(
            data_dir=None,
            split_file=args.split_file,
            split=split,
            sources=sources,
            positive_label="crying",
        )

    train, test = clips("train", []), clips(args.split, args.sources)
    config = features.FeatureConfig()
    teacher = Teacher.load(args.checkpoint, args.cache_dir)
    scores = probe_scores(
        train,
        test,
        load=make_loader(config.sample_rate, None),
        teacher=teacher,
        config=config,
        positive_label="crying",
        l2=args.l2,
        progress=args.progress,
    )
    level, _, _ = clip_metrics(
        [Scored(clip, p) for clip, p in zip(test, scores, strict=True)], 0.5, "crying"
    )
    result = {"split_file": str(args.split_file), "split": args.split, **level}
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"teacher probe on {args.split} ({level['clips']} clips, {level['positives']} cries): "
        f"ROC-AUC {level['roc_auc']}; recall at 1% FPR {level['recall_at_1pct_fpr']}, "
        f"at 5% FPR {level['recall_at_5pct_fpr']}, "
        f"above every negative {level['recall_above_every_negative']}"
    )
    return 0


def _run_scan(args: argparse.Namespace) -> int:
    """Forward to the engine's scan command."""
    from .scan import run_scan

    return run_scan(args.args)


def _run_import(args: argparse.Namespace) -> int:
    """Import labelled Home Assistant clips."""
    from .importer import import_clips

    if not args.clips.is_dir():
        print(f"error: {args.clips} is not a folder", file=sys.stderr)
        return EXIT_ERROR
    summary = import_clips(args.clips, args.output)
    counts = ", ".join(f"{label} {count}" for label, count in summary.counts().items())
    print(
        f"imported {len(summary.clips)} clips ({counts}), "
        f"skipped {summary.unlabelled} unlabelled: {args.output / 'manifest.csv'}"
    )
    return 0


RUNNERS = {
    "prepare": _run_prepare,
    "train": _run_train,
    "export": _run_export,
    "evaluate": _run_evaluate,
    "operating-points": _run_operating_points,
    "teacher-probe": _run_teacher_probe,
    "scan": _run_scan,
    "import": _run_import,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-reproducible CPU kernels
    from ._engine import errors
    from .audio import AudioError
    from .dataset import DatasetError

    try:
        return RUNNERS[args.command](args)
    except (
        ConfigError,
        DatasetError,
        AudioError,
        errors.CryDetectorError,
        ValueError,
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except ModuleNotFoundError as err:
        print(
            f"error: {err.name} is not installed: pip install -e training",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
