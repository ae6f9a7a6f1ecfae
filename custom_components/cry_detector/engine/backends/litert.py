"""LiteRT backends: `ai_edge_litert` or the older `tflite_runtime`, same Interpreter API."""

from __future__ import annotations

import importlib
import threading
from typing import Any, Final

import numpy as np
import numpy.typing as npt

# Parent-relative on purpose: training loads engine/ by path as another top-level package.
from ..errors import ModelError

__all__ = [
    "LITERT",
    "RUNTIME_MODULES",
    "TFLITE_RUNTIME",
    "LiteRtBackend",
    "import_interpreter",
]

LITERT: Final = "litert"
TFLITE_RUNTIME: Final = "tflite_runtime"
# Backend name -> (top-level package, module holding Interpreter).
RUNTIME_MODULES: Final[dict[str, tuple[str, str]]] = {
    LITERT: ("ai_edge_litert", "ai_edge_litert.interpreter"),
    TFLITE_RUNTIME: ("tflite_runtime", "tflite_runtime.interpreter"),
}


def import_interpreter(name: str) -> Any:
    """Return the Interpreter class of a LiteRT runtime; ImportError/OSError when unusable."""
    package, module = RUNTIME_MODULES[name]
    # Import the package first: a cached submodule must not hide a package marked missing.
    importlib.import_module(package)
    return importlib.import_module(module).Interpreter


class LiteRtBackend:
    """Runs a model with a LiteRT Interpreter; one lock serialises set/invoke/get."""

    def __init__(self, name: str, model_bytes: bytes, num_threads: int = 1) -> None:
        """Create the interpreter; ModelError when LiteRT refuses the model."""
        self.name = name
        interpreter_class = import_interpreter(name)
        try:
            interpreter = interpreter_class(
                model_content=model_bytes, num_threads=num_threads
            )
            interpreter.allocate_tensors()
            # Details decode tensor names: corrupt ones raise UnicodeDecodeError here.
            inputs = interpreter.get_input_details()
            outputs = interpreter.get_output_details()
        except (ValueError, RuntimeError, TypeError, KeyError, IndexError) as err:
            raise ModelError(f"{name} cannot load the model: {err}") from err
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"the model must have one input and one output, has {len(inputs)} and {len(outputs)}"
            )
        self._interpreter: Any = interpreter
        self._input_index = int(inputs[0]["index"])
        self._output_index = int(outputs[0]["index"])
        self.input_shape = tuple(int(dim) for dim in inputs[0]["shape"])
        self.output_shape = tuple(int(dim) for dim in outputs[0]["shape"])
        self.input_dtype = np.dtype(inputs[0]["dtype"]).name
        self.output_dtype = np.dtype(outputs[0]["dtype"]).name
        self._lock = threading.Lock()

    def predict(self, patch: np.ndarray) -> npt.NDArray[np.float32]:
        """Run one (patch_frames, mel_bands) patch; return the flat output probabilities."""
        values = np.asarray(patch, dtype=np.float32)
        if values.size != int(np.prod(self.input_shape)):
            raise ValueError(
                f"patch has {values.size} values, the model takes {list(self.input_shape)}"
            )
        with self._lock:
            interpreter = self._interpreter
            if interpreter is None:
                raise ModelError(f"the {self.name} backend is closed")
            try:
                interpreter.set_tensor(
                    self._input_index, values.reshape(self.input_shape)
                )
                interpreter.invoke()
                output = interpreter.get_tensor(self._output_index)
            except (ValueError, RuntimeError) as err:
                raise ModelError(f"{self.name} inference failed: {err}") from err
        return np.array(output, dtype=np.float32).reshape(-1)

    def close(self) -> None:
        """Release the interpreter (and the memory of its tensors)."""
        with self._lock:
            self._interpreter = None
