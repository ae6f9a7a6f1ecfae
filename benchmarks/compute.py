"""Compare the cost per second of audio of our model with a YAMNet-sized network, side by side.

Builds a MobileNetV1 with YAMNet's exact shape (96x64 log-mel input, its layer widths, 521 outputs)
in Keras with random weights, exports it to .tflite, and times both models through LiteRT with one
thread on this machine; also counts multiply-adds from the .tflite graphs and times our NumPy backend
and feature frontend. Run with the training environment (TensorFlow):

    .venv-train/bin/python benchmarks/compute.py [--model custom_components/cry_detector/models/default.tflite]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))

from cry_training._engine import load_engine  # noqa: E402

YAMNET_CACHE = REPO / ".cache" / "benchmarks" / "yamnet_shape.tflite"
# (kind, stride, filters) as in models/research/audioset/yamnet/yamnet.py
YAMNET_LAYERS = [
    ("conv", 2, 32),
    ("sep", 1, 64),
    ("sep", 2, 128),
    ("sep", 1, 128),
    ("sep", 2, 256),
    ("sep", 1, 256),
    ("sep", 2, 512),
    *[("sep", 1, 512)] * 5,
    ("sep", 2, 1024),
    ("sep", 1, 1024),
]
YAMNET_PATCH_HOP_SECONDS = 0.48  # YAMNet scores a 0.96 s patch every 0.48 s
YAMNET_FEATURES = {
    "sample_rate": 16000,
    "window_length": 400,
    "hop_length": 160,
    "mel_bands": 64,
}


def build_yamnet_shape() -> Path:
    """Export a random-weight MobileNetV1 with YAMNet's shape to .tflite (cached)."""
    if YAMNET_CACHE.exists():
        return YAMNET_CACHE
    import tensorflow as tf

    layers = tf.keras.layers
    inputs = tf.keras.Input((96, 64, 1), batch_size=1)
    x = inputs
    for kind, stride, filters in YAMNET_LAYERS:
        if kind == "conv":
            x = layers.Conv2D(filters, 3, stride, padding="same", use_bias=False)(x)
        else:
            x = layers.DepthwiseConv2D(3, stride, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
            x = layers.Conv2D(filters, 1, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(521, activation="sigmoid")(x)
    model = tf.keras.Model(inputs, outputs)
    YAMNET_CACHE.parent.mkdir(parents=True, exist_ok=True)
    YAMNET_CACHE.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return YAMNET_CACHE


def count_macs(model_path: Path) -> tuple[int, int]:
    """Return (multiply-adds, weights) of a float .tflite graph's conv/dense ops."""
    import tflite

    model = tflite.Model.GetRootAsModel(model_path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    names = {
        v: k
        for k, v in tflite.BuiltinOperator.__dict__.items()
        if not k.startswith("_")
    }
    macs = 0
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "")
        out_shape = graph.Tensors(op.Outputs(0)).ShapeAsNumpy()
        w_shape = (
            graph.Tensors(op.Inputs(1)).ShapeAsNumpy()
            if op.InputsLength() > 1
            else None
        )
        if name == "CONV_2D" and w_shape is not None:
            macs += int(np.prod(out_shape)) * int(np.prod(w_shape[1:]))
        elif name == "DEPTHWISE_CONV_2D" and w_shape is not None:
            macs += int(np.prod(out_shape)) * int(w_shape[1] * w_shape[2])
        elif name == "FULLY_CONNECTED" and w_shape is not None:
            macs += int(np.prod(w_shape))
    weights = sum(
        int(np.prod(graph.Tensors(t).ShapeAsNumpy()))
        for t in range(graph.TensorsLength())
        if graph.Tensors(t).Buffer()
        and model.Buffers(graph.Tensors(t).Buffer()).DataLength()
    )
    return macs, weights


def time_litert(model_path: Path, repeats: int) -> float:
    """Return the median ms of one LiteRT inference with one thread."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path), num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    data = np.random.default_rng(0).standard_normal(detail["shape"]).astype(np.float32)
    return _median_ms(
        lambda: (interpreter.set_tensor(detail["index"], data), interpreter.invoke()),
        repeats,
    )


def _median_ms(call: Any, repeats: int) -> float:
    """Median wall time of call() in ms after two warm-up calls."""
    call()
    call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return float(np.median(samples))


def features_ms_per_second(engine: Any, features: Any) -> float:
    """Ms of the engine's streaming front end per second of audio, as the pipeline runs it.

    0.1 s chunks (what the sources deliver) through the pipeline's PatchStream (frames computed
    once a patch is due).
    """
    seconds, rate = 10, features.sample_rate
    audio = np.random.default_rng(1).integers(
        -3000, 3000, rate * seconds, dtype=np.int16
    )
    chunk = rate // 10

    def stream() -> None:
        patches = engine.features.PatchStream(features)
        for start in range(0, audio.size, chunk):
            patches.push(audio[start : start + chunk])

    return _median_ms(stream, 9) / seconds


def measure(model: Path, repeats: int = 50) -> dict[str, Any]:
    """Measure our model and pipeline against the YAMNet-shaped network; return the figures."""
    engine = load_engine()
    card = engine.card.load_card(engine.card.card_path_for(model))
    yamnet = build_yamnet_shape()
    ours_per_s = 1.0 / card.features.patch_hop_seconds
    yam_per_s = 1.0 / YAMNET_PATCH_HOP_SECONDS
    ours_macs, ours_weights = count_macs(model)
    yam_macs, yam_weights = count_macs(yamnet)
    ours_ms = time_litert(model, repeats)
    yam_ms = time_litert(yamnet, max(10, repeats // 5))
    numpy_model = engine.backends.numpy_backend.NumpyTfliteModel(model.read_bytes())
    patch = np.zeros(numpy_model.input_shape, np.float32)
    numpy_ms = _median_ms(lambda: numpy_model.run(patch), repeats)
    feat_ms = features_ms_per_second(engine, card.features)
    yam_feat_cfg = engine.features.FeatureConfig(
        mel_bands=64,
        fmin_hz=125.0,
        fmax_hz=7500.0,
        patch_frames=96,
        patch_hop_frames=48,
    )
    yam_feat_ms = features_ms_per_second(engine, yam_feat_cfg)
    ours_total = feat_ms + ours_ms * ours_per_s
    yam_total = yam_feat_ms + yam_ms * yam_per_s
    return {
        "ours": {
            "sample_rate": card.features.sample_rate,
            "model_bytes": model.stat().st_size,
            "weights": ours_weights,
            "macs_per_inference": ours_macs,
            "macs_per_second": ours_macs * ours_per_s,
            "litert_ms_per_inference": ours_ms,
            "numpy_ms_per_inference": numpy_ms,
            "features_ms_per_second": feat_ms,
            "pipeline_ms_per_second_litert": ours_total,
            "pipeline_ms_per_second_numpy": feat_ms + numpy_ms * ours_per_s,
        },
        "yamnet_shape": {
            "sample_rate": 16000,
            "model_bytes": yamnet.stat().st_size,
            "weights": yam_weights,
            "macs_per_inference": yam_macs,
            "macs_per_second": yam_macs * yam_per_s,
            "litert_ms_per_inference": yam_ms,
            "features_ms_per_second": yam_feat_ms,
            "pipeline_ms_per_second_litert": yam_total,
        },
        "ratio_macs_per_second": ours_macs * ours_per_s / (yam_macs * yam_per_s),
        "ratio_pipeline_time": ours_total / yam_total,
        # The target: our whole pipeline against the YAMNet-sized network alone.
        "ratio_pipeline_vs_yamnet_network": ours_total / (yam_ms * yam_per_s),
    }


def print_table(result: dict[str, Any]) -> None:
    """Print the comparison as a table and the ratios."""
    print(f"{'':34}{'ours':>14}{'YAMNet-shape':>16}")
    for key in (
        "sample_rate",
        "model_bytes",
        "weights",
        "macs_per_inference",
        "macs_per_second",
        "litert_ms_per_inference",
        "features_ms_per_second",
        "pipeline_ms_per_second_litert",
    ):
        print(
            f"{key:34}{result['ours'][key]:>14,.3f}{result['yamnet_shape'][key]:>16,.3f}"
        )
    ours = result["ours"]
    print(
        f"{'numpy_ms_per_inference (ours)':34}{ours['numpy_ms_per_inference']:>14,.3f}"
    )
    print(
        f"{'pipeline_ms_per_second_numpy':34}{ours['pipeline_ms_per_second_numpy']:>14,.3f}"
    )
    print(
        f"ratio ours/YAMNet: multiply-adds per second {result['ratio_macs_per_second']:.4f}, "
        f"pipeline time per second {result['ratio_pipeline_time']:.4f}, "
        f"our pipeline vs YAMNet network alone {result['ratio_pipeline_vs_yamnet_network']:.4f}"
    )


def main() -> None:
    """Print the side-by-side compute comparison as a table and JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--model",
        type=Path,
        default=REPO / "custom_components/cry_detector/models/default.tflite",
    )
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    result = measure(args.model, args.repeats)
    print_table(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
