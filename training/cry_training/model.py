"""The DS-CNN: small by design, built only from operators every backend runs."""

from __future__ import annotations

import math
from typing import Any

import keras

from .config import ModelConfig


def _conv_bn_relu(x: Any, layer: Any, name: str) -> Any:
    """Apply a bias-free convolution, BatchNorm (folded at export) and ReLU."""
    x = layer(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def build_model(
    config: ModelConfig,
    patch_frames: int,
    mel_bands: int,
    n_labels: int = 2,
    batch_size: int | None = None,
) -> keras.Model:
    """Conv -> depthwise-separable blocks -> global average pool -> Dense softmax."""
    inputs = keras.Input(
        (patch_frames, mel_bands, 1), batch_size=batch_size, name="patch"
    )
    x = _conv_bn_relu(
        inputs,
        keras.layers.Conv2D(
            config.first_filters,
            tuple(config.first_kernel),
            strides=tuple(config.first_stride),
            padding="same",
            use_bias=False,
            name="conv0",
        ),
        "conv0",
    )
    for index, (filters, stride) in enumerate(config.blocks, start=1):
        x = _conv_bn_relu(
            x,
            keras.layers.DepthwiseConv2D(
                3, strides=stride, padding="same", use_bias=False, name=f"dw{index}"
            ),
            f"dw{index}",
        )
        x = _conv_bn_relu(
            x,
            keras.layers.Conv2D(filters, 1, use_bias=False, name=f"pw{index}"),
            f"pw{index}",
        )
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if config.dropout > 0:
        x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    outputs = keras.layers.Dense(n_labels, activation="softmax", name="probabilities")(
        x
    )
    return keras.Model(inputs, outputs, name="ds_cnn")


def inference_model(trained: keras.Model, config: ModelConfig) -> keras.Model:
    """A batch-1 copy of a trained model with the same weights (what gets converted)."""
    _, frames, bands, _ = trained.input_shape
    n_labels = trained.output_shape[-1]
    copy = build_model(config, frames, bands, n_labels, batch_size=1)
    copy.set_weights(trained.get_weights())
    return copy


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one inference (convolutions and dense layers)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            out = layer.output.shape
            kernel = math.prod(layer.kernel_size)
            total += out[1] * out[2] * out[3] * kernel
        elif isinstance(layer, keras.layers.Conv2D):
            out = layer.output.shape
            in_channels = layer.input.shape[-1]
            total += (
                out[1] * out[2] * out[3] * math.prod(layer.kernel_size) * in_channels
            )
        elif isinstance(layer, keras.layers.Dense):
            total += int(layer.input.shape[-1]) * layer.units
    return int(total)


def count_parameters(model: keras.Model) -> int:
    """Weights of the inference graph (BatchNorm folds into the convolutions at export)."""
    return int(sum(math.prod(weight.shape) for weight in model.weights))
