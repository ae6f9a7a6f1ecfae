"""A frozen pretrained audio embedding as a teacher: soft targets for the training windows.

The teacher is aiSFX (Ma & Lerch, ISMIR 2022, MIT licence): a 9-layer CNN trained on sound-effects
libraries, whose weights ship inside the `aisfx` wheel on PyPI (nothing is downloaded at run
time; `pip install --no-deps aisfx==0.1.2`, its pinned dependencies are not needed). Only the
training uses it: a logistic probe on its 512-d embedding, cross-fitted by group, gives each
training window a probability that is mixed into the window's label. The shipped model stays
the small DS-CNN.

Every clip is band-limited to 8 kHz sampling before the teacher hears it, like every cry in the
corpus, so the teacher cannot learn "band-limited means crying" either. The checkpoint is read
without PyTorch by a restricted unpickler that builds nothing but arrays.
"""

from __future__ import annotations

import codecs
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
import hashlib
import importlib
import importlib.util
import itertools
import os
from pathlib import Path
import pickle
from typing import Any
import zipfile

import numpy as np
import numpy.typing as npt

from ._progress import progress_bar
from .audio import resample
from .dataset import Clip
from .metrics import roc_auc
from .windows import (
    WindowPlan,
    WindowSet,
    clip_identity,
    fit_to_patch,
    loud_levels,
    window_levels,
)

FloatArray = npt.NDArray[np.float32]
StateDict = dict[str, npt.NDArray[np.float32]]

# Every clip is resampled to this before the teacher hears it (band-limited like every cry).
TEACHER_INPUT_RATE = 8000
SAMPLE_RATE = 44100  # aiSFX's front end
FFT_LENGTH = 2048
HOP_LENGTH = 1024
MEL_BANDS = 96
BLOCK_FRAMES = 100  # 2.32 s per embedding
SPEC_MAX = 9.457798957824707  # the paper's min-max normalisation (min 0)
EMBEDDING_PREFIX = "embedding_net."
# BatchNorm's tensors, in the order Keras takes them.
NORM_PARTS = ("weight", "bias", "running_mean", "running_var")
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
}
TEACHER_CARD = {
    "name": "aiSFX X-Sequential-CE embedding (Ma & Lerch, ISMIR 2022)",
    "package": "aisfx 0.1.2 (PyPI)",
    "license": "MIT",
    "use": "training only: cross-fitted logistic probe on its 512-d embedding, mixed into the labels",
}
_numpy_scalar = importlib.import_module("numpy._core.multiarray").scalar
# The checkpoint's dataset table holds np.int64s (protocol 2 spells their bytes with _codecs).
_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class TeacherError(ValueError):
    """The teacher's checkpoint is missing or not what it should be."""


def installed_checkpoint() -> Path:
    """The checkpoint inside the installed aisfx package; TeacherError when not installed."""
    spec = importlib.util.find_spec("aisfx")
    if spec is None or not spec.submodule_search_locations:
        raise TeacherError(
            "the aiSFX teacher needs its weights: pip install --no-deps aisfx==0.1.2 "
            "(or set distill.checkpoint to its models/checkpoint.pth)"
        )
    path = (
        Path(next(iter(spec.submodule_search_locations))) / "models" / "checkpoint.pth"
    )
    if not path.is_file():
        raise TeacherError(f"aisfx is installed but {path} is missing")
    return path


def _rebuild_tensor(
    storage: npt.NDArray[Any],
    offset: int,
    size: Sequence[int],
    stride: Sequence[int],
    *_: Any,
) -> npt.NDArray[Any]:
    """torch._utils._rebuild_tensor_v2 for a NumPy storage."""
    if not size:
        return np.array(storage[offset])
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], tuple(size), tuple(s * item for s in stride)
    )
    return np.array(view)


class _CheckpointUnpickler(pickle.Unpickler):
    """Unpickles a torch zip checkpoint into arrays; any other global is refused."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(archive.open(f"{prefix}/data.pkl"))
        self._archive = archive
        self._prefix = prefix

    def find_class(self, module: str, name: str) -> Any:
        """Only what a state dict is made of."""
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        raise TeacherError(
            f"checkpoint refers to {module}.{name}: not a plain state dict"
        )

    def persistent_load(self, pid: Any) -> Any:
        """A tensor storage: the raw bytes of data/<key> in the archive."""
        if not isinstance(pid, tuple) or len(pid) < 3 or pid[0] != "storage":
            raise TeacherError(f"unexpected persistent id {pid!r}")
        dtype, key = pid[1], pid[2]
        if not isinstance(dtype, type) or not issubclass(dtype, np.generic):
            raise TeacherError(f"unsupported storage type {dtype!r}")
        return np.frombuffer(
            self._archive.read(f"{self._prefix}/data/{key}"), dtype=dtype
        )


def load_state_dict(path: Path) -> StateDict:
    """The embedding network's weights from an aiSFX checkpoint (no PyTorch needed)."""
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = archive.namelist()[0].split("/")[0]
            loaded = _CheckpointUnpickler(archive, prefix).load()
    except (
        OSError,
        zipfile.BadZipFile,
        KeyError,
        IndexError,
        EOFError,
        pickle.UnpicklingError,
    ) as err:
        raise TeacherError(f"{path}: not a readable checkpoint: {err}") from err
    weights = loaded[0] if isinstance(loaded, tuple) else loaded
    if not isinstance(weights, dict):
        raise TeacherError(f"{path}: no state dict inside")
    state = {
        key.removeprefix(EMBEDDING_PREFIX): np.asarray(value, dtype=np.float32)
        for key, value in weights.items()
        if key.startswith(EMBEDDING_PREFIX)
    }
    check_state_dict(state)
    return state


def block_count(state: StateDict) -> int:
    """How many conv blocks the state dict has."""
    count = 0
    while f"conv_block{count + 1}.conv1.weight" in state:
        count += 1
    return count


def check_state_dict(state: StateDict) -> None:
    """TeacherError unless the weights form the CNN embedding_model() builds."""
    blocks = block_count(state)
    if blocks < 2:
        raise TeacherError("the checkpoint has no conv_block1..N embedding network")
    channels = 1
    for block in range(1, blocks + 1):
        for conv in (1, 2):
            weight = state[f"conv_block{block}.conv{conv}.weight"]
            if weight.ndim != 4 or weight.shape[1:] != (channels, 3, 3):
                raise TeacherError(
                    f"conv_block{block}.conv{conv}: shape {weight.shape}, wanted (N, {channels}, 3, 3)"
                )
            channels = weight.shape[0]
            for part in NORM_PARTS:
                if state.get(
                    f"conv_block{block}.bn{conv}.{part}", np.zeros(0)
                ).shape != (channels,):
                    raise TeacherError(
                        f"conv_block{block}.bn{conv}.{part} missing or misshapen"
                    )


def embedding_model(state: StateDict) -> Any:
    """The aiSFX EmbeddingNet in Keras: conv blocks, 2x2 max pools but the last, mean-freq, max-time."""
    import keras

    blocks = block_count(state)
    inputs = keras.Input((BLOCK_FRAMES, MEL_BANDS, 1))
    x = inputs
    for block in range(1, blocks + 1):
        for conv in (1, 2):
            weight = state[f"conv_block{block}.conv{conv}.weight"]
            layer = keras.layers.Conv2D(
                weight.shape[0], 3, padding="same", use_bias=False
            )
            x = layer(x)
            layer.set_weights([weight.transpose(2, 3, 1, 0)])
            norm = keras.layers.BatchNormalization(epsilon=1e-5)
            x = norm(x)
            norm.set_weights(
                [state[f"conv_block{block}.bn{conv}.{part}"] for part in NORM_PARTS]
            )
            x = keras.layers.ReLU()(x)
        if block < blocks:
            x = keras.layers.MaxPooling2D(2)(x)
    x = keras.ops.max(keras.ops.mean(x, axis=2), axis=1)
    return keras.Model(inputs, x, name="aisfx_embedding")


def _mel_filters() -> npt.NDArray[np.float64]:
    """librosa.filters.mel(44100, 2048, 96, fmin 0, fmax 22050, htk=True, norm=1): unit-area triangles."""

    def to_mel(hz: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)

    freqs = np.linspace(0, SAMPLE_RATE / 2, FFT_LENGTH // 2 + 1)
    edges = 700.0 * (
        10.0 ** (np.linspace(0, to_mel(SAMPLE_RATE / 2), MEL_BANDS + 2) / 2595.0) - 1.0
    )
    ramps = edges[:, None] - freqs[None, :]
    lower = -ramps[:-2] / np.diff(edges)[:-1, None]
    upper = ramps[2:] / np.diff(edges)[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)


_MEL = _mel_filters()
_HANN = np.hanning(FFT_LENGTH + 1)[:-1]


def spectrogram(samples: npt.ArrayLike, rate: int) -> FloatArray:
    """(frames, 96) teacher input: band-limited to 8 kHz sampling, peak-normalised, log-mel, scaled."""
    audio = resample(
        resample(samples, rate, TEACHER_INPUT_RATE), TEACHER_INPUT_RATE, SAMPLE_RATE
    )
    audio = audio.astype(np.float64) / max(float(np.abs(audio).max(initial=0.0)), 1e-9)
    padded = np.pad(audio, FFT_LENGTH // 2)
    if padded.size < FFT_LENGTH:
        padded = np.pad(padded, (0, FFT_LENGTH - padded.size))
    frames = np.lib.stride_tricks.sliding_window_view(padded, FFT_LENGTH)[::HOP_LENGTH]
    power = np.abs(np.fft.rfft(frames * _HANN, axis=1)) ** 2
    return (np.log10(power @ _MEL.T * 10000.0 + 1.0) / SPEC_MAX).astype(np.float32)


def blocks_for_windows(spec: FloatArray, centres: Sequence[float]) -> FloatArray:
    """(n, 100, 96) teacher blocks centred on the given times (zero outside the clip)."""
    fps = SAMPLE_RATE / HOP_LENGTH
    half = BLOCK_FRAMES // 2
    padded = np.pad(spec, ((BLOCK_FRAMES, BLOCK_FRAMES), (0, 0)))
    starts = [round(centre * fps) - half + BLOCK_FRAMES for centre in centres]
    return np.stack([padded[s : s + BLOCK_FRAMES] for s in starts]).astype(np.float32)


@dataclass
class Teacher:
    """The frozen embedding network and a per-clip cache of its window embeddings."""

    model: Any
    digest: str
    cache_dir: Path | None = None

    @classmethod
    def from_checkpoint(cls, path: Path, cache_dir: Path | None = None) -> Teacher:
        """Load the weights and build the network."""
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        except OSError as err:
            raise TeacherError(
                f"{path}: cannot read the teacher's checkpoint: {err}"
            ) from err
        return cls(embedding_model(load_state_dict(path)), digest, cache_dir)

    @classmethod
    def load(cls, checkpoint: Path | None, cache_dir: Path | None = None) -> Teacher:
        """From the given checkpoint, or the installed aisfx package's when None."""
        return cls.from_checkpoint(checkpoint or installed_checkpoint(), cache_dir)

    def embed(
        self, samples: npt.ArrayLike, rate: int, centres: Sequence[float]
    ) -> FloatArray:
        """(n, 512) embeddings of the teacher blocks centred on the given times."""
        if not len(centres):
            return np.zeros((0, int(self.model.output_shape[-1])), np.float32)
        blocks = blocks_for_windows(spectrogram(samples, rate), centres)
        return np.asarray(
            self.model.predict(blocks[..., None], batch_size=64, verbose=0), np.float32
        )

    def embed_cached(
        self,
        identity: str,
        load: Callable[[], tuple[FloatArray, int]],
        centres: Sequence[float],
    ) -> FloatArray:
        """embed(), through a per-clip cache keyed by the clip, the checkpoint and the times."""
        if self.cache_dir is None:
            return self.embed(*load(), centres)
        key = hashlib.sha256(
            f"{self.digest}:{identity}:{list(centres)}".encode()
        ).hexdigest()[:24]
        path = self.cache_dir / f"{key}.npy"
        if path.is_file():
            try:
                return np.load(path)
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
        embeddings = self.embed(*load(), centres)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(
            f".{path.stem}.{os.getpid()}.tmp.npy"
        )  # runs may share it
        np.save(temporary, embeddings)
        temporary.replace(path)
        return embeddings


@dataclass(frozen=True)
class Probe:
    """Logistic regression on standardised embeddings (class-balanced, L2)."""

    mean: FloatArray
    scale: FloatArray
    weights: npt.NDArray[np.float64]
    bias: float

    @classmethod
    def fit(
        cls,
        features: FloatArray,
        labels: npt.ArrayLike,
        l2: float,
        iterations: int = 25,
    ) -> Probe:
        """Newton's method on sum(balanced weight x log loss) + l2/2 |w|^2."""
        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
        design = np.hstack(((x - mean) / scale, np.ones((x.shape[0], 1))))
        counts = np.array([(y == 0).sum(), (y == 1).sum()], dtype=np.float64)
        if counts.min() == 0:
            raise ValueError("the probe needs windows of both classes")
        sample = np.where(y == 1, y.size / (2 * counts[1]), y.size / (2 * counts[0]))
        penalty = np.full(design.shape[1], l2)
        penalty[-1] = 0.0  # the bias is not shrunk
        theta = np.zeros(design.shape[1])
        for _ in range(iterations):
            p = 1.0 / (1.0 + np.exp(-np.clip(design @ theta, -30, 30)))
            gradient = design.T @ (sample * (p - y)) + penalty * theta
            hessian = (design * (sample * p * (1 - p))[:, None]).T @ design + np.diag(
                penalty
            )
            step = np.linalg.solve(hessian + 1e-9 * np.eye(hessian.shape[0]), gradient)
            theta -= step
            if float(np.abs(step).max()) < 1e-6:
                break
        return cls(
            mean.astype(np.float32),
            scale.astype(np.float32),
            theta[:-1],
            float(theta[-1]),
        )

    def predict(self, features: FloatArray) -> FloatArray:
        """Probability of the positive class."""
        z = (
            (np.asarray(features, np.float64) - self.mean) / self.scale
        ) @ self.weights + self.bias
        return (1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))).astype(np.float32)


def fold_of(group: str, folds: int) -> int:
    """Stable fold of a group for cross-fitting."""
    return int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % folds


def cross_fitted(
    features: FloatArray,
    labels: npt.ArrayLike,
    groups: Sequence[str],
    folds: int,
    l2: float,
) -> FloatArray:
    """Each row's probability from a probe trained on the other folds' groups only."""
    y = np.asarray(labels)
    fold = np.array([fold_of(group, folds) for group in groups])
    out = np.zeros(y.size, np.float32)
    for k in range(folds):
        held = fold == k
        if not held.any():
            continue
        train = ~held & (y >= 0)
        out[held] = Probe.fit(features[train], y[train], l2).predict(features[held])
    return out


def mix_targets(
    labels: npt.ArrayLike, teacher: npt.ArrayLike, weight: float
) -> FloatArray:
    """(1 - weight) x label + weight x teacher probability; NaN teacher keeps the label."""
    hard = np.asarray(labels, dtype=np.float32)
    soft = np.asarray(teacher, dtype=np.float32)
    mixed = (1.0 - weight) * hard + weight * soft
    return np.where(np.isnan(soft), hard, mixed).astype(np.float32)


def window_centres(
    n_windows: int, patch_hop_seconds: float, patch_seconds: float
) -> list[float]:
    """Centre time of each of a clip's model windows."""
    return [i * patch_hop_seconds + patch_seconds / 2 for i in range(n_windows)]


def clip_embeddings(
    clips: Sequence[Clip],
    load: Callable[[Clip], FloatArray],
    teacher: Teacher,
    config: Any,
    progress: bool = False,
) -> Iterator[tuple[Clip, npt.NDArray[np.float64], FloatArray]]:
    """(clip, the level of each of its model windows, the teacher's embedding of each)."""
    with progress_bar(
        enabled=progress, total=len(clips), desc="teacher", unit="clip"
    ) as bar:
        for clip in clips:
            audio = fit_to_patch(load(clip), config)
            levels = window_levels(audio, config)
            centres = window_centres(
                levels.size, config.patch_hop_seconds, config.patch_seconds
            )
            embeddings = teacher.embed_cached(
                clip_identity(clip), lambda a=audio: (a, config.sample_rate), centres
            )
            bar.update(1)
            yield clip, levels, embeddings


def probe_scores(
    train: Sequence[Clip],
    test: Sequence[Clip],
    *,
    load: Callable[[Clip], FloatArray],
    teacher: Teacher,
    config: Any,
    positive_label: str,
    l2: float,
    progress: bool = False,
) -> list[FloatArray]:
    """The teacher alone: a probe fitted on `train`'s windows scores every window of `test`."""
    rows, labels = [], []
    for clip, _, embeddings in clip_embeddings(train, load, teacher, config, progress):
        rows.append(embeddings)
        labels.append(np.full(len(embeddings), int(clip.label == positive_label)))
    probe = Probe.fit(np.concatenate(rows), np.concatenate(labels), l2)
    return [
        probe.predict(embeddings)
        for _, _, embeddings in clip_embeddings(test, load, teacher, config, progress)
    ]


def teacher_targets(
    clips: Sequence[Clip],
    windows: WindowSet,
    plan: WindowPlan,
    load: Callable[[Clip], FloatArray],
    *,
    teacher: Teacher,
    distill: Any,
    progress: bool = False,
) -> tuple[FloatArray, float]:
    """Soft targets for `windows` and the cross-fitted probe's clip ROC-AUC (max over windows).

    `windows` was built from `clips`; windows of other clips (pitched copies) keep their label.
    """
    config = plan.config
    rows, labels, groups = [], [], []
    for clip, levels, embeddings in clip_embeddings(
        clips, load, teacher, config, progress
    ):
        rows.append(embeddings)
        label = np.full(len(embeddings), int(clip.label == plan.positive_label))
        if label.any() and plan.positive_floor_db is not None:  # quiet: not taught
            label[~loud_levels(levels, plan.positive_floor_db)] = -1
        labels.append(label)
        groups.extend([clip.group] * len(embeddings))
    probabilities = cross_fitted(
        np.concatenate(rows), np.concatenate(labels), groups, distill.folds, distill.l2
    )
    starts = np.cumsum([0, *(len(r) for r in rows)])
    teacher_of_window = np.full(len(windows), np.nan, np.float32)
    # Later clips (pitched copies) and a time-shifted copy's extra window keep their label.
    counts = np.diff(starts)
    known = windows.clip_index < len(clips)
    known[known] &= windows.window_index[known] < counts[windows.clip_index[known]]
    teacher_of_window[known] = probabilities[
        starts[windows.clip_index[known]] + windows.window_index[known]
    ]
    auc = roc_auc(
        [float(probabilities[a:b].max()) for a, b in itertools.pairwise(starts)],
        [int(label.max() > 0) for label in labels],
    )
    return mix_targets(windows.labels, teacher_of_window, distill.weight), auc
