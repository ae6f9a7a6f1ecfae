"""Browse and play saved cry clips in Home Assistant's media browser."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus
from pathlib import Path
import re
from typing import Any, override

from aiohttp import web
from homeassistant.components.http.auth import async_sign_path
from homeassistant.components.media_player.const import MediaClass
from homeassistant.components.media_source import (
    BrowseMediaSource,
    MediaSource,
    MediaSourceItem,
    PlayMedia,
    Unresolvable,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.http import HomeAssistantView
from homeassistant.util.hass_dict import HassKey

from .clips import clips_root
from .const import DOMAIN
from .engine.clips import CLIP_SUFFIX, SPECTROGRAM_SUFFIX, read_sidecar

CLIP_URL = "/api/cry_detector/clips"
CLIP_MIME = "audio/flac"
THUMBNAIL_EXPIRY = timedelta(hours=1)
# One identifier part: letters, digits, dash, underscore, dot, never "." or ".." alone.
_PART = re.compile(r"^(?!\.{1,2}$)[\w.-]+$")
_VIEW_REGISTERED: HassKey[bool] = HassKey(f"{DOMAIN}_clip_view")
_CONTENT_TYPES = {CLIP_SUFFIX: CLIP_MIME, SPECTROGRAM_SUFFIX: "image/png"}


def identifier_parts(identifier: str) -> list[str]:
    """Split an identifier (<entry_id>/<day>/<clip>) into its checked parts."""
    parts = [part for part in identifier.split("/") if part] if identifier else []
    if len(parts) > 3 or not all(_PART.match(part) for part in parts):
        raise Unresolvable(f"Unknown cry clip {identifier}")
    return parts


def clip_for_identifier(hass: HomeAssistant, identifier: str) -> Path:
    """Return the clip (without suffix) a full identifier names."""
    parts = identifier_parts(identifier)
    if len(parts) != 3:
        raise Unresolvable(f"Not a cry clip: {identifier}")
    return clips_root(hass).joinpath(*parts)


async def async_get_media_source(hass: HomeAssistant) -> CryClipsMediaSource:
    """Set up the cry clips media source (and the view that serves the files)."""
    if not hass.data.get(_VIEW_REGISTERED):
        hass.http.register_view(ClipFileView(hass))
        hass.data[_VIEW_REGISTERED] = True
    return CryClipsMediaSource(hass)


def _clip_title(clip: Path, sidecar: dict[str, Any]) -> str:
    """A clip's title: time, kind, length and label."""
    time = clip.stem.split("_", 1)[0].replace("-", ":")
    kind = "near miss" if sidecar.get("kind") == "near_miss" else "cry"
    duration = sidecar.get("duration")
    length = f" {duration:.0f} s" if isinstance(duration, (int, float)) else ""
    label = sidecar.get("label")
    return f"{time} {kind}{length}" + (f" ({label})" if label else "")


class CryClipsMediaSource(MediaSource):
    """Saved clips: entries, then days, then clips (playable, with a spectrogram)."""

    name = "Cry Detector"

    def __init__(self, hass: HomeAssistant) -> None:
        """Serve the clips under the media folder."""
        super().__init__(DOMAIN)
        self.hass = hass

    @override
    async def async_resolve_media(self, item: MediaSourceItem) -> PlayMedia:
        """Return the URL of a clip's audio."""
        clip = clip_for_identifier(self.hass, item.identifier)
        audio = clip.with_suffix(CLIP_SUFFIX)
        if not await self.hass.async_add_executor_job(audio.is_file):
            raise Unresolvable(f"Cry clip {item.identifier} no longer exists")
        return PlayMedia(f"{CLIP_URL}/{item.identifier}{CLIP_SUFFIX}", CLIP_MIME)

    @override
    async def async_browse_media(self, item: MediaSourceItem) -> BrowseMediaSource:
        """List entries, an entry's days, or a day's clips."""
        parts = identifier_parts(item.identifier)
        if len(parts) == 3:
            raise Unresolvable("A clip cannot be browsed")
        folder = clips_root(self.hass).joinpath(*parts)
        listing = await self.hass.async_add_executor_job(self._list, folder, parts)
        for child in listing:
            # Signed here, on the event loop, with the asking user's token.
            if child.thumbnail:
                child.thumbnail = async_sign_path(
                    self.hass, child.thumbnail, THUMBNAIL_EXPIRY
                )
        title = self.name or DOMAIN
        if len(parts) >= 1:
            title = self._entry_title(parts[0])
        if len(parts) == 2:
            title = f"{title} {parts[1]}"
        return BrowseMediaSource(
            domain=DOMAIN,
            identifier="/".join(parts) or None,
            media_class=MediaClass.DIRECTORY,
            media_content_type="",
            title=title,
            can_play=False,
            can_expand=True,
            children=listing,
            children_media_class=(
                MediaClass.MUSIC if len(parts) == 2 else MediaClass.DIRECTORY
            ),
        )

    def _entry_title(self, entry_id: str) -> str:
        """The title of the entry a folder belongs to (its id once removed)."""
        entry = self.hass.config_entries.async_get_entry(entry_id)
        return entry.title if entry is not None else entry_id

    def _list(self, folder: Path, parts: list[str]) -> list[BrowseMediaSource]:
        """List a folder's children (blocking): newest first."""
        if not folder.is_dir():
            if parts:
                raise Unresolvable(f"No cry clips in {'/'.join(parts)}")
            return []
        if len(parts) == 2:
            clips = sorted(folder.glob(f"*{CLIP_SUFFIX}"), reverse=True)
            return [self._clip_item(clip, parts) for clip in clips]
        return [
            self._folder_item(child.name, parts)
            for child in sorted(folder.iterdir(), reverse=True)
            if child.is_dir() and _PART.match(child.name)
        ]

    def _folder_item(self, name: str, parts: list[str]) -> BrowseMediaSource:
        """An entry or day folder."""
        return BrowseMediaSource(
            domain=DOMAIN,
            identifier="/".join([*parts, name]),
            media_class=MediaClass.DIRECTORY,
            media_content_type="",
            title=name if parts else self._entry_title(name),
            can_play=False,
            can_expand=True,
        )

    def _clip_item(self, clip: Path, parts: list[str]) -> BrowseMediaSource:
        """A playable clip with its spectrogram as thumbnail."""
        identifier = "/".join([*parts, clip.stem])
        thumbnail = None
        if clip.with_suffix(SPECTROGRAM_SUFFIX).is_file():
            thumbnail = f"{CLIP_URL}/{identifier}{SPECTROGRAM_SUFFIX}"
        return BrowseMediaSource(
            domain=DOMAIN,
            identifier=identifier,
            media_class=MediaClass.MUSIC,
            media_content_type=CLIP_MIME,
            title=_clip_title(clip, read_sidecar(clip)),
            can_play=True,
            can_expand=False,
            thumbnail=thumbnail,
        )


class ClipFileView(HomeAssistantView):
    """Serve a clip's audio or spectrogram (authenticated, or by a signed URL)."""

    url = CLIP_URL + "/{entry_id}/{day}/{name}"
    name = "api:cry_detector:clips"
    requires_auth = True

    def __init__(self, hass: HomeAssistant) -> None:
        """Serve from the clips folder."""
        self.hass = hass

    async def get(
        self, request: web.Request, entry_id: str, day: str, name: str
    ) -> web.StreamResponse:
        """Return the file, or 404."""
        path = Path(name)
        content_type = _CONTENT_TYPES.get(path.suffix)
        if content_type is None or not all(
            _PART.match(part) for part in (entry_id, day, name)
        ):
            return web.Response(status=HTTPStatus.NOT_FOUND)
        file = clips_root(self.hass) / entry_id / day / name
        if not await self.hass.async_add_executor_job(file.is_file):
            return web.Response(status=HTTPStatus.NOT_FOUND)
        return web.FileResponse(file, headers={"Content-Type": content_type})
