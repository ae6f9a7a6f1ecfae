"""Inference backends: LiteRT/NumPy parity, backend choice, card checks and corrupt models."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
import importlib.abc
import importlib.machinery
from pathlib import Path
import shutil
import sys
from typing import Any

import flatbuffers  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings, strategies as st
import numpy as np
import numpy.typing as npt
import pytest
import tflite

from custom_components.cry_detector.engine import backends
from custom_components.cry_detector.engine.backends import (
    BACKEND_ORDER,
    available_backends,
    check_model,
    load_backend,
    load_model,
)
from custom_components.cry_detector.engine.backends.litert import LiteRtBackend
from custom_components.cry_detector.engine.backends.numpy_backend import (
    NumpyBackend,
    NumpyTfliteModel,
    parse_model,
    supported_ops,
)
from custom_components.cry_detector.engine.card import (
    ModelCard,
    card_path_for,
    load_card,
    write_card,
)
from custom_components.cry_detector.engine.errors import (
    ModelCardError,
    ModelError,
    UnsupportedOpError,
)
from custom_components.cry_detector.engine.features import FeatureConfig, patches

from .audio import cry_bout, door_knocks, music, read_audio, room_tone, speech_like

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "models"
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "cry-corpus"
RUNNABLE_MODELS = ("tiny_dscnn", "tiny_cnn", "op_coverage", "tiny_dscnn_fp16")
PARITY_TOLERANCE = 1e-4
FloatArray = npt.NDArray[np.float32]


def fixture_model(name: str) -> Path:
    """Return the path of a committed fixture model."""
    return FIXTURES / f"{name}.tflite"


@pytest.fixture(scope="module")
def card() -> ModelCard:
    """The card of the fixtures: [1, 100, 40, 1] input, two labels."""
    return load_card(FIXTURES / "tiny_dscnn.json")


def random_patches(count: int, seed: int) -> FloatArray:
    """Noise patches with a spread of amplitudes, mean-free like normalised log-mel."""
    rng = np.random.default_rng(seed)
    result = rng.normal(size=(count, 100, 40)) * rng.uniform(
        0.5, 3.0, size=(count, 1, 1)
    )
    centred: FloatArray = (result - result.mean(axis=(1, 2), keepdims=True)).astype(
        np.float32
    )
    return centred


def feature_patches() -> FloatArray:
    """Five real log-mel patches of synthesised audio: cry, speech, music, knocks, room tone."""
    config = FeatureConfig()
    sounds = [
        cry_bout(1.2, seed=3) + room_tone(1.2, seed=4),
        speech_like(1.2, seed=5),
        music(1.2, seed=6),
        door_knocks(1.2, seed=7),
        room_tone(1.2, level_dbfs=-60.0, seed=8),
    ]
    return np.stack([patches(sound, config)[0] for sound in sounds])


# --- a minimal .tflite writer, for graphs the Keras converter never emits --------------------


@dataclass
class TensorSpec:
    """A tensor of a hand-built model; `data` makes it a constant."""

    shape: list[int]
    type: int = tflite.TensorType.FLOAT32
    data: np.ndarray | None = None
    scale: float | np.ndarray | None = None


@dataclass
class OpSpec:
    """An operator of a hand-built model."""

    code: int
    inputs: list[int]
    outputs: list[int]
    options_type: int = 0
    options: Any = None  # callable(builder) -> offset of the options table
    custom_code: str | None = None


@dataclass
class GraphSpec:
    """A one-subgraph model."""

    tensors: list[TensorSpec]
    ops: list[OpSpec]
    inputs: list[int]
    outputs: list[int]
    extra: dict[str, Any] = field(default_factory=dict)


def _vector(builder: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    """Write a vector of table offsets."""
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return int(builder.EndVector())


def _ints(builder: flatbuffers.Builder, values: Sequence[int]) -> int:
    """Write an int32 vector."""
    return int(builder.CreateNumpyVector(np.asarray(values, dtype=np.int32)))


def _tensor(
    builder: flatbuffers.Builder, spec: TensorSpec, buffer: int, name: str
) -> int:
    """Write one tensor table."""
    name_offset = builder.CreateString(name)
    shape = _ints(builder, spec.shape)
    quantization = None
    if spec.scale is not None:
        scales = np.asarray(spec.scale, np.float32).reshape(-1)
        scale = builder.CreateNumpyVector(scales)
        zero_point = builder.CreateNumpyVector(np.zeros(scales.size, np.int64))
        tflite.QuantizationParametersStart(builder)
        tflite.QuantizationParametersAddScale(builder, scale)
        tflite.QuantizationParametersAddZeroPoint(builder, zero_point)
        quantization = tflite.QuantizationParametersEnd(builder)
    tflite.TensorStart(builder)
    tflite.TensorAddShape(builder, shape)
    tflite.TensorAddType(builder, spec.type)
    tflite.TensorAddBuffer(builder, buffer)
    tflite.TensorAddName(builder, name_offset)
    if quantization is not None:
        tflite.TensorAddQuantization(builder, quantization)
    return int(tflite.TensorEnd(builder))


def _operator(builder: flatbuffers.Builder, spec: OpSpec, opcode_index: int) -> int:
    """Write one operator table."""
    options = spec.options(builder) if spec.options else None
    inputs, outputs = _ints(builder, spec.inputs), _ints(builder, spec.outputs)
    tflite.OperatorStart(builder)
    tflite.OperatorAddOpcodeIndex(builder, opcode_index)
    tflite.OperatorAddInputs(builder, inputs)
    tflite.OperatorAddOutputs(builder, outputs)
    if options is not None:
        tflite.OperatorAddBuiltinOptionsType(builder, spec.options_type)
        tflite.OperatorAddBuiltinOptions(builder, options)
    return int(tflite.OperatorEnd(builder))


def _opcode(builder: flatbuffers.Builder, code: int, custom_code: str | None) -> int:
    """Write one operator code table."""
    custom = builder.CreateString(custom_code) if custom_code else None
    tflite.OperatorCodeStart(builder)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(builder, min(code, 127))
    tflite.OperatorCodeAddBuiltinCode(builder, code)
    tflite.OperatorCodeAddVersion(builder, 1)
    if custom is not None:
        tflite.OperatorCodeAddCustomCode(builder, custom)
    return int(tflite.OperatorCodeEnd(builder))


def _buffer(builder: flatbuffers.Builder, data: np.ndarray | None) -> int:
    """Write one buffer table (empty when data is None)."""
    vector = None
    if data is not None:
        raw = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
        builder.StartVector(1, raw.size, 16)  # 16-byte aligned, like the converter
        builder.head = builder.head - raw.size
        builder.Bytes[builder.head : builder.head + raw.size] = raw.tobytes()
        vector = builder.EndVector()
    tflite.BufferStart(builder)
    if vector is not None:
        tflite.BufferAddData(builder, vector)
    return int(tflite.BufferEnd(builder))


def build_tflite(graph: GraphSpec) -> bytes:
    """Serialise a GraphSpec as a .tflite flatbuffer."""
    builder = flatbuffers.Builder(1024)
    buffers = [_buffer(builder, None)]
    tensors = []
    for index, spec in enumerate(graph.tensors):
        buffer_index = 0
        if spec.data is not None:
            buffer_index = len(buffers)
            buffers.append(_buffer(builder, spec.data))
        tensors.append(_tensor(builder, spec, buffer_index, f"t{index}"))
    codes = sorted({(op.code, op.custom_code or "") for op in graph.ops})
    operators = [
        _operator(builder, op, codes.index((op.code, op.custom_code or "")))
        for op in graph.ops
    ]
    opcodes = [_opcode(builder, code, custom or None) for code, custom in codes]
    tensor_vector, operator_vector = (
        _vector(builder, tensors),
        _vector(builder, operators),
    )
    inputs, outputs = _ints(builder, graph.inputs), _ints(builder, graph.outputs)
    tflite.SubGraphStart(builder)
    tflite.SubGraphAddTensors(builder, tensor_vector)
    tflite.SubGraphAddInputs(builder, inputs)
    tflite.SubGraphAddOutputs(builder, outputs)
    tflite.SubGraphAddOperators(builder, operator_vector)
    subgraph = tflite.SubGraphEnd(builder)
    subgraphs, opcode_vector, buffer_vector = (
        _vector(builder, [subgraph]),
        _vector(builder, opcodes),
        _vector(builder, buffers),
    )
    tflite.ModelStart(builder)
    tflite.ModelAddVersion(builder, 3)
    tflite.ModelAddOperatorCodes(builder, opcode_vector)
    tflite.ModelAddSubgraphs(builder, subgraphs)
    tflite.ModelAddBuffers(builder, buffer_vector)
    builder.Finish(tflite.ModelEnd(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _reducer_keep_dims(builder: flatbuffers.Builder) -> int:
    """ReducerOptions(keep_dims=True)."""
    tflite.ReducerOptionsStart(builder)
    tflite.ReducerOptionsAddKeepDims(builder, True)
    return int(tflite.ReducerOptionsEnd(builder))


def _squeeze_dims(builder: flatbuffers.Builder) -> int:
    """SqueezeOptions(squeeze_dims=[2, 3])."""
    dims = _ints(builder, [2, 3])
    tflite.SqueezeOptionsStart(builder)
    tflite.SqueezeOptionsAddSqueezeDims(builder, dims)
    return int(tflite.SqueezeOptionsEnd(builder))


def _softmax_beta(builder: flatbuffers.Builder) -> int:
    """SoftmaxOptions(beta=1)."""
    tflite.SoftmaxOptionsStart(builder)
    tflite.SoftmaxOptionsAddBeta(builder, 1.0)
    return int(tflite.SoftmaxOptionsEnd(builder))


def _fully_connected(builder: flatbuffers.Builder) -> int:
    """FullyConnectedOptions with defaults."""
    tflite.FullyConnectedOptionsStart(builder)
    return int(tflite.FullyConnectedOptionsEnd(builder))


def squeeze_graph(
    op_code: int = tflite.BuiltinOperator.SQUEEZE, int8_weights: bool = False
) -> GraphSpec:
    """[1,100,40,1] -> MEAN(axis 2, keep dims) -> SQUEEZE -> FULLY_CONNECTED -> SOFTMAX -> [1,2]."""
    weights = np.random.default_rng(11).normal(0.0, 0.05, (2, 100)).astype(np.float32)
    tensors = [
        TensorSpec([1, 100, 40, 1]),
        TensorSpec([1], tflite.TensorType.INT32, np.asarray([2], np.int32)),
        TensorSpec([1, 100, 1, 1]),
        TensorSpec([1, 100]),
        TensorSpec([2, 100], data=weights),
        TensorSpec([2], data=np.asarray([0.1, -0.1], np.float32)),
        TensorSpec([1, 2]),
        TensorSpec([1, 2]),
    ]
    options = tflite.BuiltinOptions
    ops = [
        OpSpec(
            tflite.BuiltinOperator.MEAN,
            [0, 1],
            [2],
            options.ReducerOptions,
            _reducer_keep_dims,
        ),
        OpSpec(op_code, [2], [3], options.SqueezeOptions, _squeeze_dims),
        OpSpec(
            tflite.BuiltinOperator.FULLY_CONNECTED,
            [3, 4, 5],
            [6],
            options.FullyConnectedOptions,
            _fully_connected,
        ),
        OpSpec(
            tflite.BuiltinOperator.SOFTMAX,
            [6],
            [7],
            options.SoftmaxOptions,
            _softmax_beta,
        ),
    ]
    if int8_weights:
        # Per-channel int8 weights, DEQUANTIZEd to float32 like a weight-quantized export.
        scales = np.abs(weights).max(axis=1) / 127.0
        stored = np.round(weights / scales[:, None]).astype(np.int8)
        tensors[4] = TensorSpec([2, 100])
        tensors.append(
            TensorSpec([2, 100], tflite.TensorType.INT8, stored, scale=scales)
        )
        ops.insert(0, OpSpec(tflite.BuiltinOperator.DEQUANTIZE, [8], [4]))
    return GraphSpec(tensors, ops, inputs=[0], outputs=[7])


# --- parity ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parity_inputs() -> FloatArray:
    """20 random and 5 real-feature patches."""
    return np.concatenate([random_patches(20, seed=1), feature_patches()])


@pytest.mark.parametrize("model_name", RUNNABLE_MODELS)
def test_numpy_matches_litert(
    model_name: str, card: ModelCard, parity_inputs: FloatArray
) -> None:
    """The NumPy interpreter gives LiteRT's probabilities within 1e-4 on random and real patches."""
    litert = load_backend(fixture_model(model_name), card, preferred="litert")
    numpy_backend = load_backend(fixture_model(model_name), card, preferred="numpy")
    try:
        expected = np.stack([litert.predict(patch) for patch in parity_inputs])
        actual = np.stack([numpy_backend.predict(patch) for patch in parity_inputs])
    finally:
        litert.close()
        numpy_backend.close()
    assert actual.shape == expected.shape == (25, 2)
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=0, atol=PARITY_TOLERANCE)
    np.testing.assert_allclose(actual.sum(axis=1), 1.0, atol=1e-5)
    # The comparison means something only if the outputs move with the input.
    assert np.ptp(expected[:, 1]) > 0.1


def test_squeeze_and_keep_dims_match_litert(card: ModelCard) -> None:
    """SQUEEZE and MEAN(keep_dims) - never emitted by the Keras converter - agree with LiteRT."""
    model_bytes = build_tflite(squeeze_graph())
    numpy_model = NumpyTfliteModel(model_bytes)
    litert = LiteRtBackend("litert", model_bytes)
    try:
        for patch in random_patches(5, seed=2) + np.linspace(-2, 2, 100)[None, :, None]:
            np.testing.assert_allclose(
                numpy_model.run(patch).reshape(-1), litert.predict(patch), atol=1e-6
            )
    finally:
        litert.close()
    assert numpy_model.operator_names == (
        "FULLY_CONNECTED",
        "MEAN",
        "SOFTMAX",
        "SQUEEZE",
    )


def test_int8_weights_dequantized_match_litert() -> None:
    """Per-channel int8 constant weights (DEQUANTIZE) give LiteRT's result."""
    model_bytes = build_tflite(squeeze_graph(int8_weights=True))
    numpy_model = NumpyTfliteModel(model_bytes)
    litert = LiteRtBackend("litert", model_bytes)
    try:
        for patch in random_patches(5, seed=9) + np.linspace(-2, 2, 100)[None, :, None]:
            np.testing.assert_allclose(
                numpy_model.run(patch).reshape(-1), litert.predict(patch), atol=1e-6
            )
    finally:
        litert.close()
    assert "DEQUANTIZE" in numpy_model.operator_names


def test_operator_without_options_uses_schema_defaults() -> None:
    """A FULLY_CONNECTED without an options table runs with the defaults, as in LiteRT."""
    graph = squeeze_graph()
    graph.ops[2] = replace(graph.ops[2], options=None)
    model_bytes = build_tflite(graph)
    litert = LiteRtBackend("litert", model_bytes)
    try:
        patch = random_patches(1, seed=10)[0] + np.linspace(-2, 2, 100)[:, None]
        np.testing.assert_allclose(
            NumpyTfliteModel(model_bytes).run(patch).reshape(-1),
            litert.predict(patch),
            atol=1e-6,
        )
    finally:
        litert.close()


@pytest.mark.skipif(not CORPUS.is_dir(), reason="cry corpus not available")
def test_numpy_matches_litert_on_corpus_audio(card: ModelCard) -> None:
    """Parity holds on features of real recordings too (one cry, one not)."""
    clips = [
        next(iter(sorted((CORPUS / label).rglob("*.flac"))))
        for label in ("crying", "not_crying")
    ]
    inputs = np.concatenate(
        [patches(read_audio(clip), card.features)[:3] for clip in clips]
    )
    litert = load_backend(fixture_model("tiny_dscnn"), card, preferred="litert")
    numpy_backend = load_backend(fixture_model("tiny_dscnn"), card, preferred="numpy")
    try:
        for patch in inputs:
            np.testing.assert_allclose(
                numpy_backend.predict(patch),
                litert.predict(patch),
                atol=PARITY_TOLERANCE,
            )
    finally:
        litert.close()
        numpy_backend.close()


# --- loading, order and choice ---------------------------------------------------------------


def test_supported_ops_are_the_documented_set() -> None:
    """The NumPy backend runs exactly the operators our Keras exports use."""
    assert set(supported_ops()) == {
        "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE",
        "FULLY_CONNECTED", "LOGISTIC", "MAX_POOL_2D", "MEAN", "MUL", "PAD", "RELU", "RELU6",
        "RESHAPE", "SOFTMAX", "SQUEEZE",
    }  # fmt: skip


def test_available_backends_in_preference_order() -> None:
    """LiteRT and NumPy are installed here; the list keeps the documented order."""
    available = available_backends()
    assert BACKEND_ORDER == ("litert", "tflite_runtime", "numpy")
    assert available == [name for name in BACKEND_ORDER if name in available]
    assert {"litert", "numpy"} <= set(available)


def test_default_backend_is_litert(card: ModelCard) -> None:
    """With LiteRT importable, it is chosen."""
    backend = load_backend(fixture_model("tiny_dscnn"), card)
    try:
        assert backend.name == "litert"
        assert isinstance(backend, LiteRtBackend)
        assert backend.input_shape == (1, 100, 40, 1)
        assert backend.output_shape == (1, 2)
    finally:
        backend.close()


@pytest.mark.parametrize("preferred", ["litert", "numpy"])
def test_preferred_forces_the_backend(preferred: str, card: ModelCard) -> None:
    """`preferred` picks that backend."""
    backend = load_backend(fixture_model("tiny_dscnn"), card, preferred=preferred)
    try:
        assert backend.name == preferred
    finally:
        backend.close()


@pytest.mark.parametrize("preferred", ["tflite_runtime", "onnx"])
def test_preferred_unavailable_is_refused(preferred: str, card: ModelCard) -> None:
    """A backend that is not installed (or does not exist) cannot be forced."""
    if preferred in available_backends():
        pytest.skip(f"{preferred} is installed here")
    with pytest.raises(ModelError, match=preferred) as caught:
        load_backend(fixture_model("tiny_dscnn"), card, preferred=preferred)
    assert caught.value.reason == "backend_unavailable"


@pytest.fixture
def without_litert(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make both LiteRT packages unimportable (None in sys.modules)."""
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)


@pytest.mark.usefixtures("without_litert")
def test_missing_litert_falls_back_to_numpy(card: ModelCard) -> None:
    """Without ai_edge_litert (and tflite_runtime), the NumPy interpreter runs the model."""
    assert available_backends() == ["numpy"]
    backend = load_backend(fixture_model("tiny_dscnn"), card)
    try:
        assert backend.name == "numpy"
        assert isinstance(backend, NumpyBackend)
        assert backend.predict(random_patches(1, seed=3)[0]).shape == (2,)
    finally:
        backend.close()
    with pytest.raises(ModelError) as caught:
        load_backend(fixture_model("tiny_dscnn"), card, preferred="litert")
    assert caught.value.reason == "backend_unavailable"


class _BrokenLibraryFinder(importlib.abc.MetaPathFinder):
    """Import hook: ai_edge_litert's native library fails to load (OSError), as on odd CPUs."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        """Raise for ai_edge_litert, defer everything else."""
        if fullname.partition(".")[0] == "ai_edge_litert":
            raise OSError("libpywrap_litert_common.so: cannot open shared object file")
        return None


def test_litert_library_failing_to_load_falls_back(
    monkeypatch: pytest.MonkeyPatch, card: ModelCard
) -> None:
    """An OSError while importing LiteRT makes it unavailable instead of crashing."""
    for name in [
        name for name in sys.modules if name.partition(".")[0] == "ai_edge_litert"
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_BrokenLibraryFinder(), *sys.meta_path])
    assert "litert" not in available_backends()
    backend = load_backend(fixture_model("tiny_dscnn"), card)
    try:
        assert backend.name != "litert"
    finally:
        backend.close()


def test_load_model_reads_the_card_beside_the_model(
    tmp_path: Path, card: ModelCard
) -> None:
    """load_model(X.tflite) uses X.json and returns it with a checked backend."""
    model_path = tmp_path / "nursery.tflite"
    shutil.copyfile(fixture_model("tiny_dscnn"), model_path)
    own_card = replace(card, name="nursery-model", threshold=0.7)
    write_card(own_card, card_path_for(model_path))
    loaded_card, backend = load_model(model_path, preferred="numpy")
    try:
        assert loaded_card == own_card
        assert backend.name == "numpy"
        assert backend.predict(feature_patches()[0]).shape == (len(own_card.labels),)
    finally:
        backend.close()


def test_load_model_without_card(tmp_path: Path) -> None:
    """A model without its card is refused with card_missing."""
    model_path = tmp_path / "lonely.tflite"
    shutil.copyfile(fixture_model("tiny_dscnn"), model_path)
    with pytest.raises(ModelCardError) as caught:
        load_model(model_path)
    assert caught.value.reason == "card_missing"


# --- model <-> card checks -------------------------------------------------------------------


@pytest.mark.parametrize("preferred", ["litert", "numpy"])
def test_wrong_input_shape_is_a_card_mismatch(preferred: str) -> None:
    """A (50, 40, 1) model under a (100, 40, 1) card is refused, naming both shapes."""
    with pytest.raises(ModelCardError) as caught:
        load_model(fixture_model("wrong_shape"), preferred=preferred)
    assert caught.value.reason == "card_mismatch"
    assert "[1, 50, 40, 1]" in str(caught.value)
    assert "[1, 100, 40, 1]" in str(caught.value)


@pytest.mark.parametrize("preferred", ["litert", "numpy"])
def test_label_count_mismatch(preferred: str, card: ModelCard) -> None:
    """Two model outputs but three card labels is refused, naming both."""
    three_labels = replace(card, labels=("quiet", "fussing", "crying"))
    with pytest.raises(ModelCardError) as caught:
        load_backend(fixture_model("tiny_dscnn"), three_labels, preferred=preferred)
    assert caught.value.reason == "card_mismatch"
    assert "[1, 2]" in str(caught.value)
    assert "3 labels" in str(caught.value)


@dataclass
class _ShapeOnly:
    """Just the attributes check_model reads."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...] = (1, 2)
    input_dtype: str = "float32"
    output_dtype: str = "float32"
    name: str = "shape-only"

    def predict(self, patch: np.ndarray) -> np.ndarray:
        """Not used."""
        raise NotImplementedError

    def close(self) -> None:
        """Not used."""


@pytest.mark.parametrize("batch", [-1, 1])
def test_dynamic_or_unit_batch_matches(batch: int, card: ModelCard) -> None:
    """A batch dimension of -1 or 1 fits the card's 1."""
    check_model(card, _ShapeOnly((batch, 100, 40, 1)))


def test_other_batch_or_rank_mismatch(card: ModelCard) -> None:
    """A batch of 4 or a missing channel axis does not fit."""
    for shape in [(4, 100, 40, 1), (1, 100, 40)]:
        with pytest.raises(ModelCardError, match="does not match"):
            check_model(card, _ShapeOnly(shape))


def _int8_input_graph() -> GraphSpec:
    """int8 [1,100,40,1] -> DEQUANTIZE -> RESHAPE [1,4000] -> FULLY_CONNECTED -> SOFTMAX."""
    weights = np.random.default_rng(5).normal(0.0, 0.01, (2, 4000)).astype(np.float32)
    tensors = [
        TensorSpec([1, 100, 40, 1], tflite.TensorType.INT8, scale=0.1),
        TensorSpec([1, 100, 40, 1]),
        TensorSpec([2], tflite.TensorType.INT32, np.asarray([1, 4000], np.int32)),
        TensorSpec([1, 4000]),
        TensorSpec([2, 4000], data=weights),
        TensorSpec([1, 2]),
        TensorSpec([1, 2]),
    ]
    options = tflite.BuiltinOptions
    ops = [
        OpSpec(tflite.BuiltinOperator.DEQUANTIZE, [0], [1]),
        OpSpec(tflite.BuiltinOperator.RESHAPE, [1, 2], [3]),
        OpSpec(
            tflite.BuiltinOperator.FULLY_CONNECTED,
            [3, 4, -1],
            [5],
            options.FullyConnectedOptions,
            _fully_connected,
        ),
        OpSpec(
            tflite.BuiltinOperator.SOFTMAX,
            [5],
            [6],
            options.SoftmaxOptions,
            _softmax_beta,
        ),
    ]
    return GraphSpec(tensors, ops, inputs=[0], outputs=[6])


def test_int8_input_is_a_card_mismatch_for_litert(
    tmp_path: Path, card: ModelCard
) -> None:
    """LiteRT runs an int8-input model, but the card's features are float32: refused by type."""
    model_path = tmp_path / "int8.tflite"
    model_path.write_bytes(build_tflite(_int8_input_graph()))
    with pytest.raises(ModelCardError) as caught:
        load_backend(model_path, card, preferred="litert")
    assert caught.value.reason == "card_mismatch"
    assert "int8" in str(caught.value)
    with pytest.raises(UnsupportedOpError, match="int8"):
        load_backend(model_path, card, preferred="numpy")


# --- unsupported operators -------------------------------------------------------------------


def test_unsupported_op_refused_at_load_by_name(card: ModelCard) -> None:
    """The CUMSUM model is refused by the NumPy backend when loading, naming the operator."""
    model_path = fixture_model("unsupported_op")
    with pytest.raises(UnsupportedOpError, match="CUMSUM") as caught:
        load_backend(model_path, card, preferred="numpy")
    assert caught.value.reason == "unsupported_op"
    with pytest.raises(UnsupportedOpError, match="CUMSUM"):
        NumpyTfliteModel(model_path.read_bytes())


def test_unsupported_op_still_runs_on_litert(card: ModelCard) -> None:
    """LiteRT has CUMSUM, so the default choice loads the same model."""
    backend = load_backend(fixture_model("unsupported_op"), card)
    try:
        assert backend.name == "litert"
        assert backend.predict(random_patches(1, seed=4)[0]).shape == (2,)
    finally:
        backend.close()


@pytest.mark.usefixtures("without_litert")
def test_unsupported_op_without_litert_names_the_op(card: ModelCard) -> None:
    """With only NumPy available, loading fails with the op name, not a generic error."""
    with pytest.raises(UnsupportedOpError, match="CUMSUM"):
        load_backend(fixture_model("unsupported_op"), card)


@pytest.mark.parametrize(
    ("code", "custom", "expected"),
    [
        (tflite.BuiltinOperator.LSTM, None, "LSTM"),
        (
            tflite.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM,
            None,
            "UNIDIRECTIONAL_SEQUENCE_LSTM",
        ),
        (tflite.BuiltinOperator.CUSTOM, "FlexCumsum", "CUSTOM:FlexCumsum"),
    ],
)
def test_unsupported_op_names(code: int, custom: str | None, expected: str) -> None:
    """Builtin operators are named by their schema name, custom ones by their code."""
    graph = squeeze_graph(op_code=code)
    graph.ops[1] = replace(graph.ops[1], custom_code=custom, options=None)
    with pytest.raises(UnsupportedOpError, match=expected):
        NumpyTfliteModel(build_tflite(graph))


# --- predict / close -------------------------------------------------------------------------


@pytest.mark.parametrize("preferred", ["litert", "numpy"])
def test_predict_contract(preferred: str, card: ModelCard) -> None:
    """(100, 40) in -> (2,) float32 probabilities out; float64 input is accepted; wrong size is not."""
    backend = load_backend(fixture_model("tiny_dscnn"), card, preferred=preferred)
    patch = feature_patches()[0]
    try:
        result = backend.predict(patch)
        assert result.shape == (2,)
        assert result.dtype == np.float32
        assert np.all((result >= 0) & (result <= 1))
        assert result.sum() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(
            backend.predict(patch.astype(np.float64)), result, atol=1e-6
        )
        with pytest.raises(ValueError, match="2000 values"):
            backend.predict(patch[:50])
    finally:
        backend.close()
    backend.close()  # twice is fine
    with pytest.raises(ModelError, match="closed"):
        backend.predict(patch)


@pytest.mark.parametrize("preferred", ["litert", "numpy"])
def test_predict_from_a_worker_thread(preferred: str, card: ModelCard) -> None:
    """The pipeline's single worker thread gets the same answers as the loading thread."""
    backend = load_backend(
        fixture_model("tiny_cnn"), card, preferred=preferred, num_threads=2
    )
    inputs = random_patches(6, seed=6)
    try:
        here = [backend.predict(patch) for patch in inputs]
        with ThreadPoolExecutor(max_workers=1) as worker:
            there = list(worker.map(backend.predict, inputs))
    finally:
        backend.close()
    np.testing.assert_array_equal(np.stack(here), np.stack(there))


# --- corrupt and missing files ---------------------------------------------------------------


def _valid_bytes() -> bytes:
    """The tiny DS-CNN's bytes."""
    return fixture_model("tiny_dscnn").read_bytes()


CORRUPT_FILES: dict[str, bytes] = {
    "empty": b"",
    "text": b"this is not a model\n" * 20,
    "json": b'{"format_version": 1}',
    "random": np.random.default_rng(7).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
    "identifier_only": b"\x00\x00\x00\x00TFL3",
    "identifier_and_garbage": b"\x10\x00\x00\x00TFL3" + bytes(range(256)) * 4,
    "truncated_half": _valid_bytes()[: len(_valid_bytes()) // 2],
    "truncated_tail": _valid_bytes()[:-64],
}


@pytest.mark.parametrize("preferred", [None, "litert", "numpy"])
@pytest.mark.parametrize("case", sorted(CORRUPT_FILES))
def test_corrupt_model_files(
    case: str, preferred: str | None, tmp_path: Path, card: ModelCard
) -> None:
    """Each corrupt file gives ModelError(invalid_model) with the path, whatever the backend."""
    model_path = tmp_path / f"{case}.tflite"
    model_path.write_bytes(CORRUPT_FILES[case])
    with pytest.raises(ModelError) as caught:
        load_backend(model_path, card, preferred=preferred)
    assert type(caught.value) is ModelError
    assert caught.value.reason == "invalid_model"
    assert str(model_path) in str(caught.value)


def test_empty_file_says_so(tmp_path: Path, card: ModelCard) -> None:
    """An empty file is reported as empty."""
    model_path = tmp_path / "empty.tflite"
    model_path.touch()
    with pytest.raises(ModelError, match="empty"):
        load_backend(model_path, card)


@pytest.mark.parametrize("loader", ["load_backend", "load_model"])
def test_missing_model_file(loader: str, tmp_path: Path, card: ModelCard) -> None:
    """A model that is not there is model_missing (before the card is even looked at)."""
    model_path = tmp_path / "gone.tflite"

    def load() -> object:
        if loader == "load_backend":
            return load_backend(model_path, card)
        return load_model(model_path)

    with pytest.raises(ModelError) as caught:
        load()
    assert caught.value.reason == "model_missing"
    assert "gone.tflite" in str(caught.value)


def test_directory_instead_of_model(tmp_path: Path, card: ModelCard) -> None:
    """A directory where the model should be is an unreadable model, not a crash."""
    with pytest.raises(ModelError) as caught:
        load_backend(tmp_path, card)
    assert caught.value.reason == "invalid_model"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_fuzz_random_bytes(data: bytes) -> None:
    """Random bytes (with or without the TFL3 identifier) only ever raise ModelError."""
    for candidate in (data, data[:4].ljust(4, b"\0") + b"TFL3" + data[4:]):
        with pytest.raises(ModelError):
            NumpyTfliteModel(candidate)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=len(_valid_bytes()) - 1))
def test_fuzz_truncated_model(length: int) -> None:
    """Every truncation of a valid model is a ModelError."""
    with pytest.raises(ModelError):
        NumpyTfliteModel(_valid_bytes()[:length])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(_valid_bytes()) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=6,
    )
)
def test_fuzz_byte_flips(changes: list[tuple[int, int]]) -> None:
    """A model with corrupted bytes either loads and runs, or raises ModelError - nothing else."""
    data = bytearray(_valid_bytes())
    for position, value in changes:
        data[position] = value
    try:
        model = NumpyTfliteModel(bytes(data))
    except ModelError:
        return
    assert (
        model.run(np.zeros(model.input_shape, np.float32)).shape == model.output_shape
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda g: setattr(g.ops[0], "inputs", [0, 9]), "out of range"),
        (lambda g: setattr(g.ops[2], "inputs", [6, 4, 5]), "cycle"),
        (lambda g: setattr(g, "inputs", [0, 3]), "one input"),
        (lambda g: setattr(g.ops[1], "outputs", [0]), "written twice"),
        (lambda g: setattr(g.tensors[4], "shape", [2, 99]), "bytes"),
        (lambda g: setattr(g.tensors[3], "shape", [1, 99]), "reshape|declares"),
        (lambda g: setattr(g, "ops", []), "never written"),
    ],
)
def test_broken_graphs_are_model_errors(mutate: Any, message: str) -> None:
    """Structural damage that survives the flatbuffer layer is caught with a ModelError."""
    graph = squeeze_graph()
    mutate(graph)
    with pytest.raises(ModelError, match=message) as caught:
        NumpyTfliteModel(build_tflite(graph))
    assert type(caught.value) is ModelError


def test_parse_model_reports_the_graph() -> None:
    """parse_model (used before any runtime sees a file) exposes tensors and operators."""
    parsed = parse_model(_valid_bytes())
    assert parsed.tensors[parsed.inputs[0]].shape == (1, 100, 40, 1)
    assert parsed.tensors[parsed.outputs[0]].shape == (1, 2)
    assert set(parsed.operator_names) <= set(supported_ops())
    assert "DEPTHWISE_CONV_2D" in parsed.operator_names


def test_backends_module_exports() -> None:
    """The documented names are importable from engine.backends."""
    for name in ("Backend", "available_backends", "load_backend", "load_model"):
        assert hasattr(backends, name)
