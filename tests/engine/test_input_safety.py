"""User text reaches FFmpeg as exactly one argument, never as options; URLs are redacted everywhere."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.cry_detector.engine.errors import (
    CryDetectorError,
    SourceError,
    redact_url,
)
from custom_components.cry_detector.engine.sources.ffmpeg import FfmpegSource

PREFIX = ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error"]
SUFFIX = ["-vn", "-ac", "1", "-ar", "16000", "-f", "s16le", "-"]
# Text shaped like what someone might try: options, separators, protocols, control characters.
NASTY = st.lists(
    st.sampled_from(
        [
            "-i",
            " -y ",
            "-f lavfi",
            "/etc/passwd",
            "|",
            ";",
            "&&",
            "$(id)",
            "`id`",
            "\n",
            "\r",
            "\x00",
            "\t",
            "file:",
            "concat:",
            "subfile,,start,0,end,0,,:",
            "rtsp://",
            "http://",
            "user:pw@",
            "cam.local",
            "/live",
            "?token=x",
            "'",
            '"',
            "%00",
        ]
    ),
    max_size=6,
).map("".join) | st.text(max_size=40)


def user_arguments(source: FfmpegSource) -> list[str]:
    """The command between the fixed prefix and suffix (what the user's text became)."""
    command = source.command
    assert command[: len(PREFIX)] == PREFIX
    assert command[-len(SUFFIX) :] == SUFFIX
    return command[len(PREFIX) : -len(SUFFIX)]


@settings(max_examples=300, deadline=None)
@given(text=NASTY)
def test_url_is_one_argument_after_input_or_refused(text: str) -> None:
    reason: str | None = None
    try:
        source = FfmpegSource.for_url(text)
    except SourceError as err:
        reason = err.reason
    if reason is not None:
        assert reason == "invalid_url"
        return
    arguments = user_arguments(source)
    assert arguments[-2:] == ["-i", text]
    assert arguments[:-2] in ([], ["-rtsp_transport", "tcp"])
    assert text.split("://", 1)[0].lower() in ("rtsp", "rtsps", "http", "https", "rtmp")
    assert not any(ord(char) < 32 for char in text)


@settings(max_examples=300, deadline=None)
@given(text=NASTY, kind=st.sampled_from(["alsa", "pulse"]))
def test_device_is_one_argument_after_input_or_refused(text: str, kind: str) -> None:
    factory = FfmpegSource.for_alsa if kind == "alsa" else FfmpegSource.for_pulse
    reason: str | None = None
    try:
        source = factory(text)
    except SourceError as err:
        reason = err.reason
    if reason is not None:
        assert reason == "invalid_device"
        return
    assert user_arguments(source) == ["-f", kind, "-i", text]
    assert not text.startswith("-") and text.strip()


@pytest.mark.parametrize(
    "text",
    [
        "http://127.0.0.1/x -f lavfi -i sine",  # spaces stay inside the one argument
        "rtsp://cam.local/live;reboot",
        "http://cam.local/$(reboot)",
    ],
)
def test_shell_syntax_is_inert_text(text: str) -> None:
    """Nothing interprets the URL: it is passed as it is, one argv element."""
    assert user_arguments(FfmpegSource.for_url(text))[-2:] == ["-i", text]


SECRET_CHARS = st.characters(
    min_codepoint=33, max_codepoint=126, blacklist_characters="@/?#&:%"
) | st.sampled_from("éüß漢")


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["rtsp", "rtsps", "http", "https", "rtmp"]),
    user=st.text(SECRET_CHARS, min_size=1, max_size=12),
    password=st.text(SECRET_CHARS, min_size=6, max_size=12),
)
def test_credentials_never_survive_redaction(
    scheme: str, user: str, password: str
) -> None:
    url = f"{scheme}://{user}:{password}@cam.local:554/live?token={password}&x=1"
    try:
        description = FfmpegSource.for_url(url).description
    except (
        SourceError
    ) as err:  # e.g. brackets: not a valid host; the refusal is redacted too
        description = str(err)
    error = CryDetectorError(f"cannot open {url}: refused")
    for text in (redact_url(url), description, str(error)):
        assert password not in text
        assert f"//{user}:" not in text
        assert text.count("***") == 3
