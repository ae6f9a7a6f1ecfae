"""`cry-train scan` runs the engine's scan command line on a real file with the bundled model."""

from __future__ import annotations

import json
from pathlib import Path
import wave

import numpy as np
import pytest

from cry_training.scan import run_scan


def _write_wav(path: Path, seconds: float) -> None:
    """Write quiet noise with a loud 1 kHz tone in the middle as a 16 kHz mono WAV."""
    rng = np.random.default_rng(0)
    t = np.arange(int(16000 * seconds)) / 16000
    audio = 300 * rng.standard_normal(t.size) + 8000 * np.sin(2 * np.pi * 1000 * t) * (
        t > 2
    )
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(audio.astype(np.int16).tobytes())


def test_scan_prints_one_json_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The JSON output covers the file, its windows' audio length and the backend stats."""
    audio = tmp_path / "room.wav"
    _write_wav(audio, 5.0)
    assert run_scan([str(audio), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    text = json.dumps(document)
    assert "room.wav" in text
    assert "cry_seconds" in text


def test_scan_reports_a_missing_file(tmp_path: Path) -> None:
    """A missing file is an error status, not a traceback."""
    assert run_scan([str(tmp_path / "missing.wav")]) != 0
