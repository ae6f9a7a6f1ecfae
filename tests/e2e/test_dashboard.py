"""A parent's first minutes: start the demo, log in, watch the dashboard react to crying.

Runs `scripts/develop --demo` (Home Assistant with the looping demo stream) on a free port in a
fresh configuration folder, then drives headless Chromium (Debian's, through Playwright) to log
in, open the example dashboard and wait until the Crying tile shows "Detected" and the cry minutes
rise. Screenshots go to .cache/e2e/screenshots/. Run it with scripts/test-e2e; elsewhere (the
Home Assistant test environment has no Playwright) the module is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
import importlib.util
import os
from pathlib import Path
import re
import signal
import socket
import subprocess
import sys
import time
from types import ModuleType
from typing import Any

import pytest

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="browser tests run through scripts/test-e2e"
)

REPO_ROOT = Path(__file__).resolve().parents[2]
WORK_DIR = REPO_ROOT / ".cache" / "e2e"
SCREENSHOTS = WORK_DIR / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
READY_TIMEOUT = float(os.environ.get("CRY_E2E_READY_TIMEOUT", "300"))
# The demo cries at 5-29 s of its loop; allow for a slow start and the next cry (86 s).
CRYING_TIMEOUT = 120.0
RISE_TIMEOUT = 60.0
READY_LINE = "Cry Detector dashboard:"
DASHBOARD_PATH = "/cry-detector/nursery"


def _load_onboard() -> ModuleType:
    """Import scripts/onboard.py (standard library only) for its REST client and demo login."""
    spec = importlib.util.spec_from_file_location(
        "onboard", REPO_ROOT / "scripts" / "onboard.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["onboard"] = module
    spec.loader.exec_module(module)
    return module


onboard = _load_onboard()


def _free_port() -> int:
    """Return a TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_ready(process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait for scripts/develop's banner; fail with its log when it ends or times out."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if READY_LINE in text:
            return
        if process.poll() is not None or "FAILED:" in text:
            pytest.fail(f"scripts/develop failed:\n{text[-4000:]}")
        time.sleep(1.0)
    pytest.fail(f"no banner within {READY_TIMEOUT:.0f} s:\n{log.read_text()[-4000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop scripts/develop (its trap stops Home Assistant), then its process group if needed."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    """Run scripts/develop --demo in a fresh folder on a free port; yield its base URL."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    port = _free_port()
    log = WORK_DIR / "develop.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(REPO_ROOT / "scripts" / "develop"),
                "--demo",
                "--fresh",
                "--port",
                str(port),
                "--config",
                str(WORK_DIR / "config"),
            ],
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_for_ready(process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)


@pytest.fixture
def page(demo_url: str) -> Iterator[Any]:
    """A logged-out Chromium page that may only reach the demo instance."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1100, "height": 640})
        # Nothing but the local instance: no fonts, brand icons or map tiles from outside.
        context.route(
            re.compile(r"^(?!https?://(127\.0\.0\.1|localhost)[:/]).*"),
            lambda route: route.abort(),
        )
        new_page = context.new_page()
        errors: list[str] = []
        new_page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            yield new_page
        except BaseException:
            new_page.screenshot(path=str(SCREENSHOTS / "failure.png"))
            raise
        finally:
            browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def _seconds(text: str) -> float:
    """Parse a duration as the frontend shows it ("1m 5s", "18s", "0.3 min")."""
    units = {"h": 3600.0, "min": 60.0, "m": 60.0, "s": 1.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(h|min|m|s)\b", text)
    if not parts:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(number) * units[unit] for number, unit in parts)


def _glance_value(page: Any, name: str) -> str:
    """Return the state text under a glance card entry."""
    entry = page.locator("hui-glance-card .entity").filter(has_text=name)
    text: str = entry.inner_text()
    return text.replace(name, "", 1).strip()


def _wait(condition: Any, timeout: float, what: str) -> None:
    """Poll a condition every half second."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.5)


def test_dashboard_shows_crying_and_cry_minutes(demo_url: str, page: Any) -> None:
    """Log in as the demo user; the tile turns to Detected and the cry minutes rise."""
    started = time.monotonic()
    page.goto(demo_url + DASHBOARD_PATH)
    page.locator('input[name="username"]').fill(onboard.USERNAME)
    page.locator('input[name="password"]').fill(onboard.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{DASHBOARD_PATH}*")
    tile = page.locator("hui-tile-card").filter(has_text="Crying")
    tile.wait_for()
    page.locator("hui-glance-card .entity").first.wait_for()
    _wait(
        lambda: "dBFS" in _glance_value(page, "Sound level"),
        30.0,
        "the sound level showing",
    )
    page.screenshot(path=str(SCREENSHOTS / "01-listening.png"))

    tile.get_by_text("Detected", exact=True).wait_for(timeout=CRYING_TIMEOUT * 1000)
    crying_after = time.monotonic() - started
    page.screenshot(path=str(SCREENSHOTS / "02-crying.png"))
    first = _seconds(_glance_value(page, "Cry minutes"))

    _wait(
        lambda: _seconds(_glance_value(page, "Cry minutes")) > first,
        RISE_TIMEOUT,
        "the cry minutes rising",
    )
    page.screenshot(path=str(SCREENSHOTS / "03-cry-minutes.png"))
    later = _seconds(_glance_value(page, "Cry minutes"))
    episodes = _glance_value(page, "Episodes")
    assert re.match(r"[1-9]\d* ", episodes), episodes

    # The page shows what Home Assistant holds (not a stale or cached view).
    api = onboard.Api(demo_url)
    api.token = onboard.log_in(api)
    minutes = float(
        api.ok("GET", "/api/states/sensor.nursery_cry_minutes_today")["state"]
    )
    # The card shows minutes to one decimal (suggested precision): up to 3 s rounded up.
    assert minutes * 60.0 + 3.01 >= later
    (WORK_DIR / "timings.txt").write_text(
        f"Crying shown {crying_after:.0f} s after opening the dashboard; "
        f"cry time {first:.0f} s -> {later:.0f} s; episodes: {episodes}\n",
        encoding="utf-8",
    )
