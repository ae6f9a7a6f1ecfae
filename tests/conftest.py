"""Load the Home Assistant test harness (pytest-homeassistant-custom-component) for every test."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytest_homeassistant_custom_component"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that compare syrupy snapshots, so the oldest-HA run can leave them out."""
    for item in items:
        if "snapshot" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.snapshot)
