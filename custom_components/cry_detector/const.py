"""Constants for the Cry Detector integration."""

from __future__ import annotations

from enum import StrEnum
import logging
from pathlib import Path
from typing import Final

DOMAIN: Final = "cry_detector"
LOGGER = logging.getLogger(__package__)

MODELS_DIR: Final = Path(__file__).parent / "models"
DEFAULT_MODEL: Final = MODELS_DIR / "default.tflite"

# LiteRT is installed on demand (not a manifest requirement: no wheels for every platform).
LITERT_REQUIREMENT: Final = "ai-edge-litert==2.3.0"


class SourceType(StrEnum):
    """Where the audio comes from."""

    MICROPHONE = "microphone"
    PULSE = "pulse"
    FFMPEG = "ffmpeg"
    FILE = "file"  # hidden: tests and demos


# Config entry data.
CONF_SOURCE_TYPE: Final = "source_type"
CONF_DEVICE: Final = "device"  # microphone name (PortAudio)
CONF_INPUT: Final = "input"  # FFmpeg input: a stream URL or an ALSA device
CONF_PATH: Final = "path"  # audio file (hidden file source)
CONF_LOOP: Final = "loop"
CONF_REALTIME: Final = "realtime"
CONF_MODEL_PATH: Final = "model_path"  # empty: the bundled model

# Config entry options (live tracker settings).
CONF_SENSITIVITY: Final = "sensitivity"  # percent: 100 * (1 - threshold)
CONF_MIN_CRY_SECONDS: Final = "min_cry_seconds"
CONF_HOLD_SECONDS: Final = "hold_seconds"
CONF_COOLDOWN_SECONDS: Final = "cooldown_seconds"

# Config entry options (cry clips for review and retraining; off by default: privacy).
CONF_SAVE_CLIPS: Final = "save_clips"
CONF_CLIP_RETENTION_DAYS: Final = "clip_retention_days"
CONF_CLIP_MAX_MB: Final = "clip_max_mb"
DEFAULT_CLIP_RETENTION_DAYS: Final = 30
DEFAULT_CLIP_MAX_MB: Final = 500
MAX_CLIP_RETENTION_DAYS: Final = 365
MAX_CLIP_MAX_MB: Final = 100_000
CLIPS_FOLDER: Final = "cry_detector"
CLIP_PRE_ROLL_SECONDS: Final = 3.0
CLIP_POST_ROLL_SECONDS: Final = 2.0
# At most one likely-false-alarm sample per this many seconds.
CLIP_NEAR_MISS_INTERVAL: Final = 3600.0

SERVICE_LABEL_CLIP: Final = "label_clip"
SERVICE_DELETE_ALL_CLIPS: Final = "delete_all_clips"
ATTR_CLIP: Final = "clip"
ATTR_LABEL: Final = "label"
LABEL_DELETE: Final = "delete"

MIN_SENSITIVITY: Final = 1
MAX_SENSITIVITY: Final = 99
MAX_MIN_CRY_SECONDS: Final = 60
MAX_HOLD_SECONDS: Final = 120
MAX_COOLDOWN_SECONDS: Final = 600

# Test before configure: how much audio to read and how long to wait for it.
PROBE_SECONDS: Final = 1.05
PROBE_TIMEOUT: Final = 15.0

# Runtime: retry a failed source after these delays (seconds), the last one repeating.
RETRY_DELAYS: Final = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# Diagnostic sensors (probability, level) write at most once per this many seconds.
FAST_SENSOR_INTERVAL: Final = 1.0
RECENT_PROBABILITIES: Final = 20

EVENT_CRY_STARTED: Final = "cry_started"
EVENT_CRY_STOPPED: Final = "cry_stopped"

# Repair issue translation keys per source error reason; anything else uses the generic one.
ISSUE_REASONS: Final = frozenset(
    {
        "portaudio_missing",
        "device_not_found",
        "device_lost",
        "stream_unreachable",
        "no_audio",
    }
)
ISSUE_GENERIC: Final = "source_failed"
ISSUE_MODEL: Final = "model_failed"  # inference failed while running
