"""A pure-NumPy interpreter for the float32 .tflite models the detector uses.

It parses the flatbuffer with the `tflite` package, checks every operator at load time
(unsupported ones raise UnsupportedOpError naming them), folds constant sub-graphs, and runs
the rest with vectorised NumPy (im2col + matmul for convolutions). A dry run at load time
compares every computed tensor shape with the shape the file declares, so a model that loads
also runs.

Usable on its own, e.g. to verify an exported model::

    model = NumpyTfliteModel(Path("model.tflite").read_bytes())
    probabilities = model.run(patch)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
import heapq
import math
from typing import Any, Final

import numpy as np
import numpy.typing as npt

# Parent-relative on purpose: training loads engine/ by path as another top-level package.
from ..errors import CryDetectorError, ModelError, UnsupportedOpError

__all__ = [
    "BACKEND_NAME",
    "NumpyBackend",
    "NumpyTfliteModel",
    "ParsedModel",
    "TensorInfo",
    "parse_model",
    "supported_ops",
]

BACKEND_NAME: Final = "numpy"
FloatArray = npt.NDArray[np.float32]
Kernel = Callable[[Sequence[Any]], FloatArray]

TFLITE_IDENTIFIER: Final = b"TFL3"
# Upper bound on elements of any tensor or scratch buffer: a corrupt file must not make us
# allocate gigabytes. The detector's models are ~1000x smaller.
MAX_ELEMENTS: Final = 1 << 24
CUSTOM_OPCODE: Final = 32
NO_TENSOR: Final = -1

# TensorType code -> (name, little-endian numpy dtype or None when we cannot decode it).
_TENSOR_TYPES: Final[dict[int, tuple[str, str | None]]] = {
    0: ("float32", "<f4"),
    1: ("float16", "<f2"),
    2: ("int32", "<i4"),
    3: ("uint8", "u1"),
    4: ("int64", "<i8"),
    5: ("string", None),
    6: ("bool", "?"),
    7: ("int16", "<i2"),
    8: ("complex64", None),
    9: ("int8", "i1"),
    10: ("float64", "<f8"),
}

# A flatbuffer table with no fields (vtable of 4 bytes at 0, table at 4): reads give defaults.
_EMPTY_TABLE: Final = b"\x04\x00\x04\x00\x04\x00\x00\x00"
_EMPTY_TABLE_POSITION: Final = 4

_SAME, _VALID = 0, 1
_ACTIVATION_NAMES: Final = {
    0: "NONE",
    1: "RELU",
    2: "RELU_N1_TO_1",
    3: "RELU6",
    4: "TANH",
    5: "SIGN_BIT",
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the graph: shape, type and, for constants, its data."""

    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    type_name: str
    data: np.ndarray | None = field(default=None, repr=False, compare=False)
    is_variable: bool = False
    is_sparse: bool = False
    quantization: Quantization | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of a tensor: real = (stored - zero_point) * scale, per axis or not."""

    scales: npt.NDArray[np.float32] = field(repr=False)
    zero_points: npt.NDArray[np.int64] = field(repr=False)
    axis: int = 0

    def broadcast(self, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """Return scales and zero points shaped to broadcast over a tensor of `rank`."""
        if self.scales.size == 1:
            return self.scales.reshape(()), self.zero_points.reshape(())
        shape = [1] * rank
        shape[self.axis] = -1
        return self.scales.reshape(shape), self.zero_points.reshape(shape)


@dataclass(frozen=True)
class OperatorInfo:
    """One operator: builtin name, tensor indices and its (undecoded) options table."""

    position: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options_type: int
    options: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ParsedModel:
    """The first subgraph of a .tflite file, structurally checked."""

    tensors: tuple[TensorInfo, ...]
    operators: tuple[OperatorInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    @property
    def operator_names(self) -> tuple[str, ...]:
        """Distinct operator names in the graph, sorted."""
        return tuple(sorted({op.name for op in self.operators}))


# ---------------------------------------------------------------------------------------------
# Parsing


def _import_tflite() -> Any:
    """Import the flatbuffer schema package, as a ModelError when it is missing."""
    try:
        import tflite
    except ImportError as err:
        raise ModelError(
            "the 'tflite' package (flatbuffer schema) is needed to read models without LiteRT"
        ) from err
    return tflite


def parse_model(model_bytes: bytes) -> ParsedModel:
    """Parse and structurally check a .tflite flatbuffer; ModelError when it is not one."""
    if not model_bytes:
        raise ModelError("the model file is empty")
    if len(model_bytes) < 8 or bytes(model_bytes[4:8]) != TFLITE_IDENTIFIER:
        raise ModelError(
            "not a TensorFlow Lite model (the 'TFL3' file identifier is missing)"
        )
    tflite = _import_tflite()
    buffer = bytes(model_bytes)
    try:
        return _parse(tflite, buffer)
    except CryDetectorError:
        raise
    except Exception as err:
        # Corrupt offsets surface as struct.error, IndexError, ValueError, TypeError, ...
        raise ModelError(
            f"corrupt TensorFlow Lite model ({type(err).__name__}: {err})"
        ) from err


def _checked_length(length: Any, buffer: bytes, what: str) -> int:
    """Return a vector length after checking it can fit in the file."""
    count = int(length)
    if count < 0 or count * 4 > len(buffer):
        raise ModelError(
            f"corrupt TensorFlow Lite model: {what} count {count} exceeds the file"
        )
    return count


def _int_vector(values: Any) -> tuple[int, ...]:
    """Convert a flatbuffers int vector (0 when absent) to a tuple."""
    if isinstance(values, np.ndarray):
        return tuple(int(value) for value in values)
    return ()


def _parse(tflite: Any, buffer: bytes) -> ParsedModel:
    """Read tensors, buffers and operators of subgraph 0."""
    model = tflite.Model.GetRootAs(buffer, 0)
    if _checked_length(model.SubgraphsLength(), buffer, "subgraph") < 1:
        raise ModelError("the model has no subgraph")
    graph = model.Subgraphs(0)
    opcode_names = [
        _opcode_name(tflite, model.OperatorCodes(i))
        for i in range(
            _checked_length(model.OperatorCodesLength(), buffer, "operator code")
        )
    ]
    buffers = [
        _buffer_data(model.Buffers(i), buffer)
        for i in range(_checked_length(model.BuffersLength(), buffer, "buffer"))
    ]
    tensors = tuple(
        _tensor(graph.Tensors(i), i, buffers)
        for i in range(_checked_length(graph.TensorsLength(), buffer, "tensor"))
    )
    operators = tuple(
        _operator(graph.Operators(i), i, opcode_names, len(tensors))
        for i in range(_checked_length(graph.OperatorsLength(), buffer, "operator"))
    )
    inputs = _int_vector(graph.InputsAsNumpy())
    outputs = _int_vector(graph.OutputsAsNumpy())
    for index in (*inputs, *outputs):
        if not 0 <= index < len(tensors):
            raise ModelError(
                f"corrupt TensorFlow Lite model: graph tensor {index} out of range"
            )
    if not inputs or not outputs:
        raise ModelError("the model declares no input or no output tensor")
    return ParsedModel(tensors, operators, inputs, outputs)


def _opcode_name(tflite: Any, opcode: Any) -> str:
    """Return the builtin operator name of an operator code (CUSTOM:<code> for custom ops)."""
    code = max(int(opcode.BuiltinCode()), int(opcode.DeprecatedBuiltinCode()))
    if code == CUSTOM_OPCODE:
        custom = opcode.CustomCode() or b""
        return f"CUSTOM:{custom.decode('utf-8', 'replace')}"
    return _builtin_names(tflite).get(code, f"BUILTIN_{code}")


_BUILTIN_NAMES: dict[int, str] = {}


def _builtin_names(tflite: Any) -> dict[int, str]:
    """Map builtin operator codes to their names (from the schema package)."""
    if not _BUILTIN_NAMES:
        for name, value in vars(tflite.BuiltinOperator).items():
            if name.isupper() and isinstance(value, int):
                _BUILTIN_NAMES.setdefault(value, name)
    return _BUILTIN_NAMES


def _buffer_data(buffer_table: Any, buffer: bytes) -> bytes:
    """Return the raw bytes of one model buffer (inline or, for big models, at an offset)."""
    offset = int(buffer_table.Offset())
    if offset > 1:
        size = int(buffer_table.Size())
        if offset + size > len(buffer):
            raise ModelError("corrupt TensorFlow Lite model: buffer outside the file")
        return buffer[offset : offset + size]
    data = buffer_table.DataAsNumpy()
    return data.tobytes() if isinstance(data, np.ndarray) else b""


def _tensor(table: Any, index: int, buffers: list[bytes]) -> TensorInfo:
    """Read one tensor; decode its constant data when it has any."""
    shape = _int_vector(table.ShapeAsNumpy())
    if any(dim < 0 for dim in shape) or math.prod(shape) > MAX_ELEMENTS:
        raise ModelError(
            f"corrupt TensorFlow Lite model: tensor {index} has shape {list(shape)}"
        )
    type_code = int(table.Type())
    type_name, dtype = _TENSOR_TYPES.get(type_code, (f"type_{type_code}", None))
    buffer_index = int(table.Buffer())
    if not 0 <= buffer_index < max(len(buffers), 1):
        raise ModelError(
            f"corrupt TensorFlow Lite model: tensor {index} buffer out of range"
        )
    raw = buffers[buffer_index] if buffers else b""
    data = _decode_constant(raw, shape, dtype, index) if raw else None
    return TensorInfo(
        index=index,
        name=(table.Name() or b"").decode("utf-8", "replace"),
        shape=shape,
        shape_signature=_int_vector(table.ShapeSignatureAsNumpy()) or shape,
        type_name=type_name,
        data=data,
        is_variable=bool(table.IsVariable()),
        is_sparse=table.Sparsity() is not None,
        quantization=_quantization(table.Quantization(), shape, index),
    )


def _quantization(
    table: Any, shape: tuple[int, ...], index: int
) -> Quantization | None:
    """Read a tensor's scale/zero point (None when it has none)."""
    if table is None:
        return None
    scales = table.ScaleAsNumpy()
    if not isinstance(scales, np.ndarray) or scales.size == 0:
        return None
    zero_points = table.ZeroPointAsNumpy()
    if not isinstance(zero_points, np.ndarray) or zero_points.size == 0:
        zero_points = np.zeros(scales.size, np.int64)
    axis = int(table.QuantizedDimension())
    per_axis = scales.size > 1
    if zero_points.size != scales.size or (
        per_axis and not (0 <= axis < len(shape) and shape[axis] == scales.size)
    ):
        raise ModelError(
            f"corrupt TensorFlow Lite model: tensor {index} has inconsistent quantization"
        )
    return Quantization(scales.astype(np.float32), zero_points.astype(np.int64), axis)


def _decode_constant(
    raw: bytes, shape: tuple[int, ...], dtype: str | None, index: int
) -> np.ndarray | None:
    """Decode constant tensor bytes into an array of the declared shape."""
    if dtype is None:
        return None
    expected = math.prod(shape) * np.dtype(dtype).itemsize
    if len(raw) != expected:
        raise ModelError(
            f"corrupt TensorFlow Lite model: tensor {index} holds {len(raw)} bytes, "
            f"its shape {list(shape)} needs {expected}"
        )
    native = np.dtype(dtype).newbyteorder("=")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(native, copy=True)


def _operator(
    table: Any, position: int, opcode_names: list[str], n_tensors: int
) -> OperatorInfo:
    """Read one operator and check its tensor indices."""
    opcode_index = int(table.OpcodeIndex())
    if not 0 <= opcode_index < len(opcode_names):
        raise ModelError(
            f"corrupt TensorFlow Lite model: operator {position} opcode out of range"
        )
    inputs = _int_vector(table.InputsAsNumpy())
    outputs = _int_vector(table.OutputsAsNumpy())
    for index in inputs:
        if not NO_TENSOR <= index < n_tensors:
            raise ModelError(
                f"corrupt TensorFlow Lite model: operator {position} input out of range"
            )
    for index in outputs:
        if not 0 <= index < n_tensors:
            raise ModelError(
                f"corrupt TensorFlow Lite model: operator {position} output out of range"
            )
    return OperatorInfo(
        position=position,
        name=opcode_names[opcode_index],
        inputs=inputs,
        outputs=outputs,
        options_type=int(table.BuiltinOptionsType()),
        options=table.BuiltinOptions(),
    )


# ---------------------------------------------------------------------------------------------
# Graph order


def execution_order(parsed: ParsedModel) -> list[OperatorInfo]:
    """Return the operators in topological order (file order among ready ones)."""
    producer: dict[int, int] = {}
    for op in parsed.operators:
        for index in op.outputs:
            if (
                index in producer
                or parsed.tensors[index].data is not None
                or index in parsed.inputs
            ):
                raise ModelError(
                    f"invalid model graph: tensor {index} is written twice"
                )
            producer[index] = op.position
    available = set(parsed.inputs) | {
        t.index for t in parsed.tensors if t.data is not None
    }
    dependants: dict[int, list[int]] = {}
    waiting: list[int] = []
    for op in parsed.operators:
        needs = set()
        for index in op.inputs:
            if index == NO_TENSOR or index in available:
                continue
            if index not in producer:
                raise ModelError(
                    f"invalid model graph: {op.name} reads tensor {index}, which nothing writes"
                )
            needs.add(producer[index])
        waiting.append(len(needs))
        for position in needs:
            dependants.setdefault(position, []).append(op.position)
    ready = [op.position for op in parsed.operators if waiting[op.position] == 0]
    heapq.heapify(ready)
    order: list[OperatorInfo] = []
    while ready:
        position = heapq.heappop(ready)
        order.append(parsed.operators[position])
        for dependant in dependants.get(position, ()):
            waiting[dependant] -= 1
            if waiting[dependant] == 0:
                heapq.heappush(ready, dependant)
    if len(order) != len(parsed.operators):
        raise ModelError("invalid model graph: the operators form a cycle")
    for index in parsed.outputs:
        if index not in available and index not in producer:
            raise ModelError(
                f"invalid model graph: output tensor {index} is never written"
            )
    return order


# ---------------------------------------------------------------------------------------------
# Operator preparation: each preparer validates parameters at load time and returns a kernel


class _OpContext:
    """What a preparer may look at: the operator, tensor infos and known constants."""

    def __init__(
        self,
        op: OperatorInfo,
        tensors: Sequence[TensorInfo],
        constants: dict[int, np.ndarray],
    ) -> None:
        """Bind the operator to the graph's tensors and the constants known so far."""
        self.op = op
        self._tensors = tensors
        self._constants = constants

    def fail(self, message: str) -> ModelError:
        """Return a ModelError about this operator."""
        return ModelError(
            f"invalid model: operator {self.op.position} ({self.op.name}): {message}"
        )

    def unsupported(self, feature: str) -> UnsupportedOpError:
        """Return an UnsupportedOpError about a feature of this operator."""
        return UnsupportedOpError(
            f"the numpy backend does not support {self.op.name} with {feature}"
        )

    def tensor(self, slot: int) -> TensorInfo:
        """Return the input tensor in `slot` (ModelError when absent)."""
        if slot >= len(self.op.inputs) or self.op.inputs[slot] == NO_TENSOR:
            raise self.fail(f"input {slot} is missing")
        return self._tensors[self.op.inputs[slot]]

    def has_input(self, slot: int) -> bool:
        """Whether optional input `slot` is present."""
        return slot < len(self.op.inputs) and self.op.inputs[slot] != NO_TENSOR

    def input_shape(self, slot: int, rank: int | None = None) -> tuple[int, ...]:
        """Return the declared shape of input `slot`, checking rank and float32 type."""
        info = self.tensor(slot)
        if info.type_name != "float32":
            raise self.unsupported(f"{info.type_name} tensors (only float32)")
        if rank is not None and len(info.shape) != rank:
            raise self.fail(
                f"input {slot} must have rank {rank}, has shape {list(info.shape)}"
            )
        return info.shape

    def constant(self, slot: int) -> np.ndarray:
        """Return the constant value of input `slot`."""
        index = self.tensor(slot).index
        if index not in self._constants:
            raise self.unsupported(f"a non-constant input {slot}")
        return self._constants[index]

    def float_constant(self, slot: int, rank: int) -> FloatArray:
        """Return a float32 constant input of the given rank."""
        value = self.constant(slot)
        if value.dtype != np.float32:
            raise self.unsupported(f"{value.dtype} weights (only float32)")
        if value.ndim != rank:
            raise self.fail(
                f"input {slot} must have rank {rank}, has shape {list(value.shape)}"
            )
        return value

    def bias(self, slot: int, size: int) -> FloatArray:
        """Return the bias (zeros when the optional input is absent)."""
        if not self.has_input(slot):
            return np.zeros(size, np.float32)
        value = self.float_constant(slot, 1)
        if value.shape != (size,):
            raise self.fail(f"bias has shape {list(value.shape)}, expected [{size}]")
        return value

    def int_constant(self, slot: int) -> npt.NDArray[np.int64]:
        """Return an integer constant input (axes, paddings)."""
        value = self.constant(slot)
        if value.dtype not in (np.int32, np.int64):
            raise self.fail(f"input {slot} must be int32/int64, is {value.dtype}")
        return value.astype(np.int64)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Declared shape of the (single) output."""
        if len(self.op.outputs) != 1:
            raise self.fail(f"expected one output, has {len(self.op.outputs)}")
        info = self._tensors[self.op.outputs[0]]
        if info.type_name != "float32":
            raise self.unsupported(f"{info.type_name} tensors (only float32)")
        return info.shape

    def options(self, tflite: Any, class_name: str) -> Any:
        """Decode the builtin options as schema class `class_name` (absent: all defaults)."""
        decoded = getattr(tflite, class_name)()
        if self.op.options is None:
            # Like TFLite, an operator without options gets the schema defaults.
            decoded.Init(_EMPTY_TABLE, _EMPTY_TABLE_POSITION)
            return decoded
        expected = getattr(tflite.BuiltinOptions, class_name)
        if self.op.options_type != expected:
            raise self.fail(
                f"options have type {self.op.options_type}, expected {class_name}"
            )
        decoded.Init(self.op.options.Bytes, self.op.options.Pos)
        return decoded

    def activation(self, code: int) -> Callable[[FloatArray], FloatArray]:
        """Return the fused activation as an in-place function."""
        if code == 0:
            return _identity
        if code == 1:
            return _relu_inplace
        if code == 3:
            return _relu6_inplace
        raise self.unsupported(f"fused activation {_ACTIVATION_NAMES.get(code, code)}")


def _identity(values: FloatArray) -> FloatArray:
    """Return values unchanged."""
    return values


def _relu_inplace(values: FloatArray) -> FloatArray:
    """Apply ReLU in place."""
    np.maximum(values, 0.0, out=values)
    return values


def _relu6_inplace(values: FloatArray) -> FloatArray:
    """Apply ReLU6 in place."""
    np.clip(values, 0.0, 6.0, out=values)
    return values


@dataclass(frozen=True)
class _Window:
    """Geometry of a 2-D sliding window (conv or pool) over NHWC input."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    out_size: tuple[int, int]
    pads: tuple[tuple[int, int], tuple[int, int]]

    @property
    def effective_kernel(self) -> tuple[int, int]:
        """Kernel extent including dilation gaps."""
        return (
            (self.kernel[0] - 1) * self.dilations[0] + 1,
            (self.kernel[1] - 1) * self.dilations[1] + 1,
        )

    def pad(self, values: FloatArray, fill: float = 0.0) -> FloatArray:
        """Pad the spatial axes of NHWC values."""
        if not any(self.pads[0] + self.pads[1]):
            return values
        (top, bottom), (left, right) = self.pads
        batch, height, width, channels = values.shape
        padded = np.full(
            (batch, height + top + bottom, width + left + right, channels),
            fill,
            dtype=np.float32,
        )
        padded[:, top : top + height, left : left + width] = values
        return padded

    def windows(self, padded: FloatArray) -> FloatArray:
        """Return a read-only (N, OH, OW, C, KH, KW) strided view of the windows of padded input."""
        (stride_h, stride_w), (dil_h, dil_w) = self.strides, self.dilations
        out_h, out_w = self.out_size
        needed_h = (out_h - 1) * stride_h + self.effective_kernel[0]
        needed_w = (out_w - 1) * stride_w + self.effective_kernel[1]
        if padded.ndim != 4 or padded.shape[1] < needed_h or padded.shape[2] < needed_w:
            raise ValueError(f"input {padded.shape} too small for the window")
        batch_stride, row_stride, column_stride, channel_stride = padded.strides
        return np.lib.stride_tricks.as_strided(
            padded,
            shape=(padded.shape[0], out_h, out_w, padded.shape[3], *self.kernel),
            strides=(
                batch_stride,
                row_stride * stride_h,
                column_stride * stride_w,
                channel_stride,
                row_stride * dil_h,
                column_stride * dil_w,
            ),
            writeable=False,
        )

    def taps(self, padded: FloatArray) -> list[tuple[int, int, FloatArray]]:
        """Return (i, j, strided slice) per kernel tap: the input each tap sees."""
        (stride_h, stride_w), (dil_h, dil_w) = self.strides, self.dilations
        out_h, out_w = self.out_size
        span_h, span_w = (out_h - 1) * stride_h + 1, (out_w - 1) * stride_w + 1
        return [
            (
                i,
                j,
                padded[
                    :,
                    i * dil_h : i * dil_h + span_h : stride_h,
                    j * dil_w : j * dil_w + span_w : stride_w,
                ],
            )
            for i in range(self.kernel[0])
            for j in range(self.kernel[1])
        ]


def _window(
    ctx: _OpContext,
    *,
    in_size: tuple[int, int],
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    padding: int,
) -> _Window:
    """Compute output size and padding the way TFLite does (SAME pads more at the end)."""
    if min(strides) < 1 or min(dilations) < 1 or min(kernel) < 1:
        raise ctx.fail(
            f"bad window kernel={kernel} strides={strides} dilations={dilations}"
        )
    if padding not in (_SAME, _VALID):
        raise ctx.fail(f"unknown padding {padding}")
    out_size: list[int] = []
    pads: list[tuple[int, int]] = []
    for size, k, stride, dilation in zip(
        in_size, kernel, strides, dilations, strict=True
    ):
        effective = (k - 1) * dilation + 1
        if effective > 4 * size + 16:
            raise ctx.fail(f"window {effective} larger than the input {size}")
        if padding == _SAME:
            out = (size + stride - 1) // stride
            total = max((out - 1) * stride + effective - size, 0)
        else:
            out = (size - effective + stride) // stride
            total = 0
        if out < 1:
            raise ctx.fail(f"window {effective} larger than the input {size}")
        out_size.append(out)
        pads.append((total // 2, total - total // 2))
    return _Window(
        kernel, strides, dilations, (out_size[0], out_size[1]), (pads[0], pads[1])
    )


def _check_elements(ctx: _OpContext, shape: Sequence[int]) -> None:
    """Refuse scratch buffers beyond MAX_ELEMENTS."""
    if math.prod(shape) > MAX_ELEMENTS:
        raise ctx.fail(f"needs a {list(shape)} buffer, too large")


def _prepare_conv_2d(ctx: _OpContext, tflite: Any) -> Kernel:
    """CONV_2D: im2col over a strided window view, then one matmul."""
    options = ctx.options(tflite, "Conv2DOptions")
    batch, height, width, channels = ctx.input_shape(0, rank=4)
    filters = ctx.float_constant(1, rank=4)
    out_channels, kernel_h, kernel_w, filter_channels = filters.shape
    if filter_channels != channels:
        raise ctx.unsupported(
            f"grouped convolution ({channels} input, {filter_channels} filter channels)"
        )
    bias = ctx.bias(2, out_channels)
    window = _window(
        ctx,
        in_size=(height, width),
        kernel=(kernel_h, kernel_w),
        strides=(options.StrideH(), options.StrideW()),
        dilations=(options.DilationHFactor(), options.DilationWFactor()),
        padding=options.Padding(),
    )
    out_h, out_w = window.out_size
    _check_elements(ctx, (batch, out_h, out_w, channels, kernel_h, kernel_w))
    # Window view axes are (C, KH, KW); lay the weights out the same way.
    weights = np.ascontiguousarray(
        filters.transpose(3, 1, 2, 0).reshape(
            channels * kernel_h * kernel_w, out_channels
        )
    )
    activation = ctx.activation(options.FusedActivationFunction())
    pointwise = (kernel_h, kernel_w) == (1, 1) and window.strides == (1, 1)

    def conv_2d(inputs: Sequence[Any]) -> FloatArray:
        if pointwise:
            columns = inputs[0].reshape(-1, channels)
        else:
            columns = window.windows(window.pad(inputs[0])).reshape(
                -1, weights.shape[0]
            )
        result = columns @ weights
        result += bias
        return activation(result.reshape(batch, out_h, out_w, out_channels))

    return conv_2d


def _prepare_depthwise_conv_2d(ctx: _OpContext, tflite: Any) -> Kernel:
    """DEPTHWISE_CONV_2D: one multiply-add of a strided slice per kernel tap."""
    options = ctx.options(tflite, "DepthwiseConv2DOptions")
    batch, height, width, channels = ctx.input_shape(0, rank=4)
    filters = ctx.float_constant(1, rank=4)
    one, kernel_h, kernel_w, out_channels = filters.shape
    if one != 1 or channels == 0 or out_channels % channels:
        raise ctx.fail(
            f"filter shape {list(filters.shape)} does not fit {channels} channels"
        )
    multiplier = out_channels // channels
    bias = ctx.bias(2, out_channels)
    window = _window(
        ctx,
        in_size=(height, width),
        kernel=(kernel_h, kernel_w),
        strides=(options.StrideH(), options.StrideW()),
        dilations=(options.DilationHFactor(), options.DilationWFactor()),
        padding=options.Padding(),
    )
    _check_elements(
        ctx,
        (
            batch,
            height + sum(window.pads[0]),
            width + sum(window.pads[1]),
            out_channels,
        ),
    )
    weights = np.ascontiguousarray(filters[0])
    activation = ctx.activation(options.FusedActivationFunction())

    def depthwise_conv_2d(inputs: Sequence[Any]) -> FloatArray:
        padded = window.pad(inputs[0])
        if multiplier > 1:
            padded = np.repeat(padded, multiplier, axis=3)
        taps = window.taps(padded)
        # Bias first, then one multiply-add per tap through a reused scratch buffer.
        result = np.empty(taps[0][2].shape, np.float32)
        result[...] = bias
        scratch = np.empty_like(result)
        for i, j, tap in taps:
            np.multiply(tap, weights[i, j], out=scratch)
            result += scratch
        return activation(result)

    return depthwise_conv_2d


def _prepare_fully_connected(ctx: _OpContext, tflite: Any) -> Kernel:
    """FULLY_CONNECTED: flatten to (rows, K) and multiply by the transposed weights."""
    options = ctx.options(tflite, "FullyConnectedOptions")
    if options.WeightsFormat() != 0:
        raise ctx.unsupported("shuffled weights")
    in_shape = ctx.input_shape(0)
    weights = ctx.float_constant(1, rank=2)
    units, depth = weights.shape
    if depth == 0 or math.prod(in_shape) % depth:
        raise ctx.fail(
            f"input {list(in_shape)} does not fit weights {list(weights.shape)}"
        )
    bias = ctx.bias(2, units)
    out_shape = (
        (*in_shape[:-1], units)
        if options.KeepNumDims()
        else (math.prod(in_shape) // depth, units)
    )
    transposed = np.ascontiguousarray(weights.T)
    activation = ctx.activation(options.FusedActivationFunction())

    def fully_connected(inputs: Sequence[Any]) -> FloatArray:
        result = inputs[0].reshape(-1, depth) @ transposed
        result += bias
        return activation(result.reshape(out_shape))

    return fully_connected


def _prepare_pool(ctx: _OpContext, tflite: Any, reduce_max: bool) -> Kernel:
    """AVERAGE_POOL_2D / MAX_POOL_2D; the average counts only in-bounds cells, like TFLite."""
    options = ctx.options(tflite, "Pool2DOptions")
    batch, height, width, channels = ctx.input_shape(0, rank=4)
    window = _window(
        ctx,
        in_size=(height, width),
        kernel=(options.FilterHeight(), options.FilterWidth()),
        strides=(options.StrideH(), options.StrideW()),
        dilations=(1, 1),
        padding=options.Padding(),
    )
    _check_elements(ctx, (batch, *window.out_size, channels, *window.kernel))
    activation = ctx.activation(options.FusedActivationFunction())
    if reduce_max:

        def max_pool(inputs: Sequence[Any]) -> FloatArray:
            padded = window.pad(inputs[0], fill=-np.inf)
            result: FloatArray = window.windows(padded).max(axis=(4, 5))
            return activation(result)

        return max_pool
    ones = np.ones((1, height, width, 1), np.float32)
    counts = window.windows(window.pad(ones)).sum(axis=(4, 5), dtype=np.float32)

    def average_pool(inputs: Sequence[Any]) -> FloatArray:
        sums: FloatArray = window.windows(window.pad(inputs[0])).sum(
            axis=(4, 5), dtype=np.float32
        )
        return activation(sums / counts)

    return average_pool


def _prepare_mean(ctx: _OpContext, tflite: Any) -> Kernel:
    """MEAN over constant axes (keep_dims from the options)."""
    in_shape = ctx.input_shape(0)
    rank = len(in_shape)
    axes = ctx.int_constant(1).reshape(-1)
    if any(not -rank <= int(axis) < rank for axis in axes):
        raise ctx.fail(f"axes {axes.tolist()} out of range for rank {rank}")
    axis = tuple(sorted({int(axis) % rank for axis in axes}))
    keep_dims = bool(ctx.options(tflite, "ReducerOptions").KeepDims())

    def mean(inputs: Sequence[Any]) -> FloatArray:
        result: FloatArray = np.mean(
            inputs[0], axis=axis, keepdims=keep_dims, dtype=np.float32
        )
        return np.asarray(result, np.float32)

    return mean


def _prepare_reshape(ctx: _OpContext, tflite: Any) -> Kernel:
    """RESHAPE and SQUEEZE: take the declared output shape (element count checked)."""
    in_shape = ctx.input_shape(0)
    out_shape = ctx.output_shape
    if math.prod(in_shape) != math.prod(out_shape):
        raise ctx.fail(f"cannot reshape {list(in_shape)} to {list(out_shape)}")

    def reshape(inputs: Sequence[Any]) -> FloatArray:
        result: FloatArray = inputs[0].reshape(out_shape)
        return result

    return reshape


def _prepare_softmax(ctx: _OpContext, tflite: Any) -> Kernel:
    """SOFTMAX over the last axis with the `beta` option."""
    ctx.input_shape(0)
    beta = np.float32(ctx.options(tflite, "SoftmaxOptions").Beta())

    def softmax(inputs: Sequence[Any]) -> FloatArray:
        values = inputs[0]
        shifted = (values - values.max(axis=-1, keepdims=True)) * beta
        exps = np.exp(shifted)
        result: FloatArray = exps / exps.sum(axis=-1, keepdims=True)
        return result

    return softmax


def _prepare_binary(ctx: _OpContext, tflite: Any, multiply: bool) -> Kernel:
    """ADD / MUL with numpy broadcasting and a fused activation."""
    shapes = (ctx.input_shape(0), ctx.input_shape(1))
    try:
        np.broadcast_shapes(*shapes)
    except ValueError as err:
        raise ctx.fail(
            f"cannot broadcast {list(shapes[0])} with {list(shapes[1])}"
        ) from err
    options = ctx.options(tflite, "MulOptions" if multiply else "AddOptions")
    activation = ctx.activation(options.FusedActivationFunction())
    operation = np.multiply if multiply else np.add

    def binary(inputs: Sequence[Any]) -> FloatArray:
        result: FloatArray = operation(inputs[0], inputs[1], dtype=np.float32)
        return activation(result)

    return binary


def _prepare_concatenation(ctx: _OpContext, tflite: Any) -> Kernel:
    """CONCATENATION along an axis with a fused activation."""
    shapes = [ctx.input_shape(slot) for slot in range(len(ctx.op.inputs))]
    if not shapes:
        raise ctx.fail("no inputs")
    options = ctx.options(tflite, "ConcatenationOptions")
    rank = len(shapes[0])
    axis = int(options.Axis())
    if not -rank <= axis < rank or any(len(shape) != rank for shape in shapes):
        raise ctx.fail(f"axis {axis} does not fit inputs {[list(s) for s in shapes]}")
    activation = ctx.activation(options.FusedActivationFunction())

    def concatenation(inputs: Sequence[Any]) -> FloatArray:
        return activation(np.concatenate(list(inputs), axis=axis))

    return concatenation


def _prepare_pad(ctx: _OpContext, tflite: Any) -> Kernel:
    """PAD with zeros by a constant (rank, 2) paddings tensor."""
    in_shape = ctx.input_shape(0)
    paddings = ctx.int_constant(1)
    if paddings.shape != (len(in_shape), 2) or (paddings < 0).any():
        raise ctx.fail(
            f"paddings {paddings.tolist()} do not fit shape {list(in_shape)}"
        )
    _check_elements(
        ctx,
        [
            size + int(before) + int(after)
            for size, (before, after) in zip(in_shape, paddings, strict=True)
        ],
    )
    widths = [(int(before), int(after)) for before, after in paddings]

    def pad(inputs: Sequence[Any]) -> FloatArray:
        result: FloatArray = np.pad(inputs[0], widths)
        return result

    return pad


def _prepare_dequantize(ctx: _OpContext, tflite: Any) -> Kernel:
    """DEQUANTIZE float16 or affine-quantized integers (float16 / int8 weights) to float32."""
    info = ctx.tensor(0)
    out_shape = ctx.output_shape
    if info.shape != out_shape:
        raise ctx.fail(f"shape {list(info.shape)} -> {list(out_shape)}")
    if info.type_name == "float16":
        return lambda inputs: np.asarray(inputs[0], np.float32)
    if info.type_name not in ("int8", "uint8", "int16"):
        raise ctx.unsupported(f"{info.type_name} input")
    if info.quantization is None:
        raise ctx.fail("the quantized input has no scale")
    scales, zero_points = info.quantization.broadcast(len(info.shape))

    def dequantize(inputs: Sequence[Any]) -> FloatArray:
        result: FloatArray = (
            (inputs[0].astype(np.int64) - zero_points) * scales
        ).astype(np.float32)
        return result

    return dequantize


def _prepare_unary(
    ctx: _OpContext, function: Callable[[FloatArray], FloatArray]
) -> Kernel:
    """An elementwise operator on one float32 input."""
    ctx.input_shape(0)

    def unary(inputs: Sequence[Any]) -> FloatArray:
        return function(inputs[0])

    return unary


def _logistic(values: FloatArray) -> FloatArray:
    """Sigmoid via tanh: no overflow warnings for large negative inputs."""
    half = np.float32(0.5)
    result: FloatArray = np.tanh(values * half) * half + half
    return result


def _relu(values: FloatArray) -> FloatArray:
    """ReLU on a fresh array."""
    result: FloatArray = np.maximum(values, np.float32(0.0))
    return result


def _relu6(values: FloatArray) -> FloatArray:
    """ReLU6 on a fresh array."""
    result: FloatArray = np.clip(values, np.float32(0.0), np.float32(6.0))
    return result


_PREPARERS: Final[dict[str, Callable[[_OpContext, Any], Kernel]]] = {
    "ADD": lambda ctx, tfl: _prepare_binary(ctx, tfl, multiply=False),
    "AVERAGE_POOL_2D": lambda ctx, tfl: _prepare_pool(ctx, tfl, reduce_max=False),
    "CONCATENATION": _prepare_concatenation,
    "CONV_2D": _prepare_conv_2d,
    "DEPTHWISE_CONV_2D": _prepare_depthwise_conv_2d,
    "DEQUANTIZE": _prepare_dequantize,
    "FULLY_CONNECTED": _prepare_fully_connected,
    "LOGISTIC": lambda ctx, tfl: _prepare_unary(ctx, _logistic),
    "MAX_POOL_2D": lambda ctx, tfl: _prepare_pool(ctx, tfl, reduce_max=True),
    "MEAN": _prepare_mean,
    "MUL": lambda ctx, tfl: _prepare_binary(ctx, tfl, multiply=True),
    "PAD": _prepare_pad,
    "RELU": lambda ctx, tfl: _prepare_unary(ctx, _relu),
    "RELU6": lambda ctx, tfl: _prepare_unary(ctx, _relu6),
    "RESHAPE": _prepare_reshape,
    "SOFTMAX": _prepare_softmax,
    "SQUEEZE": _prepare_reshape,
}


def supported_ops() -> tuple[str, ...]:
    """Names of the builtin operators the numpy backend executes, sorted."""
    return tuple(sorted(_PREPARERS))


def check_supported(parsed: ParsedModel) -> None:
    """Raise UnsupportedOpError naming every operator (or tensor kind) we cannot run."""
    unsupported = [name for name in parsed.operator_names if name not in _PREPARERS]
    if unsupported:
        raise UnsupportedOpError(
            f"the numpy backend does not support operator(s) {', '.join(unsupported)} "
            f"(it runs {', '.join(supported_ops())})"
        )
    for info in parsed.tensors:
        if info.is_variable or info.is_sparse:
            kind = "variable" if info.is_variable else "sparse"
            raise UnsupportedOpError(
                f"the numpy backend does not support {kind} tensors"
            )
    for index in (*parsed.inputs, *parsed.outputs):
        type_name = parsed.tensors[index].type_name
        if type_name != "float32":
            raise UnsupportedOpError(
                f"the numpy backend runs float32 models only; this model has a {type_name} "
                "input or output (quantized?)"
            )


# ---------------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class _Step:
    """One operator to run: kernel, input tensor indices, output tensor index."""

    op: OperatorInfo
    kernel: Kernel
    inputs: tuple[int, ...]
    output: int


class NumpyTfliteModel:
    """A float32 .tflite model run by NumPy; `run` is stateless, so safe from any one thread."""

    def __init__(self, model_bytes: bytes) -> None:
        """Parse, check and plan the model; ModelError / UnsupportedOpError when it cannot run."""
        parsed = parse_model(model_bytes)
        if len(parsed.inputs) != 1 or len(parsed.outputs) != 1:
            raise ModelError(
                f"the model must have one input and one output, has {len(parsed.inputs)} "
                f"and {len(parsed.outputs)}"
            )
        check_supported(parsed)
        self._parsed = parsed
        self._input = parsed.inputs[0]
        self._output = parsed.outputs[0]
        self.input_shape: tuple[int, ...] = parsed.tensors[self._input].shape
        self.output_shape: tuple[int, ...] = parsed.tensors[self._output].shape
        self.input_dtype = parsed.tensors[self._input].type_name
        self.output_dtype = parsed.tensors[self._output].type_name
        self._constants: dict[int, np.ndarray] = {}
        self._steps: list[_Step] = []
        try:
            self._plan(_import_tflite())
            self.run(np.zeros(self.input_shape, np.float32))
        except CryDetectorError:
            raise
        except Exception as err:
            raise ModelError(f"invalid model: {type(err).__name__}: {err}") from err

    @property
    def operator_names(self) -> tuple[str, ...]:
        """Distinct operator names in the model."""
        return self._parsed.operator_names

    def _plan(self, tflite: Any) -> None:
        """Prepare every operator in execution order, folding all-constant ones now."""
        tensors = self._parsed.tensors
        self._constants = {t.index: t.data for t in tensors if t.data is not None}
        for op in execution_order(self._parsed):
            if len(op.outputs) != 1:
                raise ModelError(
                    f"invalid model: operator {op.position} ({op.name}) has {len(op.outputs)} outputs"
                )
            kernel = _PREPARERS[op.name](
                _OpContext(op, tensors, self._constants), tflite
            )
            step = _Step(op, kernel, op.inputs, op.outputs[0])
            if all(
                index == NO_TENSOR or index in self._constants for index in op.inputs
            ):
                self._constants[step.output] = self._execute(step, self._constants)
            else:
                self._steps.append(step)

    def _execute(self, step: _Step, values: dict[int, np.ndarray]) -> FloatArray:
        """Run one step and check the result against the shape the file declares."""
        arguments = [
            values[index] if index != NO_TENSOR else None for index in step.inputs
        ]
        result = step.kernel(arguments)
        declared = self._parsed.tensors[step.output].shape
        if result.shape != declared or result.dtype != np.float32:
            raise ModelError(
                f"invalid model: operator {step.op.position} ({step.op.name}) computes "
                f"{result.dtype}{list(result.shape)}, the model declares float32{list(declared)}"
            )
        return result

    def run(self, values: npt.ArrayLike) -> FloatArray:
        """Run the model on one input (reshaped to input_shape) and return the output tensor."""
        array = np.asarray(values, dtype=np.float32)
        if array.size != math.prod(self.input_shape):
            raise ValueError(
                f"input has {array.size} values, the model takes {list(self.input_shape)}"
            )
        tensors: dict[int, np.ndarray] = dict(self._constants)
        tensors[self._input] = array.reshape(self.input_shape)
        with np.errstate(all="ignore"):
            for step in self._steps:
                tensors[step.output] = self._execute(step, tensors)
        return np.array(tensors[self._output], dtype=np.float32, copy=True)


class NumpyBackend:
    """Backend protocol adapter around NumpyTfliteModel."""

    name = BACKEND_NAME

    def __init__(self, model_bytes: bytes) -> None:
        """Load the model; errors as NumpyTfliteModel."""
        self._model: NumpyTfliteModel | None = NumpyTfliteModel(model_bytes)
        self.input_shape = self._model.input_shape
        self.output_shape = self._model.output_shape
        self.input_dtype = self._model.input_dtype
        self.output_dtype = self._model.output_dtype

    def predict(self, patch: np.ndarray) -> FloatArray:
        """Run one (patch_frames, mel_bands) patch; return the flat output probabilities."""
        if self._model is None:
            raise ModelError("the numpy backend is closed")
        return self._model.run(patch).reshape(-1)

    def close(self) -> None:
        """Drop the model."""
        self._model = None
