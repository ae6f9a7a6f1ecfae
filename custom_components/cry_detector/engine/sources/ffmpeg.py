"""Audio through an FFmpeg subprocess (RTSP/HTTP streams, PulseAudio, ALSA, files) with a watchdog."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
import contextlib
import logging
import math
from pathlib import Path
import re
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ..errors import NoAudioError, SourceError, StreamUnreachableError, redact_url
from . import AudioChunk, AudioSource, ChunkAssembler, chunk_size

_LOGGER = logging.getLogger(__name__)

URL_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp")
STDERR_LINES = 20
TERMINATE_GRACE_SECONDS = 2.0
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0
# A run that delivered this much audio counts as healthy: the next failure backs off from 1 s again.
HEALTHY_RUN_SECONDS = 30.0
# Live audio stamped this far behind the clock (data lost upstream, the clock stepped forward)
# is re-anchored to now.
MAX_LAG_SECONDS = 2.0
# ... and this far ahead of it (the clock stepped back). Larger: a server's prebuffer burst
# legitimately runs a few seconds ahead.
MAX_LEAD_SECONDS = 10.0
READ_BYTES = 65536
NO_STREAM_MARKERS = ("does not contain any stream", "matches no streams")
# FFmpeg prefixes log lines with the logging context, e.g. "[tcp @ 0x55d0c8a4e680] ".
_CONTEXT_PREFIX = re.compile(r"^\[[^\]]* @ 0x[0-9a-fA-F]+\]\s*")


def _reject_control(text: str, what: str) -> None:
    """Refuse control characters (newlines, NUL) in user text passed to FFmpeg."""
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise SourceError(
            f"{what} contains control characters", reason=f"invalid_{what}"
        )


def validate_url(url: str) -> str:
    """Return url if it is an rtsp/rtsps/http/https/rtmp URL with a host, else SourceError(invalid_url)."""
    _reject_control(url, "url")
    try:
        parts = urlsplit(url)
    except ValueError as err:
        raise SourceError(f"invalid URL {url}: {err}", reason="invalid_url") from err
    if parts.scheme.lower() not in URL_SCHEMES or not parts.hostname:
        raise SourceError(
            f"URL {url} must start with one of {', '.join(s + '://' for s in URL_SCHEMES)} and name a host",
            reason="invalid_url",
        )
    return url


def validate_device(device: str) -> str:
    """Return a PulseAudio/ALSA device name unless it is empty or could read as an option."""
    _reject_control(device, "device")
    if not device.strip() or device.startswith("-"):
        raise SourceError(
            f"device name {device!r} is empty or starts with '-'",
            reason="invalid_device",
        )
    return device


class FfmpegSource(AudioSource):
    """Run `ffmpeg ... -f s16le -` and read mono int16 at sample_rate from its stdout.

    Live inputs get a watchdog inside read(): when FFmpeg exits or delivers nothing for
    stall_timeout seconds it is killed and restarted with exponential backoff (1, 2, 4 ... 60 s);
    the chunks after a restart take a new time base from the clock (a gap). Non-live inputs
    (files) end the source at their end instead.
    """

    def __init__(
        self,
        input_args: list[str],
        sample_rate: int = 16000,
        chunk_seconds: float = 0.1,
        *,
        ffmpeg_binary: str = "ffmpeg",
        stall_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        silence_timeout: float | None = None,
        on_silent: Callable[[bool], None] | None = None,
        live: bool = True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_backoff: float = MAX_BACKOFF_SECONDS,
        description: str | None = None,
    ) -> None:
        """Describe the FFmpeg input; nothing runs until open()."""
        if not stall_timeout > 0:
            raise ValueError(f"stall_timeout must be positive, got {stall_timeout!r}")
        self.input_args = list(input_args)
        self.sample_rate = sample_rate
        self.chunk_samples = chunk_size(sample_rate, chunk_seconds)
        self.ffmpeg_binary = ffmpeg_binary
        self.stall_timeout = stall_timeout
        self.silence_timeout = silence_timeout
        self.live = live
        self.max_backoff = max_backoff
        self.description = redact_url(
            description or "ffmpeg " + " ".join(self.input_args)
        )
        self.restarts = 0
        self.last_error: str | None = None
        self._clock = clock
        self._sleep = sleep
        self._on_silent = on_silent
        self._assembler = ChunkAssembler(sample_rate, self.chunk_samples)
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._stderr_lines: deque[str] = deque(maxlen=STDERR_LINES)
        self._odd_byte = b""
        self._run_samples = 0
        self._failures = 0
        self._silent_samples = 0
        self._silent = False
        self._opened = False
        self._ended = False

    # -- constructors for the supported inputs ------------------------------------------------

    @classmethod
    def for_url(cls, url: str, **kwargs: Any) -> FfmpegSource:
        """Read a network stream (rtsp/rtsps over TCP, http(s), rtmp)."""
        validate_url(url)
        args = (
            ["-rtsp_transport", "tcp"]
            if urlsplit(url).scheme.lower() in ("rtsp", "rtsps")
            else []
        )
        kwargs.setdefault("description", f"stream {url}")
        return cls([*args, "-i", url], **kwargs)

    @classmethod
    def for_pulse(cls, device: str = "default", **kwargs: Any) -> FfmpegSource:
        """Capture from a PulseAudio/PipeWire source (the HA OS audio add-on)."""
        validate_device(device)
        kwargs.setdefault("description", f"pulse {device}")
        return cls(["-f", "pulse", "-i", device], **kwargs)

    @classmethod
    def for_alsa(cls, device: str, **kwargs: Any) -> FfmpegSource:
        """Capture from an ALSA device such as hw:1,0."""
        validate_device(device)
        kwargs.setdefault("description", f"alsa {device}")
        return cls(["-f", "alsa", "-i", device], **kwargs)

    @classmethod
    def for_file(cls, path: str | Path, **kwargs: Any) -> FfmpegSource:
        """Decode a local file once (not live: its end ends the source)."""
        absolute = Path(path).resolve()
        kwargs.setdefault("description", f"file {absolute.name}")
        kwargs.setdefault("live", False)
        return cls(["-i", f"file:{absolute}"], **kwargs)

    # -- state ----------------------------------------------------------------------------------

    @property
    def command(self) -> list[str]:
        """The argument list FFmpeg runs with (contains credentials: never log it unredacted)."""
        return [
            self.ffmpeg_binary, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error",
            *self.input_args,
            "-vn", "-ac", "1", "-ar", str(self.sample_rate), "-f", "s16le", "-",
        ]  # fmt: skip

    @property
    def silent(self) -> bool:
        """Whether the input has delivered only digital zeros for silence_timeout seconds."""
        return self._silent

    @property
    def connected(self) -> bool:
        """Whether FFmpeg is running and has delivered audio since its last start."""
        return self._process is not None and self._run_samples > 0

    @property
    def pid(self) -> int | None:
        """Process id of the running FFmpeg, if any."""
        return self._process.pid if self._process is not None else None

    # -- AudioSource ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Start FFmpeg and wait for its first audio.

        Raises SourceError(ffmpeg_missing), StreamUnreachableError (exited first, with its
        first error line) or NoAudioError (silent past stall_timeout).
        """
        await self.close()
        self._ended = False
        self._failures = 0
        self._silent_samples = 0
        self._silent = False
        self.restarts = 0
        self.last_error = None
        try:
            await self._start()
            data = await self._first_bytes()
        except BaseException as err:
            if isinstance(err, SourceError):
                self.last_error = str(err)
            await self._stop_process()
            raise
        self._accept(data)
        self._opened = True

    async def read(self) -> AudioChunk | None:
        """Return the next chunk; restarts FFmpeg behind the scenes; None once a file ends."""
        if not self._opened:
            raise RuntimeError("FfmpegSource.read() before open()")
        while True:
            chunk = self._assembler.pop(partial=self._ended)
            if chunk is not None or self._ended:
                if chunk is not None:
                    self._track_silence(chunk)
                return chunk
            data = await self._next_bytes()
            if data is None:
                self._ended = True
            else:
                self._accept(data)

    async def close(self) -> None:
        """Stop FFmpeg (terminate, kill after a grace period) and reap it."""
        self._opened = False
        await self._stop_process()

    # -- process handling -----------------------------------------------------------------------

    async def _start(self) -> None:
        """Spawn FFmpeg and start draining its stderr."""
        self._stderr_lines.clear()
        self._odd_byte = b""
        self._run_samples = 0
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as err:
            raise SourceError(
                f"cannot run {self.ffmpeg_binary}: {err.strerror or err}",
                reason="ffmpeg_missing",
            ) from err
        assert self._process.stderr is not None
        self._stderr_task = asyncio.create_task(
            self._drain_stderr(self._process.stderr), name="cry_detector ffmpeg stderr"
        )
        _LOGGER.debug(
            "Started ffmpeg (pid %s) for %s", self._process.pid, self.description
        )

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        """Keep the last stderr lines (redacted) so FFmpeg never blocks on a full pipe."""
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the stream limit: keep reading
                line = await stream.read(READ_BYTES)
            if not line:
                return
            text = _CONTEXT_PREFIX.sub(
                "", redact_url(line.decode("utf-8", "replace").strip())
            )
            if text:
                self._stderr_lines.append(text)
                _LOGGER.debug("ffmpeg %s: %s", self.description, text)

    async def _first_bytes(self) -> bytes:
        """Return the first audio bytes of a fresh start or raise why there are none."""
        data = await self._read_stdout()
        if data is None:
            raise NoAudioError(
                f"{self.description} delivered no audio within {self.stall_timeout:g} s"
            )
        if not data:
            message = await self._exit_message()
            if any(marker in message for marker in NO_STREAM_MARKERS):
                raise NoAudioError(f"{self.description} has no audio stream: {message}")
            raise StreamUnreachableError(f"cannot open {self.description}: {message}")
        return data

    async def _read_stdout(self) -> bytes | None:
        """Return the next stdout bytes, b'' at EOF, None when nothing came within stall_timeout."""
        assert self._process is not None and self._process.stdout is not None
        try:
            async with asyncio.timeout(self.stall_timeout):
                return await self._process.stdout.read(READ_BYTES)
        except TimeoutError:
            return None

    async def _exit_message(self) -> str:
        """Wait for FFmpeg to exit; return its first error line (or its exit code), redacted."""
        assert self._process is not None
        try:
            async with asyncio.timeout(TERMINATE_GRACE_SECONDS):
                code = await self._process.wait()
        except TimeoutError:  # it closed stdout but lingers
            code = await self._terminate(self._process)
        if self._stderr_task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TERMINATE_GRACE_SECONDS):
                    await asyncio.shield(self._stderr_task)
        first = self._stderr_lines[0] if self._stderr_lines else None
        return redact_url(first or f"ffmpeg exited with code {code}")

    async def _next_bytes(self) -> bytes | None:
        """Return more audio bytes, restarting FFmpeg as long as needed; None when a file ended."""
        while True:
            if self._process is None:
                await self._restart()
                continue
            data = await self._read_stdout()
            if data:
                if self._run_samples == 0:
                    self._recovered()
                return data
            if data is None:
                failure = f"no audio for {self.stall_timeout:g} s (stalled)"
            else:
                message = await self._exit_message()
                assert self._process is not None
                if not self.live and self._process.returncode == 0:
                    await self._stop_process()
                    return None
                failure = f"ffmpeg exited: {message}"
            await self._stop_process()
            if not self.live:
                raise SourceError(f"{self.description} failed: {failure}")
            self._note_failure(failure)

    async def _restart(self) -> None:
        """Back off, then start FFmpeg again (a missing binary is retried too)."""
        delay = min(
            self.max_backoff, FIRST_BACKOFF_SECONDS * 2.0 ** max(0, self._failures - 1)
        )
        await self._sleep(delay)
        self.restarts += 1
        try:
            await self._start()
        except SourceError as err:
            self._note_failure(str(err))

    def _note_failure(self, failure: str) -> None:
        """Record a watchdog failure: last_error, backoff step and a log line."""
        if self._run_samples >= HEALTHY_RUN_SECONDS * self.sample_rate:
            self._failures = 0
        self._failures += 1
        self._run_samples = 0
        self.last_error = redact_url(failure)
        log = _LOGGER.warning if self._failures == 1 else _LOGGER.debug
        log("%s: %s; restarting ffmpeg", self.description, self.last_error)

    def _recovered(self) -> None:
        """Log that audio flows again after failures."""
        if self._failures:
            _LOGGER.info(
                "%s delivers audio again after %d restart(s)",
                self.description,
                self.restarts,
            )

    async def _stop_process(self) -> None:
        """Terminate (then kill) FFmpeg, wait for it and for the stderr drain; idempotent."""
        process, self._process = self._process, None
        stderr_task, self._stderr_task = self._stderr_task, None
        try:
            if process is not None:
                await self._terminate(process)
        except BaseException:
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()  # the loop's child watcher reaps it
            raise
        finally:
            if stderr_task is not None:
                stderr_task.cancel()
                # asyncio.wait, unlike `await stderr_task`, never swallows our own cancellation
                await asyncio.wait([stderr_task])

    @staticmethod
    async def _terminate(process: asyncio.subprocess.Process) -> int:
        """Ask the process to stop, kill it after the grace period, and reap it.

        Its stdout is drained meanwhile: FFmpeg flushes its output as it exits, and blocked on
        a full pipe nobody reads it would only ever die by the kill.
        """
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        drain = (
            asyncio.create_task(
                _discard(process.stdout), name="cry_detector ffmpeg drain"
            )
            if process.stdout is not None
            else None
        )
        try:
            async with asyncio.timeout(TERMINATE_GRACE_SECONDS):
                return await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            return await process.wait()
        finally:
            if drain is not None:
                drain.cancel()
                await asyncio.wait([drain])

    # -- samples --------------------------------------------------------------------------------

    def _accept(self, data: bytes) -> None:
        """Add stdout bytes (keeping an odd trailing byte) to the chunk assembler."""
        if self._odd_byte:
            data = self._odd_byte + data
        usable = len(data) - len(data) % 2
        self._odd_byte = data[usable:]
        samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)
        if not self._assembler.has_base or self._run_samples == 0:
            # The first bytes of a run are what FFmpeg buffered while probing: they end now.
            self._assembler.rebase(self._clock() - samples.shape[0] / self.sample_rate)
        elif self.live:
            self._catch_up(samples.shape[0])
        self._assembler.push(samples)
        self._run_samples += samples.shape[0]

    def _catch_up(self, arriving: int) -> None:
        """Re-anchor live audio whose stamps left the clock (lost upstream audio, clock steps).

        The shift marks the next chunk restamped: the audio itself is unbroken.
        """
        buffered_end = (
            self._assembler.next_start
            + (self._assembler.buffered + arriving) / self.sample_rate
        )
        lag = self._clock() - buffered_end
        if lag > MAX_LAG_SECONDS or lag < -MAX_LEAD_SECONDS:
            _LOGGER.debug(
                "%s: audio %.1f s off the clock, re-anchoring", self.description, lag
            )
            self._assembler.shift(lag)

    def _track_silence(self, chunk: AudioChunk) -> None:
        """Update the digital-silence flag (only exact zeros count) and notify on changes."""
        if self.silence_timeout is None:
            return
        if np.any(chunk.samples):
            self._silent_samples = 0
        else:
            self._silent_samples += chunk.samples.shape[0]
        silent = self._silent_samples >= math.ceil(
            self.silence_timeout * self.sample_rate
        )
        if silent != self._silent:
            self._silent = silent
            _LOGGER.debug("%s silent: %s", self.description, silent)
            if self._on_silent is not None:
                self._on_silent(silent)


async def _discard(stream: asyncio.StreamReader) -> None:
    """Read and drop a stream until its end (unless another reader is waiting on it)."""
    with contextlib.suppress(RuntimeError):
        while await stream.read(READ_BYTES):
            pass
