"""Decoding, resampling, writing, and `prepare` (cut, resample, mono, gain, manifest)."""

from __future__ import annotations

import csv
from pathlib import Path

import av
import numpy as np
import pytest
from synth import cry

from cry_training.audio import AudioError, apply_gain, probe, read_audio, write_audio
from cry_training.dataset import MANIFEST_COLUMNS, read_manifest
from cry_training.prepare import PrepareOptions, pieces, prepare


def _dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * rate / samples.size)


def _write_stereo(path: Path, left: np.ndarray, right: np.ndarray, rate: int) -> None:
    """A 16-bit stereo WAV through FFmpeg."""
    pcm = (np.stack([left, right]) * 32767).astype(np.int16)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(
            pcm.T.reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_write_then_read_is_lossless_at_the_same_rate(
    tmp_path: Path, suffix: str
) -> None:
    rng = np.random.default_rng(1)
    audio = (rng.integers(-20000, 20000, 8000) / 32768.0).astype(np.float32)
    path = tmp_path / f"clip{suffix}"
    write_audio(path, audio, 16000)
    np.testing.assert_array_equal(read_audio(path, 16000), audio)
    assert probe(path).sample_rate == 16000


def test_resampling_keeps_the_pitch_and_the_length(tmp_path: Path) -> None:
    time = np.arange(44100 * 2) / 44100
    path = tmp_path / "tone.flac"
    write_audio(path, 0.5 * np.sin(2 * np.pi * 1000 * time), 44100)
    audio = read_audio(path, 16000)
    assert abs(audio.size - 32000) <= 32
    assert _dominant_hz(audio[1000:-1000], 16000) == pytest.approx(1000, abs=2)
    assert read_audio(path, 16000, max_seconds=0.5).size == 8000


def test_stereo_is_the_channel_mean(tmp_path: Path) -> None:
    time = np.arange(16000) / 16000
    left, right = 0.4 * np.sin(2 * np.pi * 440 * time), np.zeros(16000)
    path = tmp_path / "stereo.wav"
    _write_stereo(path, left, right, 16000)
    audio = read_audio(path, 16000)
    assert probe(path).channels == 2
    np.testing.assert_allclose(audio, left / 2, atol=2 / 32768)


def test_gain_is_in_decibels_and_clips_like_sox() -> None:
    quiet = np.full(100, 0.01, np.float32)
    assert apply_gain(quiet, 20.0)[0] == pytest.approx(0.1, rel=1e-5)
    assert (
        apply_gain(quiet, 45.0).max() < 1.0
    )  # 0.01 * 178 clipped just below full scale


def test_unreadable_audio_is_an_audio_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match=r"bad\.wav"):
        read_audio(bad, 16000)


def test_pieces_cut_fixed_clips_and_drop_a_short_tail() -> None:
    options = PrepareOptions(clip_seconds=5.0, sample_rate=10, min_seconds=1.0)
    assert pieces(125, options) == [(0, 50), (50, 100), (100, 125)]
    assert pieces(105, options) == [(0, 50), (50, 100)]
    assert pieces(
        125, PrepareOptions(clip_seconds=0, sample_rate=10, offset_seconds=2)
    ) == [(20, 125)]
    assert pieces(
        125, PrepareOptions(clip_seconds=5, sample_rate=10, max_clips_per_file=1)
    ) == [(0, 50)]


def test_prepare_folder_layout_like_the_original_sox_command(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    rng = np.random.default_rng(3)
    cry_audio = cry(12.0, rng, rate=44100) * 0.05
    (raw / "crying").mkdir(parents=True)
    _write_stereo(raw / "crying" / "night one.wav", cry_audio, cry_audio, 44100)
    write_audio(
        raw / "silence" / "room.flac", 0.001 * rng.normal(size=22050 * 7), 22050
    )
    (raw / "notes.txt").write_text("ignored", encoding="utf-8")

    clips = prepare(
        raw,
        tmp_path / "out",
        PrepareOptions(clip_seconds=5.0, gain_db=6.0),
        log=lambda _: None,
        progress=False,
    )

    by_label = {
        label: [c for c in clips if c.label == label] for label in ("crying", "silence")
    }
    assert [round(c.seconds or 0, 3) for c in by_label["crying"]] == [5.0, 5.0, 2.0]
    assert [round(c.seconds or 0, 3) for c in by_label["silence"]] == [5.0, 2.0]
    assert {c.group for c in by_label["crying"]} == {"own:crying/night one"}
    assert {c.original_sample_rate for c in by_label["crying"]} == {44100}
    first = by_label["crying"][0]
    assert first.path.parent == (tmp_path / "out" / "crying" / "own").resolve()
    out_audio = read_audio(first.path, 16000)
    assert out_audio.size == 80000
    source_level = np.sqrt(
        np.mean(read_audio(raw / "crying" / "night one.wav", 16000)[:80000] ** 2)
    )
    assert 20 * np.log10(
        np.sqrt(np.mean(out_audio**2)) / source_level
    ) == pytest.approx(6.0, abs=0.1)
    with (tmp_path / "out" / "manifest.csv").open(encoding="utf-8") as handle:
        assert tuple(csv.DictReader(handle).fieldnames or ()) == MANIFEST_COLUMNS
    assert read_manifest(tmp_path / "out" / "manifest.csv") == clips


def test_prepare_from_a_manifest_keeps_source_group_and_license(
    dataset: Path, tmp_path: Path
) -> None:
    clips = prepare(
        dataset / "manifest.csv",
        tmp_path / "out",
        PrepareOptions(clip_seconds=2.0),
        log=lambda _: None,
        progress=False,
    )
    originals = read_manifest(dataset / "manifest.csv")
    assert len(clips) == 2 * len(originals)
    assert {(c.source, c.group, c.license) for c in clips} == {
        (c.source, c.group, c.license) for c in originals
    }
    assert all(c.seconds == 2.0 for c in clips)
