"""Tests for the model card: strict validation with clear errors, round trips, fuzzing."""

from __future__ import annotations

import copy
from dataclasses import replace
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.cry_detector.engine.card import (
    FORMAT_VERSION,
    ModelCard,
    card_path_for,
    load_card,
    write_card,
)
from custom_components.cry_detector.engine.errors import ModelCardError
from custom_components.cry_detector.engine.features import FeatureConfig
from custom_components.cry_detector.engine.tracker import TrackerConfig


def valid_card_dict() -> dict[str, Any]:
    """The example card from docs/architecture.md."""
    return {
        "format_version": 1,
        "name": "cry-detector-default",
        "version": "1.0.0",
        "created": "2026-11-23",
        "features": FeatureConfig().to_dict(),
        "input_shape": [1, 100, 40, 1],
        "labels": ["not_crying", "crying"],
        "positive_label": "crying",
        "threshold": 0.5,
        "tracker": {
            "min_cry_seconds": 2.0,
            "hold_seconds": 4.0,
            "cooldown_seconds": 0.0,
        },
        "training": {
            "data_sources": [{"name": "corpus", "license": "CC-BY-4.0", "clips": 10}],
            "config": {},
        },
        "metrics": {"f1": 0.9},
        "limitations": ["trained on 8 kHz audio"],
    }


def write_json(path: Path, data: object) -> Path:
    """Write any JSON value to a file."""
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_loads_the_documented_example(tmp_path: Path) -> None:
    """The architecture example loads with typed fields and the positive index."""
    card = load_card(write_json(tmp_path / "default.json", valid_card_dict()))
    assert card.format_version == FORMAT_VERSION == 1
    assert card.features == FeatureConfig()
    assert card.input_shape == (1, 100, 40, 1)
    assert card.labels == ("not_crying", "crying")
    assert card.positive_index == 1
    assert card.tracker == {
        "min_cry_seconds": 2.0,
        "hold_seconds": 4.0,
        "cooldown_seconds": 0.0,
    }
    assert card.limitations == ("trained on 8 kHz audio",)


def test_round_trip_dict_and_file(tmp_path: Path) -> None:
    """to_dict/from_dict and write_card/load_card are lossless."""
    card = ModelCard.from_dict(valid_card_dict())
    assert card.to_dict() == valid_card_dict()
    assert ModelCard.from_dict(card.to_dict()) == card
    path = tmp_path / "model.json"
    write_card(card, path)
    assert load_card(path) == card
    assert json.loads(path.read_text(encoding="utf-8")) == valid_card_dict()
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]  # no temp file left


def test_write_card_refuses_what_it_could_not_read_back(tmp_path: Path) -> None:
    """A card with non-JSON training data is rejected before anything is written."""
    card = replace(
        ModelCard.from_dict(valid_card_dict()), metrics={"auc": float("nan")}
    )
    with pytest.raises(ModelCardError, match=r"model\.json"):
        write_card(card, tmp_path / "model.json")
    assert not (tmp_path / "model.json").exists()


def test_card_path_for() -> None:
    """X.tflite -> X.json beside it."""
    assert card_path_for(Path("/m/default.tflite")) == Path("/m/default.json")
    assert card_path_for(Path("models/v2.model.tflite")) == Path("models/v2.model.json")


def test_tracker_config_from_card() -> None:
    """The card's threshold and tracker defaults become a TrackerConfig; overrides win."""
    card = ModelCard.from_dict(
        valid_card_dict() | {"threshold": 0.6, "tracker": {"smoothing_windows": 3}}
    )
    assert card.tracker_config() == TrackerConfig(threshold=0.6, smoothing_windows=3)
    assert card.tracker_config(hold_seconds=1.0).hold_seconds == 1.0


def test_missing_file(tmp_path: Path) -> None:
    """A missing card has its own reason and names the file."""
    with pytest.raises(ModelCardError, match=r"nothere\.json") as caught:
        load_card(tmp_path / "nothere.json")
    assert caught.value.reason == "card_missing"


@pytest.mark.parametrize("text", ["{", "", "{'a': 1}", "[1,", "\x00"])
def test_invalid_json(tmp_path: Path, text: str) -> None:
    """Broken JSON is invalid_card and names the file."""
    path = tmp_path / "broken.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ModelCardError, match=r"broken\.json.*not valid JSON") as caught:
        load_card(path)
    assert caught.value.reason == "invalid_card"


def test_not_utf8(tmp_path: Path) -> None:
    """Binary garbage is invalid_card."""
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ModelCardError, match=r"binary\.json") as caught:
        load_card(path)
    assert caught.value.reason == "invalid_card"


@pytest.mark.parametrize("value", [[], "card", 3, None])
def test_json_that_is_not_an_object(tmp_path: Path, value: object) -> None:
    """Valid JSON that is not an object is rejected."""
    with pytest.raises(
        ModelCardError, match=r"list\.json: the card must be a JSON object"
    ):
        load_card(write_json(tmp_path / "list.json", value))


def mutated(path: str, value: object) -> dict[str, Any]:
    """The valid card with one (possibly nested, dotted) field replaced."""
    data = copy.deepcopy(valid_card_dict())
    *parents, leaf = path.split(".")
    target = data
    for parent in parents:
        target = target[parent]
    target[leaf] = value
    return data


BAD_FIELDS = [
    ("format_version", 2, "format_version"),
    ("format_version", "1", "format_version"),
    ("format_version", True, "format_version"),
    ("name", "", "name"),
    ("name", 5, "name"),
    ("version", None, "version"),
    ("created", ["2026"], "created"),
    ("features", "log_mel", "features"),
    (
        "features.mel_bands",
        64,
        "input_shape",
    ),  # features fine, input shape now disagrees
    ("features.hop_length", -1, "features.hop_length"),
    ("features.extra", 1, "features"),
    ("input_shape", [1, 100, 40], "input_shape"),
    ("input_shape", [1, 40, 100, 1], "input_shape"),
    ("input_shape", [1, 100.0, 40, 1], "input_shape"),
    ("input_shape", "1x100x40x1", "input_shape"),
    ("labels", ["crying", "crying"], "labels"),
    ("labels", ["crying"], "labels"),
    ("labels", ["not_crying", 1], "labels"),
    ("labels", ["not_crying", "screaming"], "positive_label"),
    ("positive_label", "baby", "positive_label"),
    ("positive_label", 1, "positive_label"),
    ("threshold", 0.0, "threshold"),
    ("threshold", 1.0, "threshold"),
    ("threshold", 1.5, "threshold"),
    ("threshold", "0.5", "threshold"),
    ("threshold", None, "threshold"),
    ("threshold", False, "threshold"),
    ("threshold", 10**400, "threshold"),
    ("features.sample_rate", 10**400, "features.sample_rate"),
    ("tracker", [], "tracker"),
    ("tracker.hold_seconds", -1.0, "tracker.hold_seconds"),
    ("tracker.hold_seconds", "4", "tracker.hold_seconds"),
    ("tracker.threshold", 0.5, "tracker"),
    ("tracker.typo_seconds", 1.0, "typo_seconds"),
    ("training", "none", "training"),
    ("metrics", [0.9], "metrics"),
    ("limitations", "none", "limitations"),
    ("limitations", [1], "limitations"),
]


@pytest.mark.parametrize(
    ("field", "value", "named"),
    BAD_FIELDS,
    ids=[f"{field}-{index}" for index, (field, _, _) in enumerate(BAD_FIELDS)],
)
def test_each_bad_field_has_its_own_error(
    tmp_path: Path, field: str, value: object, named: str
) -> None:
    """Every mismatch raises ModelCardError naming the file and the field."""
    path = write_json(tmp_path / "card.json", mutated(field, value))
    with pytest.raises(ModelCardError) as caught:
        load_card(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert named in message
    assert caught.value.reason == "invalid_card"


def test_threshold_nan_from_json(tmp_path: Path) -> None:
    """Python's json reads NaN; the card still rejects it."""
    path = tmp_path / "nan.json"
    path.write_text(
        json.dumps(valid_card_dict()).replace('"threshold": 0.5', '"threshold": NaN')
    )
    with pytest.raises(ModelCardError, match="threshold"):
        load_card(path)


@pytest.mark.parametrize("field", sorted(valid_card_dict()))
def test_every_missing_field_is_named(field: str) -> None:
    """Leaving out any field names it."""
    data = valid_card_dict()
    del data[field]
    with pytest.raises(
        ModelCardError, match=rf"x\.json: missing field\(s\) \['{field}'\]"
    ):
        ModelCard.from_dict(data, source="x.json")


def test_unknown_top_level_field_is_named() -> None:
    """A typo at the top level is not silently ignored."""
    with pytest.raises(ModelCardError, match="thresold"):
        ModelCard.from_dict(valid_card_dict() | {"thresold": 0.5})


def test_constructor_validates_too() -> None:
    """Building a card in code (training) gets the same checks."""
    good = ModelCard.from_dict(valid_card_dict())
    with pytest.raises(ModelCardError, match="positive_label"):
        replace(good, positive_label="nope")
    with pytest.raises(ModelCardError, match="input_shape"):
        replace(good, features=replace(good.features, patch_frames=50))


JSON_LEAVES = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(value=JSON_VALUES)
def test_fuzz_random_json_only_raises_model_card_error(value: object) -> None:
    """Arbitrary JSON never escapes as anything but ModelCardError."""
    with pytest.raises(ModelCardError):
        ModelCard.from_dict(value)


def outcome(data: object) -> ModelCard | ModelCardError:
    """The card, or the ModelCardError it raised (anything else propagates)."""
    try:
        return ModelCard.from_dict(data)
    except ModelCardError as err:
        return err


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(sorted(valid_card_dict())), value=JSON_VALUES)
def test_fuzz_one_field_of_a_valid_card(field: str, value: object) -> None:
    """Replacing one field by random JSON either still loads or raises ModelCardError naming it."""
    result = outcome(valid_card_dict() | {field: value})
    if isinstance(result, ModelCardError):
        assert any(
            name in str(result) for name in (field, "input_shape", "positive_label")
        )
    else:
        assert ModelCard.from_dict(result.to_dict()) == result


@settings(max_examples=100, deadline=None)
@given(field=st.sampled_from(sorted(FeatureConfig().to_dict())), value=JSON_VALUES)
def test_fuzz_one_feature_field(field: str, value: object) -> None:
    """Random values inside `features` only raise ModelCardError naming the field."""
    data = valid_card_dict()
    data["features"][field] = value
    result = outcome(data)
    if isinstance(result, ModelCardError):
        assert f"features.{field}" in str(result) or "input_shape" in str(result)
    else:
        assert result.features.to_dict()[field] == value
