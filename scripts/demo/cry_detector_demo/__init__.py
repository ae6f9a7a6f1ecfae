"""Demo helper for scripts/develop: lets the REST API start Cry Detector's hidden file flow.

Home Assistant's REST API starts config flows with the source "user" only, and Cry Detector's user
menu offers real audio sources only. The demo stream is an audio file, whose step is hidden (flow
source "file"). This endpoint starts that flow and returns its id; scripts/onboard.py then walks it
through the standard `/api/config/config_entries/flow/<id>` API, so the entry is made, validated
and probed by the integration's own config flow. Only scripts/develop loads this helper.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from homeassistant.components.http.decorators import require_admin
from homeassistant.core import HomeAssistant
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.http import KEY_HASS, HomeAssistantView
from homeassistant.helpers.typing import ConfigType

DOMAIN = "cry_detector_demo"
CONFIG_SCHEMA = cv.empty_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the endpoint."""
    hass.http.register_view(FileFlowView())
    return True


class FileFlowView(HomeAssistantView):
    """POST: start a Cry Detector config flow with the source "file" (admins only)."""

    url = "/api/cry_detector_demo/file_flow"
    name = "api:cry_detector_demo:file_flow"

    @require_admin
    async def post(self, request: web.Request) -> web.Response:
        """Start the flow; answer its id, type and step."""
        hass = request.app[KEY_HASS]
        result = await hass.config_entries.flow.async_init(
            "cry_detector", context={"source": "file"}
        )
        answer: dict[str, Any] = {
            "flow_id": result.get("flow_id"),
            "type": result["type"],
            "step_id": result.get("step_id"),
        }
        return self.json(answer)
