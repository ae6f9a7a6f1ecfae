"""Fuzzing the file loaders end to end (card files, .tflite files through load_backend) with time bounds.

test_card.py and test_backends.py fuzz the parsers in memory; these go through the public loaders
a user's files reach (load_card, load_backend + predict on both backends). Each example must
finish quickly, and each test has its own pytest-timeout so a hang fails that test instead of
stalling the suite (thread method: a hang inside native LiteRT code cannot be interrupted any
other way).
"""

from __future__ import annotations

import json
from pathlib import Path
import time

from hypothesis import HealthCheck, given, settings, strategies as st
import numpy as np
import pytest

from custom_components.cry_detector.engine.backends import (
    available_backends,
    load_backend,
)
from custom_components.cry_detector.engine.card import ModelCard, load_card
from custom_components.cry_detector.engine.errors import ModelCardError, ModelError

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
MODEL = MODELS / "energy_cry.tflite"
CARD_TEXT = MODEL.with_suffix(".json").read_text(encoding="utf-8")
MODEL_BYTES = MODEL.read_bytes()
# Generous for a shared 2-core machine; a real hang or blow-up is orders of magnitude slower.
EXAMPLE_SECONDS = 2.0
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def timed_card(path: Path) -> ModelCard | ModelCardError:
    """Load a card; return it or its ModelCardError (anything else propagates); bounded time."""
    began = time.monotonic()
    try:
        return load_card(path)
    except ModelCardError as err:
        return err
    finally:
        assert time.monotonic() - began < EXAMPLE_SECONDS


@pytest.mark.timeout(60)
@FUZZ
@given(data=st.binary(max_size=4096) | st.text(max_size=1024).map(str.encode))
def test_card_file_with_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.json"
    path.write_bytes(data)
    assert isinstance(timed_card(path), ModelCardError)


@pytest.mark.timeout(60)
@FUZZ
@given(
    changes=st.lists(
        st.tuples(
            st.integers(0, len(CARD_TEXT) - 1),
            st.sampled_from(list('{}[]":,0123456789.-eE tfn\\\x00é')),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_card_file_with_damaged_text(
    tmp_path: Path, changes: list[tuple[int, str]]
) -> None:
    """A real card with a few characters replaced: loads (and round-trips) or ModelCardError."""
    text = list(CARD_TEXT)
    for position, char in changes:
        text[position] = char
    path = tmp_path / "fuzz.json"
    path.write_text("".join(text), encoding="utf-8")
    result = timed_card(path)
    if isinstance(result, ModelCard):
        assert ModelCard.from_dict(result.to_dict()) == result


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "text",
    [
        "[" * 200_000 + "]" * 200_000,
        '{"a": ' * 100_000 + "1" + "}" * 100_000,
        '{"format_version": ' + "9" * 100_000 + "}",
        '{"threshold": 1e999999, "format_version": 1}',
        "\ufeff" + CARD_TEXT,
        CARD_TEXT.replace('"threshold": 0.5', '"threshold": NaN'),
        CARD_TEXT.replace("[\n    1,\n    100,", "[\n    1,\n    1" + "0" * 50 + ","),
    ],
    ids=[
        "deep-array",
        "deep-object",
        "huge-int",
        "huge-float",
        "bom",
        "nan",
        "huge-shape",
    ],
)
def test_pathological_card_files(tmp_path: Path, text: str) -> None:
    path = tmp_path / "card.json"
    path.write_text(text, encoding="utf-8")
    assert isinstance(timed_card(path), ModelCardError)


@pytest.fixture(scope="module")
def card() -> ModelCard:
    """The energy model's card."""
    return load_card(MODEL.with_suffix(".json"))


@pytest.mark.timeout(120, method="thread")
@pytest.mark.parametrize("preferred", available_backends())
@FUZZ
@given(
    changes=st.lists(
        st.tuples(st.integers(0, len(MODEL_BYTES) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=8,
    )
)
def test_damaged_model_file_loads_and_runs_or_is_a_model_error(
    tmp_path: Path, card: ModelCard, preferred: str, changes: list[tuple[int, int]]
) -> None:
    """Byte damage never crashes, hangs or escapes as anything but ModelError/ModelCardError."""
    data = bytearray(MODEL_BYTES)
    for position, value in changes:
        data[position] = value
    path = tmp_path / "fuzz.tflite"
    path.write_bytes(bytes(data))
    began = time.monotonic()
    try:
        backend = load_backend(path, card, preferred=preferred)
    except (ModelError, ModelCardError):
        assert time.monotonic() - began < EXAMPLE_SECONDS
        return
    try:
        output = backend.predict(np.zeros((100, 40), np.float32))
        assert output.shape == (2,)
    except ModelError:
        pass
    finally:
        backend.close()
    assert time.monotonic() - began < EXAMPLE_SECONDS


def test_the_fixture_card_is_what_the_fuzzers_damage() -> None:
    """Sanity: the undamaged inputs load (so the fuzzers start from valid files)."""
    assert json.loads(CARD_TEXT)["input_shape"] == [1, 100, 40, 1]
    assert load_card(MODEL.with_suffix(".json")).name == "test-energy_cry"
