"""FfmpegSource with the real ffmpeg binary: files, a WAV stream served here, watchdog, safety."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import itertools
import logging
from pathlib import Path
import shutil
import struct
import sys

import numpy as np
import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

from custom_components.cry_detector.engine.errors import (
    NoAudioError,
    SourceError,
    StreamUnreachableError,
)
from custom_components.cry_detector.engine.sources import (
    AudioChunk,
    ffmpeg as ffmpeg_module,
)
from custom_components.cry_detector.engine.sources.ffmpeg import FfmpegSource

from .audio import read_audio, to_int16, write_audio

pytestmark = [
    pytest.mark.skipif(
        shutil.which("ffmpeg") is None, reason="needs the ffmpeg binary"
    ),
    pytest.mark.usefixtures("socket_enabled"),  # the test's own WAV server on 127.0.0.1
]

RATE = 16000


@pytest.fixture(autouse=True)
def short_kill_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """FFmpeg blocked in network I/O ignores SIGTERM; do not wait the full 2 s for the kill."""
    monkeypatch.setattr(ffmpeg_module, "TERMINATE_GRACE_SECONDS", 0.3)


def wav_stream_header(rate: int = RATE) -> bytes:
    """Header of an endless 16-bit mono WAV (sizes 0xFFFFFFFF, as streaming servers send)."""
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return b"RIFF\xff\xff\xff\xffWAVEfmt " + fmt + b"data\xff\xff\xff\xff"


class WavServer:
    """A tiny HTTP server on 127.0.0.1 that streams WAV: a prebuffer burst, then real time."""

    def __init__(
        self,
        samples: np.ndarray,
        *,
        prebuffer_seconds: float = 3.0,
        stall_after: float | None = None,
    ) -> None:
        """Serve samples; with stall_after, go quiet (connection open) after that many seconds."""
        self.payload = samples.astype("<i2").tobytes()
        self.prebuffer_bytes = round(prebuffer_seconds * RATE) * 2
        self.stall_bytes = (
            None if stall_after is None else round(stall_after * RATE) * 2
        )
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen (on the same port as before, after a stop)."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every connection (the server 'dies')."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._handlers:
            task.cancel()
        if self._handlers:
            await asyncio.wait(self._handlers)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer one GET with the WAV stream."""
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\n\r\n"
                + wav_stream_header()
            )
            await self._send(writer)
            writer.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)

    async def _send(self, writer: asyncio.StreamWriter) -> None:
        """Send the payload: the prebuffer at once, then 0.1 s pieces in real time."""
        position, piece = 0, RATE // 10 * 2
        while position < len(self.payload):
            if self.stall_bytes is not None and position >= self.stall_bytes:
                await (
                    asyncio.Event().wait()
                )  # silent but connected, until the server stops
            size = self.prebuffer_bytes if position == 0 else piece
            writer.write(self.payload[position : position + size])
            await writer.drain()
            position += size
            if position > self.prebuffer_bytes:
                await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def serving(server: WavServer) -> AsyncIterator[WavServer]:
    """Run a WavServer for the duration of a block."""
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def ramp(seconds: float) -> np.ndarray:
    """A recognisable int16 signal (never all zeros)."""
    return (np.arange(round(seconds * RATE)) % 4000 + 100).astype(np.int16)


def assert_process_gone(pid: int | None) -> None:
    """The process has been reaped (or at least is not a zombie child of ours)."""
    assert pid is not None
    children = {child.pid: child for child in psutil.Process().children(recursive=True)}
    assert pid not in children, f"ffmpeg {pid} still a child: {children[pid].status()}"


async def read_chunks(source: FfmpegSource, count: int) -> list[AudioChunk]:
    """Read exactly count chunks (fails if the source ends first)."""
    chunks = []
    for _ in range(count):
        chunk = await source.read()
        assert chunk is not None
        chunks.append(chunk)
    return chunks


def fake_ffmpeg(tmp_path: Path, body: str) -> str:
    """Write an executable stand-in for the ffmpeg binary (a real process; ignores its arguments)."""
    script = tmp_path / "fake-ffmpeg"
    script.write_text(
        f"#!{sys.executable}\nimport os, signal, sys, time\nout = sys.stdout.buffer\n{body}\n"
    )
    script.chmod(0o755)
    return str(script)


async def test_file_decodes_exactly_and_ends(tmp_path: Path) -> None:
    path = write_audio(
        tmp_path / "in.flac", ramp(2.0).astype(np.float64) / 40000.0 + 0.01, 44100
    )
    source = FfmpegSource.for_file(path, clock=lambda: 1000.0)
    async with source:
        pid = source.pid
        chunks = []
        while (chunk := await source.read()) is not None:
            chunks.append(chunk)
        assert await source.read() is None
    decoded = np.concatenate([c.samples for c in chunks])
    reference = read_audio(path, RATE)
    assert abs(decoded.size - reference.size) <= 32
    common = min(decoded.size, reference.size) - 64
    assert np.abs(decoded[64:common].astype(int) - reference[64:common]).max() <= 2
    assert all(c.samples.shape[0] == 1600 for c in chunks[:-1])
    assert np.diff([c.start for c in chunks]) == pytest.approx(0.1, abs=1e-9)
    assert chunks[0].start <= 1000.0
    assert source.restarts == 0
    assert_process_gone(pid)


async def test_http_stream_served_here_is_read_in_real_time() -> None:
    now = [5000.0]
    async with serving(WavServer(ramp(6.0))) as server:
        source = FfmpegSource.for_url(
            f"http://127.0.0.1:{server.port}/live.wav",
            stall_timeout=3.0,
            clock=lambda: now[0],
        )
        assert source.command[:6] == [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-nostats",
            "-loglevel",
            "error",
        ]
        async with source:
            chunks = await read_chunks(source, 40)
            assert source.connected
    decoded = np.concatenate([c.samples for c in chunks])
    np.testing.assert_array_equal(decoded, ramp(6.0)[: decoded.size])
    assert [c.start - chunks[0].start for c in chunks] == pytest.approx(
        [0.1 * i for i in range(40)]
    )
    assert chunks[0].start < 5000.0  # the probing burst is stamped as just captured
    assert server.connections == 1 and source.restarts == 0


async def test_watchdog_restarts_after_the_server_dies_and_comes_back() -> None:
    server = WavServer(ramp(30.0))
    delays: list[float] = []
    now = [100.0]

    async def backoff(seconds: float) -> None:
        delays.append(seconds)
        now[0] += 10 * seconds
        if (
            len(delays) == 2
        ):  # the first retry found nobody listening; now the server is back
            await server.start()
        await asyncio.sleep(0)

    async with serving(server):
        source = FfmpegSource.for_url(
            f"http://127.0.0.1:{server.port}/x",
            stall_timeout=3.0,
            clock=lambda: now[0],
            sleep=backoff,
        )
        async with source:
            before = await read_chunks(source, 5)
            first_pid = source.pid
            await server.stop()
            after = await read_chunks(
                source, 35
            )  # the buffered rest, then audio of the new connection
            second_pid = source.pid
            assert source.restarts == 2
            assert source.last_error is not None
    assert delays == [1.0, 2.0]
    assert server.connections == 2
    assert first_pid != second_pid
    assert_process_gone(first_pid)
    assert_process_gone(second_pid)
    starts = [c.start for c in before + after]
    jumps = [b - a for a, b in itertools.pairwise(starts) if abs(b - a - 0.1) > 1e-6]
    # one gap: the new time base came from the clock
    assert len(jumps) == 1 and jumps[0] > 20.0


async def test_stall_is_detected_and_the_stream_restarted() -> None:
    async with serving(WavServer(ramp(10.0), stall_after=3.5)) as server:
        source = FfmpegSource.for_url(
            f"http://127.0.0.1:{server.port}/x",
            stall_timeout=1.0,
            sleep=lambda _: asyncio.sleep(0),
        )
        async with source:
            await read_chunks(
                source, 45
            )  # 3.5 s, the stall, then the second connection
            assert source.restarts == 1
            assert source.last_error is not None and "stalled" in source.last_error
    assert server.connections == 2


async def test_open_fails_with_no_audio_when_the_server_only_sends_headers() -> None:
    async with serving(
        WavServer(ramp(3.0), prebuffer_seconds=0.0, stall_after=0.0)
    ) as server:
        source = FfmpegSource.for_url(
            f"http://127.0.0.1:{server.port}/x", stall_timeout=1.0
        )
        with pytest.raises(NoAudioError) as caught:
            await source.open()
        assert caught.value.reason == "no_audio"
        assert source.pid is None
        await source.close()


async def test_unreachable_url_is_redacted_everywhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    source = FfmpegSource.for_url(
        "http://user:secret@127.0.0.1:1/x?token=hunter2", stall_timeout=5.0
    )
    with pytest.raises(StreamUnreachableError) as caught:
        await source.open()
    await source.close()
    message = str(caught.value)
    assert "refused" in message.lower()
    for text in (message, source.last_error or "", source.description, caplog.text):
        assert "secret" not in text and "hunter2" not in text
    assert "***" in message


async def test_missing_binary_is_reported() -> None:
    source = FfmpegSource(["-i", "x"], ffmpeg_binary="/nonexistent/ffmpeg")
    with pytest.raises(SourceError) as caught:
        await source.open()
    assert caught.value.reason == "ffmpeg_missing"


async def test_input_without_audio_is_no_audio() -> None:
    source = FfmpegSource(
        ["-f", "lavfi", "-i", "color=c=black:s=16x16:d=1"], stall_timeout=5.0
    )
    with pytest.raises(NoAudioError):
        await source.open()


@pytest.mark.parametrize(
    ("factory", "text"),
    [
        (FfmpegSource.for_alsa, "-i /etc/passwd"),
        (FfmpegSource.for_pulse, "-f"),
        (FfmpegSource.for_pulse, ""),
        (FfmpegSource.for_alsa, "hw:0\n-i"),
        (FfmpegSource.for_url, "file:-x"),
        (FfmpegSource.for_url, "-i http://127.0.0.1/x"),
        (FfmpegSource.for_url, "file:///etc/passwd"),
        (FfmpegSource.for_url, "concat:http://a|http://b"),
        (FfmpegSource.for_url, "http://"),
        (FfmpegSource.for_url, "rtsp://cam/x\r\n-y"),
    ],
)
def test_user_text_cannot_inject_options(factory: object, text: str) -> None:
    with pytest.raises(SourceError) as caught:
        factory(text)  # type: ignore[operator]
    assert caught.value.reason in ("invalid_url", "invalid_device")


def test_constructors_build_argument_lists() -> None:
    rtsp = FfmpegSource.for_url("rtsp://admin:pw@cam.local:554/stream1")
    assert rtsp.input_args == [
        "-rtsp_transport",
        "tcp",
        "-i",
        "rtsp://admin:pw@cam.local:554/stream1",
    ]
    assert "pw" not in rtsp.description
    assert FfmpegSource.for_url("https://example.org/a.mp3").input_args == [
        "-i",
        "https://example.org/a.mp3",
    ]
    assert FfmpegSource.for_pulse().input_args == ["-f", "pulse", "-i", "default"]
    assert FfmpegSource.for_alsa("hw:1,0").input_args == ["-f", "alsa", "-i", "hw:1,0"]
    assert FfmpegSource.for_file("/tmp/-odd.wav").input_args == [
        "-i",
        "file:/tmp/-odd.wav",
    ]
    assert FfmpegSource(["-i", "x"], sample_rate=8000).command[-10:] == [
        "-i",
        "x",
        "-vn",
        "-ac",
        "1",
        "-ar",
        "8000",
        "-f",
        "s16le",
        "-",
    ]


async def test_odd_byte_writes_are_reassembled(tmp_path: Path) -> None:
    samples = ramp(0.5)
    data = samples.astype("<i2").tobytes()
    body = (
        f"data = {data!r}\n"
        "sizes = [1, 3, 5, 7, 2, 1, 999]\n"
        "pos = 0\n"
        "for i in range(10 ** 6):\n"
        "    size = sizes[i % len(sizes)]\n"
        "    out.write(data[pos:pos + size]); out.flush(); pos += size\n"
        "    if pos >= len(data): break\n"
        "    if size < 999: time.sleep(0.001)\n"
    )
    source = FfmpegSource(
        ["-i", "x"], ffmpeg_binary=fake_ffmpeg(tmp_path, body), live=False
    )
    async with source:
        chunks = []
        while (chunk := await source.read()) is not None:
            chunks.append(chunk)
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks]), samples)


async def test_digital_silence_is_reported_not_raised(tmp_path: Path) -> None:
    signal = np.concatenate(
        [np.zeros(RATE * 2, np.int16), to_int16(0.1 * np.sin(np.arange(RATE) * 0.3))]
    )
    path = write_audio(tmp_path / "silence.wav", signal, RATE)
    changes: list[bool] = []
    source = FfmpegSource.for_file(path, silence_timeout=1.0, on_silent=changes.append)
    async with source:
        seen = []
        while await source.read() is not None:
            seen.append(source.silent)
    assert changes == [True, False]
    assert seen.index(True) == 9  # after 1.0 s of zeros
    assert not seen[-1]


async def test_close_kills_an_ffmpeg_that_ignores_sigterm(tmp_path: Path) -> None:
    body = (
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "while True:\n"
        "    out.write(bytes(3200)); out.flush(); time.sleep(0.05)\n"
    )
    source = FfmpegSource(["-i", "x"], ffmpeg_binary=fake_ffmpeg(tmp_path, body))
    await source.open()
    pid = source.pid
    await read_chunks(source, 2)
    await source.close()
    assert source.pid is None
    assert_process_gone(pid)
    assert (
        not psutil.pid_exists(pid or 0)
        or psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    )


async def test_cancelled_read_then_close_leaves_no_process(tmp_path: Path) -> None:
    body = "time.sleep(0.2)\nout.write(bytes(320)); out.flush()\ntime.sleep(60)\n"
    source = FfmpegSource(
        ["-i", "x"], ffmpeg_binary=fake_ffmpeg(tmp_path, body), stall_timeout=5.0
    )
    await source.open()
    pid = source.pid
    reader = asyncio.create_task(source.read())
    await asyncio.sleep(0.1)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await source.close()
    assert_process_gone(pid)


async def test_exit_mid_file_is_an_error_not_an_end(tmp_path: Path) -> None:
    body = "out.write(bytes(64000)); out.flush()\nsys.stderr.write('boom: decoder failed\\n')\nsys.exit(1)\n"
    source = FfmpegSource(
        ["-i", "x"], ffmpeg_binary=fake_ffmpeg(tmp_path, body), live=False
    )
    async with source:
        chunks = [await source.read() for _ in range(20)]  # the 64000 bytes it wrote
        with pytest.raises(SourceError, match="boom"):
            await source.read()
    assert all(chunk is not None for chunk in chunks)
