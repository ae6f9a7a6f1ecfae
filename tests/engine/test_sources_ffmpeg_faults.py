"""FfmpegSource under faults: exits, hangs, garbage, partial frames, silence, clock steps, secrets.

The stand-in ffmpeg here is a real process (a Python script) whose n-th start does what the test
scripted; the garbage tests use the real ffmpeg against a local HTTP server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import logging
from pathlib import Path
import shutil
import sys

import numpy as np
import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

from custom_components.cry_detector.engine.errors import StreamUnreachableError
from custom_components.cry_detector.engine.sources import (
    AudioChunk,
    ffmpeg as ffmpeg_module,
)
from custom_components.cry_detector.engine.sources.ffmpeg import FfmpegSource

from .test_sources_ffmpeg import (
    assert_process_gone,
    ramp,
    read_chunks,
    wav_stream_header,
)

pytestmark = [
    pytest.mark.skipif(
        shutil.which("ffmpeg") is None, reason="needs the ffmpeg binary"
    ),
    pytest.mark.usefixtures("socket_enabled"),
]

RATE = 16000
SECRET_URL = "rtsp://admin:hunter2@cam.local:554/live?token=s3cr3t"  # noqa: S105

# Bodies for the scripted stand-in (`out` is its binary stdout, `pcm(s)` a ramp of s seconds).
EXIT = "sys.stderr.write('Connection refused\\n'); sys.exit(1)"
HANG = "time.sleep(60)"


def deliver(seconds: float, *, then: str = "sys.exit(1)", extra: bytes = b"") -> str:
    """Write `seconds` of the ramp (and extra bytes) at once, then do `then`."""
    return f"out.write(pcm({seconds}) + {extra!r}); out.flush()\n{then}"


def stream(seconds: float, pace: float = 0.005) -> str:
    """Write the ramp 0.1 s at a time, `pace` real seconds apart, then hang."""
    return (
        f"data = pcm({seconds})\n"
        "for i in range(0, len(data), 3200):\n"
        f"    out.write(data[i:i + 3200]); out.flush(); time.sleep({pace})\n"
        "time.sleep(60)"
    )


def scripted_ffmpeg(tmp_path: Path, runs: list[str]) -> str:
    """A stand-in ffmpeg whose n-th start runs runs[n] (the last repeats); it logs its pids."""
    script = tmp_path / "scripted-ffmpeg"
    counter, pids = tmp_path / "runs", tmp_path / "pids"
    script.write_text(
        f"#!{sys.executable}\n"
        "import array, os, sys, time\n"
        "out = sys.stdout.buffer\n"
        "def pcm(seconds):\n"
        f"    n = round(seconds * {RATE})\n"
        "    return array.array('h', [i % 4000 + 100 for i in range(n)]).tobytes()\n"
        f"counter, pids = {str(counter)!r}, {str(pids)!r}\n"
        "n = int(open(counter).read()) if os.path.exists(counter) else 0\n"
        "open(counter, 'w').write(str(n + 1))\n"
        "open(pids, 'a').write(f'{os.getpid()}\\n')\n"
        f"runs = {runs!r}\n"
        "exec(runs[min(n, len(runs) - 1)])\n"
    )
    script.chmod(0o755)
    return str(script)


def started_pids(tmp_path: Path) -> list[int]:
    """Process ids of every start of the scripted stand-in."""
    path = tmp_path / "pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


class FakeSleep:
    """Records backoff delays and returns at once."""

    def __init__(self) -> None:
        """No delays yet."""
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        """Record, then yield once."""
        self.delays.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hung stand-ins ignore nothing, but do not wait 2 s for them anyway."""
    monkeypatch.setattr(ffmpeg_module, "TERMINATE_GRACE_SECONDS", 0.3)


def samples_of(chunks: list[AudioChunk]) -> np.ndarray:
    """All samples of the chunks in order."""
    return np.concatenate([c.samples for c in chunks])


async def test_backoff_doubles_to_the_cap_and_resets_after_a_healthy_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ffmpeg_module, "HEALTHY_RUN_SECONDS", 0.5)
    caplog.set_level(logging.INFO)
    runs = [deliver(1.0), EXIT, EXIT, EXIT, EXIT, deliver(1.0), stream(2.0)]
    sleep = FakeSleep()
    source = FfmpegSource(
        ["-i", "x"],
        ffmpeg_binary=scripted_ffmpeg(tmp_path, runs),
        sleep=sleep,
        max_backoff=8.0,
        stall_timeout=5.0,
    )
    async with source:
        chunks = await read_chunks(source, 30)
        assert source.restarts == 6
    assert sleep.delays == [1.0, 2.0, 4.0, 8.0, 8.0, 1.0]
    ramp_1s = ramp(1.0)
    np.testing.assert_array_equal(
        samples_of(chunks), np.concatenate([ramp_1s, ramp_1s, ramp(1.0)])
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one per outage, not one per attempt
    assert all("restarting ffmpeg" in w for w in warnings)
    assert caplog.text.count("delivers audio again") == 2
    for pid in started_pids(tmp_path):
        assert_process_gone(pid)


async def test_ffmpeg_hanging_without_output_is_killed_and_restarted(
    tmp_path: Path,
) -> None:
    runs = [deliver(0.5), HANG, stream(2.0)]
    sleep = FakeSleep()
    source = FfmpegSource(
        ["-i", "x"],
        ffmpeg_binary=scripted_ffmpeg(tmp_path, runs),
        sleep=sleep,
        stall_timeout=1.0,  # long enough for a stand-in to start on a busy machine
    )
    async with source:
        chunks = await read_chunks(source, 15)
        assert source.restarts == 2
        assert source.last_error is not None and "stalled" in source.last_error
        first, hung, running = started_pids(tmp_path)
        assert_process_gone(hung)
        assert psutil.Process(running).is_running()
    assert sleep.delays == [1.0, 2.0]
    np.testing.assert_array_equal(
        samples_of(chunks), np.concatenate([ramp(0.5), ramp(1.0)])
    )
    for pid in (first, hung, running):
        assert_process_gone(pid)


@pytest.mark.parametrize("tail_seconds", [0.0, 0.05])
async def test_partial_frame_of_a_dead_run_never_shifts_the_next_one(
    tmp_path: Path, tail_seconds: float
) -> None:
    """A run dying after an odd byte (and part of a chunk): the next run's samples stay aligned."""
    runs = [deliver(0.5 + tail_seconds, extra=b"\x7f"), stream(1.5)]
    source = FfmpegSource(
        ["-i", "x"],
        ffmpeg_binary=scripted_ffmpeg(tmp_path, runs),
        sleep=FakeSleep(),
    )
    async with source:
        chunks = await read_chunks(source, 15)
    np.testing.assert_array_equal(samples_of(chunks[:5]), ramp(0.5))
    np.testing.assert_array_equal(samples_of(chunks[5:]), ramp(1.0))
    assert all(c.samples.shape[0] == 1600 for c in chunks)
    assert chunks[5].start - chunks[4].start != pytest.approx(
        0.1
    )  # a new time base: a gap
    assert not chunks[5].restamped


class PayloadServer:
    """HTTP on 127.0.0.1 answering the n-th connection with payloads[n] (the last repeats)."""

    def __init__(self, payloads: list[bytes]) -> None:
        """Serve the payloads in turn."""
        self.payloads = payloads
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Send one payload and close."""
        payload = self.payloads[min(self.connections, len(self.payloads) - 1)]
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\n"
                + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[PayloadServer]:
        """Listen for the duration of a block."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()
            await self._server.wait_closed()


GARBAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>\n" * 500


async def test_garbage_instead_of_audio_fails_open_with_a_redacted_reason() -> None:
    async with PayloadServer([GARBAGE]).running() as server:
        source = FfmpegSource.for_url(
            f"http://viewer:hunter2@127.0.0.1:{server.port}/cam?token=s3cr3t",
            stall_timeout=5.0,
        )
        with pytest.raises(StreamUnreachableError) as caught:
            await source.open()
        await source.close()
    message = str(caught.value)
    assert caught.value.reason == "stream_unreachable"
    assert message.startswith("cannot open stream http://***:***@127.0.0.1")
    assert (
        len(message.split("token=***", 1)[1].strip()) > 5
    )  # FFmpeg's own reason follows
    assert "hunter2" not in message and "s3cr3t" not in message


async def test_stream_turning_to_garbage_is_retried_until_it_is_audio_again() -> None:
    wav = wav_stream_header() + ramp(1.0).astype("<i2").tobytes()
    async with PayloadServer([wav, GARBAGE, GARBAGE, wav]).running() as server:
        sleep = FakeSleep()
        source = FfmpegSource.for_url(
            f"http://127.0.0.1:{server.port}/cam", stall_timeout=5.0, sleep=sleep
        )
        async with source:
            chunks = await read_chunks(source, 20)
            assert source.restarts == 3
        assert server.connections == 4
    assert sleep.delays == [1.0, 2.0, 4.0]
    np.testing.assert_array_equal(
        samples_of(chunks), np.concatenate([ramp(1.0), ramp(1.0)])
    )


async def test_credentials_never_reach_the_logs_when_the_watchdog_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The stand-in echoes its whole command line (URL included) to stderr, then dies."""
    caplog.set_level(logging.DEBUG)
    echo = (
        "sys.stderr.write('failed: ' + ' '.join(sys.argv) + '\\n'); sys.stderr.flush()"
    )
    runs = [deliver(0.3, then=f"{echo}; sys.exit(1)"), f"{echo}; {EXIT}", stream(1.0)]
    source = FfmpegSource.for_url(
        SECRET_URL,
        ffmpeg_binary=scripted_ffmpeg(tmp_path, runs),
        sleep=FakeSleep(),
    )
    assert SECRET_URL in source.command  # FFmpeg itself gets the real URL
    async with source:
        await read_chunks(source, 6)
        assert source.restarts == 2
        last_error = source.last_error or ""
    assert "rtsp://***:***@cam.local" in caplog.text  # the URL was logged, redacted
    for text in (caplog.text, last_error, source.description):
        assert "hunter2" not in text and "s3cr3t" not in text and "admin" not in text


async def test_digital_silence_on_a_live_stream_is_reported_not_restarted(
    tmp_path: Path,
) -> None:
    silence = "out.write(bytes(2 * 16000 * 3 // 2)); out.flush()\n"
    runs = [
        deliver(0.5, then=silence + "out.write(pcm(0.5)); out.flush(); time.sleep(60)")
    ]
    changes: list[bool] = []
    source = FfmpegSource(
        ["-i", "x"],
        ffmpeg_binary=scripted_ffmpeg(tmp_path, runs),
        silence_timeout=1.0,
        on_silent=changes.append,
        stall_timeout=5.0,
    )
    async with source:
        seen = []
        for _ in range(25):
            await read_chunks(source, 1)
            seen.append(source.silent)
        assert source.restarts == 0 and source.connected
    assert changes == [True, False]
    assert seen.index(True) == 14  # 0.5 s of audio, then 1.0 s of zeros
    assert not seen[-1]


async def test_stamps_follow_clock_steps_and_mark_them(tmp_path: Path) -> None:
    """Clock +1 h, then -2 h, then +1 s of jitter: two restamped chunks, audio unbroken."""
    read: list[AudioChunk] = []
    offset = [0.0]

    def clock() -> float:
        return 1000.0 + 0.1 * len(read) + offset[0]

    source = FfmpegSource(
        ["-i", "x"],
        ffmpeg_binary=scripted_ffmpeg(tmp_path, [stream(6.0, pace=0.02)]),
        clock=clock,
        stall_timeout=5.0,
    )
    async with source:
        for step in (0.0, 3600.0, -7200.0, 1.0):
            offset[0] += step
            for _ in range(12):
                read.extend(await read_chunks(source, 1))
    np.testing.assert_array_equal(samples_of(read), ramp(4.8))
    marked = [i for i, c in enumerate(read) if c.restamped]
    assert len(marked) == 2 and 12 <= marked[0] < 24 <= marked[1] < 36
    steps = np.diff([c.start for c in read])
    assert steps[marked[0] - 1] == pytest.approx(3600.1, abs=1.0)
    assert steps[marked[1] - 1] == pytest.approx(-7199.9, abs=1.0)
    assert np.count_nonzero(np.abs(steps - 0.1) > 1e-6) == 2


async def test_close_lets_ffmpeg_flush_and_exit_instead_of_killing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FFmpeg writes its last output on SIGTERM; stdout is drained so it exits by itself."""
    monkeypatch.setattr(ffmpeg_module, "TERMINATE_GRACE_SECONDS", 2.0)
    body = (  # like FFmpeg: SIGTERM sets a flag; the main loop then flushes and exits
        "import signal; stop = []\n"
        "signal.signal(signal.SIGTERM, lambda *_: stop.append(1))\n"
        "out.write(pcm(0.2)); out.flush()\n"
        "while not stop: time.sleep(0.01)\n"
        "out.write(bytes(1 << 20)); out.flush(); sys.exit(0)\n"
    )
    source = FfmpegSource(["-i", "x"], ffmpeg_binary=scripted_ffmpeg(tmp_path, [body]))
    await source.open()
    await read_chunks(source, 1)
    process = source._process
    assert process is not None
    began = asyncio.get_running_loop().time()
    await source.close()
    assert asyncio.get_running_loop().time() - began < 1.0
    assert process.returncode == 0  # exited by itself, not killed (-9)
