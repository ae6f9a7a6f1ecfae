"""Validate manifest.json and hacs.json the way hassfest and the HACS action would (both need a network)."""

from __future__ import annotations

import json
from pathlib import Path
import re
from typing import Any

from awesomeversion import AwesomeVersion
import pytest

REPO = Path(__file__).parents[2]
INTEGRATION = REPO / "custom_components" / "cry_detector"

MANIFEST_REQUIRED = {
    "domain",
    "name",
    "codeowners",
    "config_flow",
    "documentation",
    "integration_type",
    "iot_class",
    "issue_tracker",
    "requirements",
    "version",
}
MANIFEST_ALLOWED = MANIFEST_REQUIRED | {
    "after_dependencies",
    "dependencies",
    "loggers",
    "quality_scale",
    "single_config_entry",
}
HACS_REQUIRED = {"name"}
HACS_ALLOWED = {
    "name",
    "content_in_root",
    "zip_release",
    "filename",
    "hide_default_branch",
    "country",
    "homeassistant",
    "hacs",
    "persistent_directory",
    "render_readme",
}
IOT_CLASSES = {
    "assumed_state",
    "calculated",
    "cloud_polling",
    "cloud_push",
    "local_polling",
    "local_push",
}
PINNED_REQUIREMENT = re.compile(r"^[A-Za-z0-9_.\-\[\]]+==[0-9][A-Za-z0-9.+\-]*$")


def manifest_problems(manifest: dict[str, Any], folder_name: str) -> list[str]:
    """Return hassfest-style problems of a custom integration manifest."""
    problems = [
        f"missing key {key}" for key in sorted(MANIFEST_REQUIRED - manifest.keys())
    ]
    problems += [
        f"unknown key {key}" for key in sorted(manifest.keys() - MANIFEST_ALLOWED)
    ]
    keys = list(manifest)
    if keys[:2] != ["domain", "name"] or keys[2:] != sorted(keys[2:]):
        problems.append("keys must be domain, name, then alphabetical")
    if manifest.get("domain") != folder_name:
        problems.append("domain must equal the folder name")
    if manifest.get("iot_class") not in IOT_CLASSES:
        problems.append("unknown iot_class")
    if not AwesomeVersion(str(manifest.get("version", ""))).valid:
        problems.append("version is not a valid version")
    problems += [
        f"requirement not pinned: {req}"
        for req in manifest.get("requirements", [])
        if not PINNED_REQUIREMENT.match(req)
    ]
    return problems


def hacs_problems(hacs: dict[str, Any]) -> list[str]:
    """Return the HACS action's problems with hacs.json."""
    problems = [f"missing key {key}" for key in sorted(HACS_REQUIRED - hacs.keys())]
    problems += [f"unknown key {key}" for key in sorted(hacs.keys() - HACS_ALLOWED)]
    if "homeassistant" in hacs and not AwesomeVersion(hacs["homeassistant"]).valid:
        problems.append("homeassistant is not a valid version")
    return problems


def test_manifest_is_valid() -> None:
    """The shipped manifest passes every check."""
    manifest = json.loads(
        (INTEGRATION / "manifest.json").read_text(), object_pairs_hook=dict
    )
    assert manifest_problems(manifest, INTEGRATION.name) == []
    assert manifest["config_flow"] is True
    assert manifest["integration_type"] == "device"
    assert manifest["iot_class"] == "local_push"


def test_hacs_json_is_valid() -> None:
    """The shipped hacs.json passes every check and names a minimum HA version."""
    hacs = json.loads((REPO / "hacs.json").read_text())
    assert hacs_problems(hacs) == []
    assert "homeassistant" in hacs


def test_brand_icon_present() -> None:
    """HA 2026.2+ serves brand/icon.png from the integration folder."""
    icon = (INTEGRATION / "brand" / "icon.png").read_bytes()
    assert icon.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        (
            {"name": "x", "domain": "cry_detector"},
            "keys must be domain, name, then alphabetical",
        ),
        (
            {"domain": "cry_detector", "name": "x", "zeta": 1, "alpha": 2},
            "unknown key zeta",
        ),
        ({"domain": "other", "name": "x"}, "domain must equal the folder name"),
        (
            {"domain": "cry_detector", "name": "x", "requirements": ["numpy>=1"]},
            "requirement not pinned: numpy>=1",
        ),
    ],
)
def test_manifest_checks_catch_mistakes(manifest: dict[str, Any], problem: str) -> None:
    """A broken key order, unknown key, wrong domain or loose pin is reported."""
    assert problem in manifest_problems(manifest, "cry_detector")


def test_hacs_checks_catch_unknown_key() -> None:
    """An unknown hacs.json key is reported."""
    assert hacs_problems({"name": "x", "iot_class": "y"}) == ["unknown key iot_class"]
