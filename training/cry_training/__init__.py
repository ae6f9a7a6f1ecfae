"""Train, export and evaluate the Cry Detector model (TensorFlow/Keras, CPU).

The engine's feature, card, tracker and backend code is loaded by path (see `_engine`), so the
features a model is trained on are the features the integration computes.
"""

from __future__ import annotations

__version__ = "0.1.0"
