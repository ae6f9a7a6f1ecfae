"""Translations, icons and the quality scale file are complete and consistent with the code."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from awesomeversion import AwesomeVersion
import homeassistant
from homeassistant.const import __version__ as ha_version
from homeassistant.util.yaml import load_yaml_dict
import pytest

from custom_components.cry_detector.binary_sensor import BINARY_SENSORS
from custom_components.cry_detector.config_flow import MODEL_ERRORS, SOURCE_ERRORS
from custom_components.cry_detector.const import (
    EVENT_CRY_STARTED,
    EVENT_CRY_STOPPED,
    ISSUE_GENERIC,
    ISSUE_MODEL,
    ISSUE_REASONS,
    SourceType,
)
from custom_components.cry_detector.event import EVENTS
from custom_components.cry_detector.number import SENSITIVITY
from custom_components.cry_detector.sensor import SENSORS
from custom_components.cry_detector.switch import LISTENING

ROOT = Path(__file__).resolve().parents[2] / "custom_components" / "cry_detector"


def load_json(name: str) -> dict[str, Any]:
    """Read one of the integration's JSON files."""
    data: dict[str, Any] = json.loads((ROOT / name).read_text(encoding="utf-8"))
    return data


STRINGS = load_json("strings.json")
ICONS = load_json("icons.json")
TRANSLATION_KEYS = {
    "binary_sensor": {description.translation_key for description in BINARY_SENSORS},
    "event": {EVENTS.translation_key},
    "number": {SENSITIVITY.translation_key},
    "sensor": {description.translation_key for description in SENSORS},
    "switch": {LISTENING.translation_key},
}


def test_translation_is_a_copy_of_strings() -> None:
    """translations/en.json is identical to strings.json."""
    assert load_json("translations/en.json") == STRINGS


def test_every_error_and_issue_is_translated() -> None:
    """Each error key the flow can show and each repair issue has a message."""
    assert MODEL_ERRORS | SOURCE_ERRORS | {"unknown"} == set(STRINGS["config"]["error"])
    assert ISSUE_REASONS | {ISSUE_GENERIC, ISSUE_MODEL} == set(STRINGS["issues"])
    for issue in STRINGS["issues"].values():
        assert "{name}" in issue["title"] and "{error}" in issue["description"]


def test_every_step_and_menu_option_is_translated() -> None:
    """Every source step has a title; both menus name every source type they can offer."""
    steps = STRINGS["config"]["step"]
    for source in SourceType:
        assert steps[source.value]["title"]
    assert set(steps["reconfigure"]["menu_options"]) == {s.value for s in SourceType}
    assert set(steps["user"]["menu_options"]) == {
        s.value for s in SourceType if s is not SourceType.FILE
    }


@pytest.mark.parametrize("platform", sorted(TRANSLATION_KEYS))
def test_every_entity_has_a_name_and_an_icon(platform: str) -> None:
    """Each entity translation key has a name in strings.json and an icon in icons.json."""
    keys = TRANSLATION_KEYS[platform]
    assert keys == set(STRINGS["entity"][platform])
    assert keys == set(ICONS["entity"][platform])
    for key in keys:
        assert STRINGS["entity"][platform][key]["name"]
        assert ICONS["entity"][platform][key]["default"].startswith("mdi:")


def test_event_types_are_translated() -> None:
    """Both event types have a translated state."""
    states = STRINGS["entity"]["event"]["cry"]["state_attributes"]["event_type"][
        "state"
    ]
    assert set(states) == {EVENT_CRY_STARTED, EVENT_CRY_STOPPED}


@pytest.mark.skipif(
    AwesomeVersion(ha_version) < AwesomeVersion("2026.10.0"),
    reason="quality_scale.yaml follows the rule set of the pinned Home Assistant",
)
def test_quality_scale_lists_every_rule() -> None:
    """Every rule of the quality scale is done or exempt with a reason."""
    reference = (
        Path(homeassistant.__file__).parent / "components/peblar/quality_scale.yaml"
    )
    all_rules = set(load_yaml_dict(reference)["rules"])
    rules = load_yaml_dict(ROOT / "quality_scale.yaml")["rules"]
    assert set(rules) == all_rules
    for name, status in rules.items():
        if status != "done":
            assert status["status"] == "exempt", name
            assert len(status["comment"]) > 20, name


def _engine_reasons() -> set[str]:
    """Every reason the engine can raise: class attributes and reason= keywords, found by AST."""
    reasons: set[str] = set()
    for path in (ROOT / "engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.keyword) and node.arg == "reason") or (
                isinstance(node, ast.Assign)
                and any(
                    isinstance(target, ast.Name) and target.id == "reason"
                    for target in node.targets
                )
            ):
                value = node.value
            else:
                continue
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                reasons.add(value.value)
    return reasons


def test_every_engine_reason_is_a_translated_flow_error() -> None:
    """An engine error can never reach the user untranslated."""
    reasons = _engine_reasons()
    assert {"no_audio", "unsupported_op", "card_mismatch"} <= reasons
    assert reasons <= set(STRINGS["config"]["error"])
