"""Actions: label a saved clip (or delete it), delete every clip."""

from __future__ import annotations

from pathlib import Path
import shutil

from homeassistant.core import HomeAssistant, ServiceCall, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv

try:
    import probatio as vol
except ImportError:  # Home Assistant before 2026.10 validates with voluptuous
    import voluptuous as vol  # type: ignore[no-redef]

from .clips import clips_root
from .const import (
    ATTR_CLIP,
    ATTR_LABEL,
    DOMAIN,
    LABEL_DELETE,
    SERVICE_DELETE_ALL_CLIPS,
    SERVICE_LABEL_CLIP,
)
from .engine.clips import CLIP_SUFFIX, LABELS, delete_clip, set_label

MEDIA_SOURCE_PREFIX = f"media-source://{DOMAIN}/"

LABEL_CLIP_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_CLIP): cv.string,
        vol.Required(ATTR_LABEL): vol.In([*LABELS, LABEL_DELETE]),
    }
)


def _resolve_clip(hass: HomeAssistant, clip: str) -> Path:
    """Return the clip (without suffix) a media content ID or file path names (blocking)."""
    root = clips_root(hass).resolve()
    if clip.startswith(MEDIA_SOURCE_PREFIX):
        path = root / clip.removeprefix(MEDIA_SOURCE_PREFIX)
    else:
        path = Path(clip)
    path = path.with_suffix(CLIP_SUFFIX).resolve()
    if not path.is_relative_to(root):
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="clip_outside_folder",
            translation_placeholders={"clip": clip},
        )
    if not path.is_file():
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="clip_not_found",
            translation_placeholders={"clip": clip},
        )
    return path.with_suffix("")


def _label_clip(hass: HomeAssistant, clip: str, label: str) -> None:
    """Label or delete a clip (blocking)."""
    path = _resolve_clip(hass, clip)
    try:
        if label == LABEL_DELETE:
            delete_clip(path)
        else:
            set_label(path, label)
    except OSError as err:
        raise _clips_unavailable(err) from err


def _clips_unavailable(err: OSError) -> HomeAssistantError:
    """The translated error for a clips folder that cannot be changed."""
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key="clips_unavailable",
        translation_placeholders={"error": str(err)},
    )


def _delete_all_clips(hass: HomeAssistant) -> None:
    """Delete the whole clips folder (blocking)."""
    try:
        shutil.rmtree(clips_root(hass))
    except FileNotFoundError:
        pass
    except OSError as err:
        raise _clips_unavailable(err) from err


async def _async_label_clip(call: ServiceCall) -> None:
    """Handle cry_detector.label_clip."""
    hass = call.hass
    await hass.async_add_executor_job(
        _label_clip, hass, call.data[ATTR_CLIP], call.data[ATTR_LABEL]
    )


async def _async_delete_all_clips(call: ServiceCall) -> None:
    """Handle cry_detector.delete_all_clips."""
    await call.hass.async_add_executor_job(_delete_all_clips, call.hass)


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the clip actions."""
    hass.services.async_register(
        DOMAIN, SERVICE_LABEL_CLIP, _async_label_clip, schema=LABEL_CLIP_SCHEMA
    )
    hass.services.async_register(
        DOMAIN, SERVICE_DELETE_ALL_CLIPS, _async_delete_all_clips
    )
