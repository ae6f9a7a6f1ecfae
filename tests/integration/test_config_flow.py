"""Config, reconfigure and options flows: every source type, every error, real audio and models."""

from __future__ import annotations

from pathlib import Path
import shutil
from typing import Any

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import CONF_NAME
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import numpy as np
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.cry_detector.backend_install import DATA_BACKEND
from custom_components.cry_detector.const import (
    CONF_COOLDOWN_SECONDS,
    CONF_DEVICE,
    CONF_HOLD_SECONDS,
    CONF_INPUT,
    CONF_LOOP,
    CONF_MIN_CRY_SECONDS,
    CONF_MODEL_PATH,
    CONF_PATH,
    CONF_REALTIME,
    CONF_SENSITIVITY,
    CONF_SOURCE_TYPE,
    DOMAIN,
)
from tests.engine.audio import write_audio

from .conftest import (
    CRY_MODEL,
    MODELS,
    OPTIONS,
    file_data,
    recording,
    setup_entry,
    state_of,
    wait_for_listener,
)
from .fake_sounddevice import FakeSoundCard, PortAudioError

# The defaults the energy_cry card recommends.
CARD_OPTIONS = {
    CONF_SENSITIVITY: 50,
    CONF_MIN_CRY_SECONDS: 2.0,
    CONF_HOLD_SECONDS: 2.0,
    CONF_COOLDOWN_SECONDS: 0.0,
}


async def start_flow(hass: HomeAssistant, step: str) -> str:
    """Start a user flow, pick a source type from the menu; return the flow id."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.MENU
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": step}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == step
    flow_id: str = result["flow_id"]
    return flow_id


async def start_file_flow(hass: HomeAssistant) -> str:
    """Start the hidden file flow; return the flow id."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": "file"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "file"
    flow_id: str = result["flow_id"]
    return flow_id


def file_input(path: Path, **extra: Any) -> dict[str, Any]:
    """Form input for the file step with the cry model."""
    return {
        CONF_PATH: str(path),
        CONF_LOOP: False,
        CONF_REALTIME: False,
        CONF_NAME: "Nursery",
        CONF_MODEL_PATH: str(CRY_MODEL),
        **extra,
    }


async def unload_all(hass: HomeAssistant) -> None:
    """Unload every entry the flows created (stops their sources)."""
    for entry in hass.config_entries.async_entries(DOMAIN):
        await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


async def test_menu_without_portaudio(hass: HomeAssistant) -> None:
    """Without PortAudio (Home Assistant OS) microphones are not offered."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["pulse", "ffmpeg"]


async def test_microphone_creates_entry(
    hass: HomeAssistant, sound_card: FakeSoundCard
) -> None:
    """A microphone is tested (1 s of audio, one inference) and becomes an entry."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    assert result["menu_options"] == ["microphone", "pulse", "ffmpeg"]
    flow_id = await start_flow(hass, "microphone")
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {
            CONF_DEVICE: "USB Baby Mic",
            CONF_NAME: "Nursery",
            CONF_MODEL_PATH: str(CRY_MODEL),
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Nursery"
    assert result["data"] == {
        CONF_SOURCE_TYPE: "microphone",
        CONF_DEVICE: "USB Baby Mic",
        CONF_MODEL_PATH: str(CRY_MODEL),
    }
    assert result["options"] == CARD_OPTIONS
    entry = result["result"]
    assert entry.unique_id == "mic:USB Baby Mic"
    await hass.async_block_till_done()
    assert state_of(entry) is ConfigEntryState.LOADED
    assert len(sound_card.open_streams) == 1

    # The same microphone cannot be added twice.
    flow_id = await start_flow(hass, "microphone")
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {
            CONF_DEVICE: "USB Baby Mic",
            CONF_NAME: "Again",
            CONF_MODEL_PATH: str(CRY_MODEL),
        },
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    await unload_all(hass)
    assert not sound_card.open_streams


async def test_microphone_without_devices(
    hass: HomeAssistant, sound_card: FakeSoundCard
) -> None:
    """PortAudio without capture devices aborts with a clear reason."""
    sound_card.devices = []
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "microphone"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_devices"


async def test_portaudio_vanishes(
    hass: HomeAssistant, sound_card: FakeSoundCard
) -> None:
    """If PortAudio disappears between the menu and the microphone step, the flow aborts."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    assert "microphone" in result["menu_options"]
    sound_card.module().__dict__.clear()
    import sys

    del sys.modules["sounddevice"]
    sys.modules["sounddevice"] = None  # type: ignore[assignment]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "microphone"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "portaudio_missing"


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("refuse", "source_failed"),
        ("crash", "unknown"),
        ("silence", "no_audio"),
        ("unplugged", "device_not_found"),
    ],
)
async def test_microphone_errors_then_recover(
    hass: HomeAssistant, sound_card: FakeSoundCard, fault: str, error: str
) -> None:
    """Each microphone failure shows its translated error; fixing it lets the flow finish."""
    flow_id = await start_flow(hass, "microphone")
    audio = sound_card.audio
    if fault == "refuse":
        sound_card.fail_start = PortAudioError("Device unavailable [PaErrorCode -9985]")
    elif fault == "crash":
        sound_card.fail_start = RuntimeError("driver bug")
    elif fault == "silence":
        sound_card.audio = np.zeros_like(audio)
    else:
        sound_card.devices = ["Webcam"]
    user_input = {
        CONF_DEVICE: "USB Baby Mic",
        CONF_NAME: "Nursery",
        CONF_MODEL_PATH: str(CRY_MODEL),
    }
    result = await hass.config_entries.flow.async_configure(flow_id, user_input)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": error}
    assert not sound_card.open_streams

    sound_card.fail_start = None
    sound_card.audio = audio
    if fault == "unplugged":
        # The form now lists only the webcam: plugging the mic back in needs a new flow.
        assert result["data_schema"] is not None
        sound_card.devices = ["USB Baby Mic", "Webcam"]
        flow_id = await start_flow(hass, "microphone")
    result = await hass.config_entries.flow.async_configure(flow_id, user_input)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    await unload_all(hass)


async def test_pulse_unreachable(hass: HomeAssistant) -> None:
    """Without a PulseAudio server the pulse source cannot be opened."""
    flow_id = await start_flow(hass, "pulse")
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_NAME: "Nursery", CONF_MODEL_PATH: str(CRY_MODEL)}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "stream_unreachable"}


@pytest.mark.parametrize(
    ("ffmpeg_input", "error"),
    [
        ("ftp://camera.local/audio", "invalid_url"),
        ("-f lavfi", "invalid_device"),
        ("rtsp://user:secret@127.0.0.1:9/stream", "stream_unreachable"),
        ("hw:7,7", "stream_unreachable"),
    ],
)
async def test_ffmpeg_errors(
    hass: HomeAssistant, ffmpeg_input: str, error: str
) -> None:
    """Bad URLs, bad device names and unreachable inputs are refused by the test."""
    flow_id = await start_flow(hass, "ffmpeg")
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {
            CONF_INPUT: ffmpeg_input,
            CONF_NAME: "Nursery",
            CONF_MODEL_PATH: str(CRY_MODEL),
        },
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": error}
    assert "secret" not in str(result)


async def test_ffmpeg_stream_creates_entry(
    hass: HomeAssistant, wav_server: str
) -> None:
    """An HTTP stream is tested through FFmpeg; credentials never enter the unique id."""
    flow_id = await start_flow(hass, "ffmpeg")
    url = f"http://parent:secret@{wav_server}/stream.wav"
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_INPUT: url, CONF_NAME: "Camera", CONF_MODEL_PATH: str(CRY_MODEL)}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    assert entry.data[CONF_INPUT] == url
    unique_id = str(entry.unique_id)
    assert unique_id.startswith("url:")
    assert "secret" not in unique_id
    await hass.async_block_till_done()

    # Other credentials for the same stream: still the same source.
    flow_id = await start_flow(hass, "ffmpeg")
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {
            CONF_INPUT: f"http://other:pw@{wav_server}/stream.wav",
            CONF_NAME: "Camera 2",
            CONF_MODEL_PATH: str(CRY_MODEL),
        },
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    await unload_all(hass)


async def test_file_flow_creates_entry(hass: HomeAssistant, cry_wav: Path) -> None:
    """The hidden file source works end to end."""
    flow_id = await start_file_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, file_input(cry_wav)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == file_data(cry_wav)
    assert result["result"].unique_id == f"file:{cry_wav}"
    await hass.async_block_till_done()
    await unload_all(hass)


async def test_short_file_is_enough(hass: HomeAssistant, tmp_path: Path) -> None:
    """A file shorter than the probe is read to its end and padded for the inference."""
    short = write_audio(tmp_path / "short.wav", recording(0.5, ((0.0, 0.5),)))
    flow_id = await start_file_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, file_input(short))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    await unload_all(hass)


async def test_file_flow_with_bundled_model(hass: HomeAssistant, cry_wav: Path) -> None:
    """An empty model path means the bundled model (not stored in the entry)."""
    if not (
        Path(__file__).parents[2]
        / "custom_components/cry_detector/models/default.tflite"
    ).exists():
        pytest.skip("bundled model not built yet")
    flow_id = await start_file_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, file_input(cry_wav, **{CONF_MODEL_PATH: "  "})
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert CONF_MODEL_PATH not in result["data"]
    await hass.async_block_till_done()
    await unload_all(hass)


async def test_file_source_errors(
    hass: HomeAssistant, tmp_path: Path, silent_wav: Path
) -> None:
    """Missing, undecodable and silent files each have their own error."""
    flow_id = await start_file_flow(hass)
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    for path, error in (
        (tmp_path / "missing.wav", "file_not_found"),
        (text, "decode_error"),
        (silent_wav, "no_audio"),
    ):
        result = await hass.config_entries.flow.async_configure(
            flow_id, file_input(path)
        )
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == {"base": error}


def broken_copies(tmp_path: Path) -> dict[str, Path]:
    """Model files that fail in each documented way."""
    card_json = CRY_MODEL.with_suffix(".json")
    lone = tmp_path / "lone.tflite"
    shutil.copy(CRY_MODEL, lone)
    bad_card = tmp_path / "bad_card.tflite"
    shutil.copy(CRY_MODEL, bad_card)
    bad_card.with_suffix(".json").write_text('{"format_version": 1}')
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x00" * 64)
    shutil.copy(card_json, garbage.with_suffix(".json"))
    return {
        "model_missing": tmp_path / "missing.tflite",
        "card_missing": lone,
        "invalid_card": bad_card,
        "invalid_model": garbage,
        "card_mismatch": MODELS / "wrong_shape.tflite",
        "path_not_allowed": Path("/etc/cry/model.tflite"),
    }


@pytest.mark.parametrize(
    "error",
    [
        "model_missing",
        "card_missing",
        "invalid_card",
        "invalid_model",
        "card_mismatch",
        "path_not_allowed",
    ],
)
async def test_model_errors(
    hass: HomeAssistant, cry_wav: Path, tmp_path: Path, error: str
) -> None:
    """Each way a custom model can be wrong shows its error on the model field."""
    flow_id = await start_file_flow(hass)
    model = broken_copies(tmp_path)[error]
    result = await hass.config_entries.flow.async_configure(
        flow_id, file_input(cry_wav, **{CONF_MODEL_PATH: str(model)})
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_MODEL_PATH: error}


async def test_unsupported_op_without_litert(
    hass: HomeAssistant, cry_wav: Path
) -> None:
    """Where only the NumPy backend exists, a model with an unknown operator is refused."""
    hass.data[DATA_BACKEND] = "numpy"
    flow_id = await start_file_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        file_input(cry_wav, **{CONF_MODEL_PATH: str(MODELS / "unsupported_op.tflite")}),
    )
    assert result["errors"] == {CONF_MODEL_PATH: "unsupported_op"}


async def test_reconfigure_changes_source(
    hass: HomeAssistant, init_integration: MockConfigEntry, tmp_path: Path
) -> None:
    """Reconfigure tests the new source, updates the entry and reloads it."""
    other = write_audio(tmp_path / "other.wav", recording(10.0, ()))
    result = await init_integration.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["pulse", "ffmpeg", "file"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "file"}
    )
    assert result["type"] is FlowResultType.FORM
    flow_id = result["flow_id"]

    result = await hass.config_entries.flow.async_configure(
        flow_id, file_input(tmp_path / "missing.wav")
    )
    assert result["errors"] == {"base": "file_not_found"}

    result = await hass.config_entries.flow.async_configure(
        flow_id, file_input(other, **{CONF_NAME: "Bedroom"})
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert init_integration.unique_id == f"file:{other}"
    assert init_integration.title == "Bedroom"
    assert init_integration.data[CONF_PATH] == str(other)
    assert init_integration.options == OPTIONS
    assert state_of(init_integration) is ConfigEntryState.LOADED
    await unload_all(hass)


async def test_reconfigure_to_a_taken_source(
    hass: HomeAssistant, init_integration: MockConfigEntry, tmp_path: Path
) -> None:
    """A source another entry already uses is refused."""
    other = write_audio(tmp_path / "other.wav", recording(4.0, ()))
    second = MockConfigEntry(
        domain=DOMAIN,
        title="Other",
        unique_id=f"file:{other}",
        data=file_data(other),
        options=OPTIONS,
    )
    await setup_entry(hass, second)
    result = await init_integration.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "file"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], file_input(other)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    await unload_all(hass)


async def test_options_flow(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """Options are saved and applied live: no reload, today's totals stay."""
    listener = init_integration.runtime_data.listener
    totals = listener.today_totals()
    result = await hass.config_entries.options.async_init(init_integration.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "init"
    new_options = {
        CONF_SENSITIVITY: 70,
        CONF_MIN_CRY_SECONDS: 1.0,
        CONF_HOLD_SECONDS: 6.0,
        CONF_COOLDOWN_SECONDS: 30.0,
    }
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], new_options
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert init_integration.options == new_options
    assert init_integration.runtime_data.listener is listener
    config = listener.tracker_config
    assert config.threshold == pytest.approx(0.3)
    assert (config.min_cry_seconds, config.hold_seconds, config.cooldown_seconds) == (
        1.0,
        6.0,
        30.0,
    )
    assert listener.today_totals() == totals


async def test_reconfigure_to_a_model_trained_on_own_clips(
    hass: HomeAssistant, init_integration: MockConfigEntry, cry_wav: Path
) -> None:
    """Close the loop: a model made by cry-train from saved, labelled clips runs after reconfigure.

    tests/fixtures/make_own_model.py made own_clips.tflite with the integration's clip writer,
    `cry-train import`, `train` and `export`.
    """
    own_model = MODELS / "own_clips.tflite"
    result = await init_integration.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "file"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], file_input(cry_wav, **{CONF_MODEL_PATH: str(own_model)})
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert state_of(init_integration) is ConfigEntryState.LOADED
    data = init_integration.runtime_data
    assert data.model_path == own_model
    assert [source["name"] for source in data.card.training["data_sources"]] == ["own"]
    await wait_for_listener(init_integration)
    stats = data.listener.stats
    assert stats is not None and stats.windows > 0
    await unload_all(hass)
