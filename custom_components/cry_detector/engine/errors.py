"""Errors the engine raises; each carries a reason that is also its translation key."""

from __future__ import annotations

import re

_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@"
)
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&](?:password|passwd|pwd|pass|token|auth|key|secret|user|username)=)[^&\s]*",
    re.IGNORECASE,
)


def redact_url(text: str) -> str:
    """Return text with credentials in any URL replaced by ***."""
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***:***@", text)
    return _SECRET_QUERY.sub(r"\g<key>***", text)


class CryDetectorError(Exception):
    """Base error; `reason` is a stable key used for translations."""

    reason = "unknown"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        """Store a redacted message and an optional more specific reason."""
        super().__init__(redact_url(message))
        if reason is not None:
            self.reason = reason


class ModelCardError(CryDetectorError):
    """The model card is missing, malformed or does not match the model."""

    reason = "invalid_card"


class ModelError(CryDetectorError):
    """The model file is missing, corrupt or cannot be run."""

    reason = "invalid_model"


class UnsupportedOpError(ModelError):
    """The model uses an operator the backend cannot execute."""

    reason = "unsupported_op"


class SourceError(CryDetectorError):
    """The audio source cannot be opened or stopped delivering audio."""

    reason = "source_failed"


class PortAudioMissingError(SourceError):
    """PortAudio (needed by sounddevice) is not installed."""

    reason = "portaudio_missing"


class DeviceNotFoundError(SourceError):
    """The named input device does not exist."""

    reason = "device_not_found"


class StreamUnreachableError(SourceError):
    """The FFmpeg input cannot be opened (host down, wrong URL or credentials)."""

    reason = "stream_unreachable"


class NoAudioError(SourceError):
    """The source opened but delivers no audio (or only digital silence)."""

    reason = "no_audio"
