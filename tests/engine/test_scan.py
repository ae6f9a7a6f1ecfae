"""scan_file and the scan command line, on synthesised recordings with known cry episodes."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
import runpy
import subprocess
import sys

import pytest

from custom_components.cry_detector.engine import scan as scan_module
from custom_components.cry_detector.engine.scan import ScanResult, main, scan_file

from .audio import scene, write_audio

REPO = Path(__file__).resolve().parents[2]
ENERGY_MODEL = REPO / "tests" / "fixtures" / "models" / "energy_cry.tflite"
HOP = 0.5  # the card's patch hop: one window
CRIES = [(7.3, 14.8), (31.0, 38.2)]


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """45 s at 44.1 kHz (FLAC): room tone, speech, music, knocks and two crying bouts."""
    path = tmp_path_factory.mktemp("scan") / "nursery.flac"
    return write_audio(path, scene(45.0, cries=CRIES, rate=44100, seed=3), 44100)


@pytest.fixture(scope="module")
def quiet_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 s of room tone with speech, music and knocks, no crying."""
    path = tmp_path_factory.mktemp("scan") / "living-room.wav"
    return write_audio(path, scene(30.0, seed=11), 16000)


async def scan_in_thread(path: Path, **kwargs: object) -> ScanResult:
    """scan_file runs its own event loop: call it from a worker thread, like Home Assistant would."""
    return await asyncio.to_thread(scan_file, path, ENERGY_MODEL, **kwargs)  # type: ignore[arg-type]


async def run_cli(*args: str) -> tuple[int, str, str]:
    """Run the command line in a thread; return (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    status = await asyncio.to_thread(main, ["scan", *args], out, err)
    return status, out.getvalue(), err.getvalue()


async def test_scan_finds_the_cry_episodes_within_one_hop(recording: Path) -> None:
    result = await scan_in_thread(recording)
    assert len(result.episodes) == len(CRIES)
    for episode, (start, end) in zip(result.episodes, CRIES, strict=True):
        assert episode.start == pytest.approx(start, abs=HOP)
        assert episode.end == pytest.approx(end, abs=HOP)
    assert result.cry_seconds == pytest.approx(sum(e.duration for e in result.episodes))
    assert result.cry_seconds == pytest.approx(
        sum(end - start for start, end in CRIES), abs=2 * HOP
    )
    assert all(e.peak_probability > 0.9 for e in result.episodes)
    starts, ends = [w[0] for w in result.windows], [w[1] for w in result.windows]
    assert starts[0] == pytest.approx(0.515) and starts[1:] == pytest.approx(ends[:-1])
    assert len(result.windows) == result.stats.windows == 88
    assert result.stats.overruns == 0
    assert result.stats.audio_seconds == pytest.approx(45.0, abs=1e-3)


async def test_speech_music_and_knocks_are_not_crying(quiet_recording: Path) -> None:
    result = await scan_in_thread(quiet_recording)
    assert result.episodes == [] and result.cry_seconds == 0.0
    assert max(probability for _, _, probability, _ in result.windows) < 0.5
    assert (
        max(level for *_, level in result.windows) > -40.0
    )  # the distractors were loud enough


async def test_numpy_backend_finds_the_same_episodes(recording: Path) -> None:
    litert = await scan_in_thread(recording)
    numpy = await scan_in_thread(recording, preferred_backend="numpy")
    assert numpy.stats.backend == "numpy"
    assert numpy.episodes == litert.episodes
    assert [w[2] for w in numpy.windows] == pytest.approx(
        [w[2] for w in litert.windows], abs=1e-4
    )


async def test_cli_json_covers_several_files_and_reports_failures(
    recording: Path, quiet_recording: Path, tmp_path: Path
) -> None:
    status, out, err = await run_cli(
        str(recording),
        str(tmp_path / "missing.wav"),
        str(quiet_recording),
        "--model",
        str(ENERGY_MODEL),
        "--json",
    )
    assert status == 1
    assert "missing.wav" in err
    document = json.loads(out)
    assert document["model"] == "test-energy_cry" and document["threshold"] == 0.5
    assert [Path(f["path"]).name for f in document["files"]] == [
        "nursery.flac",
        "living-room.wav",
    ]
    assert document["errors"][0]["reason"] == "file_not_found"
    nursery, living_room = document["files"]
    assert len(nursery["episodes"]) == 2 and living_room["episodes"] == []
    assert nursery["cry_seconds"] == pytest.approx(
        sum(e["seconds"] for e in nursery["episodes"]), abs=0.01
    )
    assert nursery["cry_minutes"] == pytest.approx(
        nursery["cry_seconds"] / 60, abs=1e-3
    )
    assert "windows" not in nursery and nursery["stats"]["windows"] == 88


async def test_cli_text_lists_windows_episodes_and_totals(recording: Path) -> None:
    status, out, _ = await run_cli(
        str(recording), "--model", str(ENERGY_MODEL), "--windows"
    )
    assert status == 0
    lines = out.splitlines()
    assert sum(line.lstrip().startswith("window") for line in lines) == 88
    assert sum(line.lstrip().startswith("episode") for line in lines) == 2
    assert any(line.strip().startswith("total cry: 0.2") for line in lines)
    assert "real-time factor" in out


async def test_cli_threshold_option(recording: Path) -> None:
    status, out, _ = await run_cli(
        str(recording),
        "--model",
        str(ENERGY_MODEL),
        "--json",
        "--windows",
        "--threshold",
        "0.999",
    )
    assert status == 0
    document = json.loads(out)
    assert document["threshold"] == 0.999
    assert len(document["files"][0]["windows"]) == 88
    status, _, err = await run_cli(
        str(recording), "--model", str(ENERGY_MODEL), "--threshold", "0.05"
    )
    assert status == 2 and "hysteresis" in err


async def test_cli_without_a_bundled_model_asks_for_one(
    recording: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(scan_module, "DEFAULT_MODEL", tmp_path / "default.tflite")
    status, out, err = await run_cli(str(recording))
    assert status == 1 and out == ""
    assert "--model" in err


async def test_module_entry_point_prints_json(recording: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "custom_components.cry_detector.engine",
        "scan",
        str(recording),
        "--model",
        str(ENERGY_MODEL),
        "--json",
    ]
    process = await asyncio.to_thread(
        subprocess.run,
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    assert len(json.loads(process.stdout)["files"][0]["episodes"]) == 2


def test_module_entry_point_runs_the_scan_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m custom_components.cry_detector.engine` is the scan command (in-process)."""
    monkeypatch.setattr(sys, "argv", ["engine", "scan", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("custom_components.cry_detector.engine", run_name="__main__")
    assert exit_info.value.code == 0
    assert "scan" in capsys.readouterr().out
