"""Set up a fresh Home Assistant the way a person would, through its own HTTP APIs.

1. Onboarding (first start only): the demo user, core config, analytics, integrations.
2. Cry Detector through its config flow: the microphone (or PulseAudio) when one works, else the
   demo stream via the hidden file step (started by the demo helper, then walked over REST).
3. Optionally watch until the Crying sensor turns on and the cry minutes rise.

Standard library only.

    python scripts/onboard.py --url http://127.0.0.1:8123 --demo-file .cache/demo/nursery-demo.flac
        [--source auto|demo] [--pulse] [--name Nursery] [--watch 120] [--started EPOCH]
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
import json
import os
from pathlib import Path
import sys
import time
from typing import Any
from urllib import error, parse, request

USERNAME = "demo"
PASSWORD = "demo1234"  # noqa: S105 - the documented demo login of a local dev instance
PERSON = "Demo"
DOMAIN = "cry_detector"


class SetupError(Exception):
    """Home Assistant answered something unexpected."""


@dataclass
class Api:
    """A tiny Home Assistant REST client."""

    base_url: str
    token: str | None = None

    @property
    def client_id(self) -> str:
        """The OAuth client id the frontend would use."""
        return f"{self.base_url}/"

    def call(
        self,
        method: str,
        path: str,
        data: Mapping[str, Any] | None = None,
        *,
        form: bool = False,
    ) -> tuple[int, Any]:
        """Send a request; return the status and the decoded JSON (or text)."""
        headers = {"Accept": "application/json"}
        body = None
        if data is not None:
            if form:
                body = parse.urlencode(data).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                body = json.dumps(data).encode()
                headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = request.Request(  # noqa: S310 - the URL is the local instance's
            self.base_url + path, data=body, headers=headers, method=method
        )
        try:
            with request.urlopen(req, timeout=60) as response:  # noqa: S310
                return response.status, _decode(response.read())
        except error.HTTPError as err:
            return err.code, _decode(err.read())

    def ok(
        self,
        method: str,
        path: str,
        data: Mapping[str, Any] | None = None,
        *,
        form: bool = False,
    ) -> Any:
        """Send a request that must succeed; return the decoded answer."""
        status, answer = self.call(method, path, data, form=form)
        if status >= 300:
            raise SetupError(f"{method} {path}: HTTP {status}: {answer}")
        return answer


def _decode(raw: bytes) -> Any:
    """Decode JSON, or return the text."""
    text = raw.decode(errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def log(message: str) -> None:
    """Print a progress line that stands out from Home Assistant's log."""
    print(f"[cry-detector setup] {message}", flush=True)


def _alive(pid: int | None) -> bool:
    """Whether the process that runs Home Assistant is still there (None: unknown, assume so)."""
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_until_up(api: Api, timeout: float, pid: int | None) -> dict[str, bool]:
    """Wait for the HTTP API; return the onboarding steps and whether each is done."""
    deadline = time.monotonic() + timeout
    while True:
        if not _alive(pid):
            raise SetupError("Home Assistant stopped (see its log above)")
        try:
            status, answer = api.call("GET", "/api/onboarding")
            if status == 200 and isinstance(answer, list):
                return {step["step"]: bool(step["done"]) for step in answer}
            if status == 404:
                return {}  # onboarded before: Home Assistant drops the onboarding API
        except (error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise SetupError(f"Home Assistant did not answer at {api.base_url}")
        time.sleep(1.0)


def exchange_code(api: Api, code: str) -> str:
    """Exchange an authorization code for an access token."""
    answer = api.ok(
        "POST",
        "/auth/token",
        {"grant_type": "authorization_code", "code": code, "client_id": api.client_id},
        form=True,
    )
    return str(answer["access_token"])


def log_in(api: Api) -> str:
    """Log in as the demo user through the login flow; return an access token."""
    flow = api.ok(
        "POST",
        "/auth/login_flow",
        {
            "client_id": api.client_id,
            "handler": ["homeassistant", None],
            "redirect_uri": f"{api.base_url}/?auth_callback=1",
        },
    )
    answer = api.ok(
        "POST",
        f"/auth/login_flow/{flow['flow_id']}",
        {"client_id": api.client_id, "username": USERNAME, "password": PASSWORD},
    )
    if answer.get("type") != "create_entry":
        raise SetupError(
            f"cannot log in as {USERNAME}: {answer.get('errors')} (changed password?)"
        )
    return exchange_code(api, str(answer["result"]))


def onboard(api: Api, steps: dict[str, bool]) -> None:
    """Finish the onboarding steps not done yet; leave api holding an admin token."""
    if not steps.get("user", True):
        answer = api.ok(
            "POST",
            "/api/onboarding/users",
            {
                "client_id": api.client_id,
                "name": PERSON,
                "username": USERNAME,
                "password": PASSWORD,
                "language": "en",
            },
        )
        api.token = exchange_code(api, str(answer["auth_code"]))
        log(f"Onboarding: created the user {USERNAME} / {PASSWORD}")
    else:
        api.token = log_in(api)
    for step in ("core_config", "analytics"):
        if not steps.get(step, True):
            api.ok("POST", f"/api/onboarding/{step}", {})
    if not steps.get("integration", True):
        api.ok(
            "POST",
            "/api/onboarding/integration",
            {
                "client_id": api.client_id,
                "redirect_uri": f"{api.base_url}/?auth_callback=1",
            },
        )
    if not all(steps.values()):
        log("Onboarding: done")


def wait_until_running(api: Api, timeout: float) -> None:
    """Wait until Home Assistant has started every integration (its HTTP API comes up earlier)."""
    deadline = time.monotonic() + timeout
    while (answer := api.ok("GET", "/api/config")).get("state") != "RUNNING":
        if time.monotonic() > deadline:
            raise SetupError(f"Home Assistant is still {answer.get('state')}")
        time.sleep(1.0)


def existing_entries(api: Api) -> list[dict[str, Any]]:
    """Return the Cry Detector config entries."""
    entries: list[dict[str, Any]] = api.ok(
        "GET", f"/api/config/config_entries/entry?domain={DOMAIN}"
    )
    return entries


def _defaults(form: Mapping[str, Any]) -> dict[str, Any]:
    """Return the default of every field of a flow form."""
    return {
        field["name"]: field["default"]
        for field in form.get("data_schema", [])
        if "default" in field
    }


def submit(api: Api, flow_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Submit a form of a config flow; return the next result."""
    result: dict[str, Any] = api.ok(
        "POST", f"/api/config/config_entries/flow/{flow_id}", values
    )
    return result


def try_live_source(api: Api, name: str, pulse: bool) -> str | None:
    """Walk the user flow to a microphone (or PulseAudio); the step used, None if none works."""
    menu = api.ok(
        "POST",
        "/api/config/config_entries/flow",
        {"handler": DOMAIN, "show_advanced_options": False},
    )
    flow_id = menu["flow_id"]
    options = menu.get("menu_options", [])
    step = "microphone" if "microphone" in options else "pulse" if pulse else None
    if step is None:
        log("No microphone: PortAudio lists no capture device and no PulseAudio server")
        api.call("DELETE", f"/api/config/config_entries/flow/{flow_id}")
        return None
    form = submit(api, flow_id, {"next_step_id": step})
    if form.get("type") != "form":
        log(f"The {step} step ended: {form.get('reason')}")
        return None
    values = {**_defaults(form), "name": name}
    log(f"Config flow: {step} {values.get('device', '')}".rstrip())
    result = submit(api, flow_id, values)
    if result.get("type") == "create_entry":
        return str(step)
    log(f"The {step} source failed its test: {result.get('errors')}")
    api.call("DELETE", f"/api/config/config_entries/flow/{flow_id}")
    return None


def add_demo_stream(api: Api, name: str, path: Path) -> dict[str, Any]:
    """Walk the hidden file step for the demo stream (looping, real time)."""
    started = api.ok("POST", "/api/cry_detector_demo/file_flow", {})
    if started.get("step_id") != "file":
        raise SetupError(f"the file flow did not start: {started}")
    log(f"Config flow: audio file {path} (loop, real time)")
    result = submit(
        api,
        started["flow_id"],
        {"path": str(path), "loop": True, "realtime": True, "name": name},
    )
    if result.get("type") != "create_entry":
        raise SetupError(f"the demo stream failed its test: {result}")
    return result


def ensure_entry(api: Api, args: argparse.Namespace) -> str:
    """Create the Cry Detector entry through its config flow unless one exists; describe it."""
    if entries := existing_entries(api):
        entry = entries[0]
        log(f"Cry Detector is already set up: {entry['title']} ({entry['state']})")
        return f"{entry['title']}, set up on an earlier start"
    if args.source == "auto" and (step := try_live_source(api, args.name, args.pulse)):
        what = "the microphone" if step == "microphone" else "the PulseAudio input"
        log(f"Cry Detector set up: {args.name}, listening to {what}")
        return f"{args.name}, listening to {what}"
    add_demo_stream(api, args.name, args.demo_file.resolve())
    log(f"Cry Detector set up: {args.name}, listening to the demo stream")
    return f"{args.name}, listening to the demo stream{demo_cries(args.demo_file)}"


def demo_cries(demo_file: Path) -> str:
    """Describe when the demo stream cries (from the timeline beside it)."""
    try:
        info = json.loads(demo_file.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    cries = ", ".join(
        f"{event['start']:.0f}-{event['end']:.0f} s"
        for event in info["events"]
        if event["kind"] == "cry"
    )
    return f" (cries at {cries} of every {info['seconds']:.0f} s loop)"


def banner(shown_url: str, audio: str, seconds: float) -> None:
    """Tell the user where to look."""
    rule = "=" * 78
    print(
        f"\n{rule}\n"
        f"  Cry Detector dashboard: {shown_url}/cry-detector/nursery\n"
        f"  Log in as {USERNAME} / {PASSWORD}   (ready {seconds:.0f} s after the start)\n"
        f"  {audio}\n"
        "  Blueprint: Settings > Automations & scenes > Blueprints\n"
        "  Ctrl+C stops Home Assistant.\n"
        f"{rule}\n",
        flush=True,
    )


def entity_ids(api: Api) -> dict[str, str]:
    """Return the Cry Detector entity ids by their suffix (crying, cry_minutes_today, ...)."""
    rendered = api.ok(
        "POST",
        "/api/template",
        {"template": f"{{{{ integration_entities('{DOMAIN}') | to_json }}}}"},
    )
    ids: list[str] = json.loads(rendered) if isinstance(rendered, str) else rendered
    found: dict[str, str] = {}
    for entity_id in ids:
        for key in ("crying", "cry_minutes_today"):
            if entity_id.endswith(f"_{key}"):
                found.setdefault(key, entity_id)
    return found


def state(api: Api, entity_id: str) -> str:
    """Return an entity's state ("unavailable" when unknown yet)."""
    status, answer = api.call("GET", f"/api/states/{entity_id}")
    return str(answer["state"]) if status == 200 else "unavailable"


def watch(api: Api, seconds: float, started: float) -> bool:
    """Wait for Crying to turn on and for the cry minutes to rise; print when each happened."""
    deadline = time.monotonic() + seconds
    ids: dict[str, str] = {}
    seen_crying = False
    while time.monotonic() < deadline:
        if len(ids) < 2:
            ids = entity_ids(api)
        elif not seen_crying and state(api, ids["crying"]) == "on":
            seen_crying = True
            log(f"{ids['crying']} turned on {time.time() - started:.0f} s after start")
        elif seen_crying:
            minutes = state(api, ids["cry_minutes_today"])
            try:
                if float(minutes) > 0:
                    log(
                        f"{ids['cry_minutes_today']} = {minutes} min, "
                        f"{time.time() - started:.0f} s after start"
                    )
                    return True
            except ValueError:
                pass
        time.sleep(0.5)
    log(f"No crying seen within {seconds:.0f} s")
    return False


def main(argv: list[str] | None = None) -> int:
    """Onboard, configure, optionally watch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8123")
    parser.add_argument("--shown-url", help="the URL to print (default: --url)")
    parser.add_argument("--source", choices=("auto", "demo"), default="auto")
    parser.add_argument("--pulse", action="store_true", help="try PulseAudio too")
    parser.add_argument("--demo-file", type=Path, required=True)
    parser.add_argument("--name", default="Nursery")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--watch", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--started", type=float, default=time.time())
    parser.add_argument("--pid", type=int, help="stop waiting when this process ends")
    args = parser.parse_args(argv)
    api = Api(args.url.rstrip("/"))
    try:
        steps = wait_until_up(api, args.timeout, args.pid)
        log(f"Home Assistant answers after {time.time() - args.started:.0f} s")
        onboard(api, steps)
        wait_until_running(api, args.timeout)
        audio = ensure_entry(api, args)
        banner(args.shown_url or api.base_url, audio, time.time() - args.started)
        if args.watch and not watch(api, args.watch, args.started):
            return 2
    except SetupError as err:
        log(f"FAILED: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
