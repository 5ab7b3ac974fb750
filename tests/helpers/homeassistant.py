"""A real Home Assistant for the acceptance test and the screenshot script: its own venv
(built once per machine, outside the repo), started on loopback against a real mosquitto,
onboarded, with the MQTT integration set up as a user sets it up, and spoken to through
the same REST and websocket APIs the frontend uses.

`ha_venv()` builds or finds the venv; `HomeAssistant(directory, broker_port)` runs it;
`Stack` runs it with mosquitto and the real daemon on a clip, as an owner would.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.demo.mosquitto import free_port
from edge_agent.publish.discovery import node_id
from helpers import wait_until
from helpers.daemon import Daemon, on_a_clip, write
from helpers.mqtt import Collector, Mosquitto

HA_VERSION = "2024.3.3"  # the last release that runs on Python 3.11
VENV_ENV = "EDGE_AGENT_HA_VENV"
HOST = "127.0.0.1"
# On top of Home Assistant's own pins: the requirements of every integration it loads here
# (ours in configuration.yaml and its DEFAULT_INTEGRATIONS, which 2024.3 always sets up:
# mqtt and file_upload, person's image_upload, frontend, analytics and hardware, backup;
# the recorder that analytics imports though it is not set up; camera and the stream it
# imports, since the MQTT entry sets up every MQTT platform), so that it never needs pip
# at run time; and josepy 1, since with josepy 2 every request fails on
# `module 'josepy' has no attribute 'ComparableX509'`.
EXTRA_REQUIREMENTS = (
    "paho-mqtt==1.6.1",
    "janus==1.0.0",
    "Pillow==10.2.0",
    "home-assistant-frontend==20240307.0",
    "psutil-home-assistant==0.0.1",
    "securetar==2024.2.1",
    "SQLAlchemy==2.0.27",
    "fnv-hash-fast==0.5.0",
    "PyTurboJPEG==1.7.1",
    "ha-av==10.1.1",
    "numpy==1.26.0",
    "josepy<2",
)
# Written last into a finished venv: a venv built from another list is built again.
STAMP = "edge-agent-requirements.txt"
INTEGRATIONS = (
    "api",
    "websocket_api",
    "auth",
    "config",
    "onboarding",
    "frontend",
    "mqtt",
    "sensor",
    "binary_sensor",
    "event",
    "device_automation",
)
OWNER = {"name": "Owner", "username": "owner", "password": "edge-agent-test", "language": "en"}


class VenvError(RuntimeError):
    """The Home Assistant venv could not be built (no PyPI, a failing pip)."""


def venv_path() -> Path:
    override = os.environ.get(VENV_ENV)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "edge-agent" / f"ha-{HA_VERSION}"


def _wanted() -> str:
    return "\n".join((f"homeassistant=={HA_VERSION}", *EXTRA_REQUIREMENTS)) + "\n"


def _is_built(venv: Path) -> bool:
    stamp = venv / STAMP
    return stamp.exists() and stamp.read_text() == _wanted()


def ha_venv(log: Callable[[str], None] = lambda _line: None) -> Path:
    """The path of a venv with Home Assistant installed, building it on first use.

    Built in a scratch folder beside the target and renamed into place only when every
    install step succeeded, so an interrupted build never passes for a good one. A file
    lock keeps two test processes from building it at once. The venv is run as
    `<venv>/bin/python -m homeassistant`: its console scripts would carry the scratch
    folder's path in their shebang lines.
    """
    target = venv_path()
    if _is_built(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_built(target):
            return target
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.build-", dir=target.parent))
        try:
            _build(scratch, log)
            (scratch / STAMP).write_text(_wanted())
            if target.exists():  # built from an older list
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                target.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            scratch.rename(target)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
    return target


def _build(venv: Path, log: Callable[[str], None]) -> None:
    def run(*args: str, timeout: float) -> None:
        log(" ".join(args))
        try:
            done = subprocess.run(
                args, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as error:
            raise VenvError(f"{args[0]} took over {timeout:.0f} s") from error
        if done.returncode != 0:
            raise VenvError(f"{' '.join(args[:5])} ... failed:\n{done.stderr[-3000:]}")

    base = getattr(sys, "_base_executable", sys.executable)
    run(base, "-m", "venv", str(venv), timeout=120)
    pip = (str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check")
    with tempfile.TemporaryDirectory() as downloads:
        run(
            *pip,
            "download",
            "--no-deps",
            "-d",
            downloads,
            f"homeassistant=={HA_VERSION}",
            timeout=600,
        )
        wheel = next(Path(downloads).glob("homeassistant-*.whl"))
        constraints = Path(downloads) / "package_constraints.txt"
        with zipfile.ZipFile(wheel) as archive:
            constraints.write_bytes(archive.read("homeassistant/package_constraints.txt"))
        run(
            *pip,
            "install",
            "--quiet",
            "-c",
            str(constraints),
            str(wheel),
            *EXTRA_REQUIREMENTS,
            timeout=3600,
        )


class HaError(RuntimeError):
    """Home Assistant did not start, or answered an API call with an error."""


class Websocket:
    """An authenticated connection to /api/websocket: `call()` waits for its result while a
    reader thread files subscription events by subscription id (`events(sub)`)."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        import websocket

        self.timeout = timeout
        self._ws = websocket.create_connection(url, timeout=timeout)
        if json.loads(self._ws.recv())["type"] != "auth_required":
            raise HaError("the websocket did not ask for auth")
        self._ws.send(json.dumps({"type": "auth", "access_token": token}))
        reply = json.loads(self._ws.recv())
        if reply["type"] != "auth_ok":
            raise HaError(f"websocket auth failed: {reply}")
        self._next_id = 1
        self._lock = threading.Lock()
        self._results: dict[int, dict[str, Any]] = {}
        self._events: dict[int, list[dict[str, Any]]] = {}
        self._arrived = threading.Condition(self._lock)
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        import websocket

        while not self._closed:
            try:
                raw = self._ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketException, OSError):
                break
            if not raw:
                continue
            message = json.loads(raw)
            with self._arrived:
                if message.get("type") == "event":
                    self._events.setdefault(message["id"], []).append(message["event"])
                else:
                    self._results[message["id"]] = message
                self._arrived.notify_all()
        with self._arrived:
            self._closed = True
            self._arrived.notify_all()

    def send(self, kind: str, **data: Any) -> int:
        with self._lock:
            ident = self._next_id
            self._next_id += 1
        self._ws.send(json.dumps({"id": ident, "type": kind, **data}))
        return ident

    def call(self, kind: str, **data: Any) -> Any:
        """The `result` of one command; HaError when HA answers `success: false`."""
        return self._result(self.send(kind, **data), kind)

    def subscribe_events(self, event_type: str) -> int:
        """The subscription id; its events collect in `events(id)` from now on."""
        ident = self.send("subscribe_events", event_type=event_type)
        self._result(ident, "subscribe_events")
        return ident

    def _result(self, ident: int, kind: str) -> Any:
        deadline = time.monotonic() + self.timeout
        with self._arrived:
            while ident not in self._results:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise HaError(f"no answer to {kind} (connection closed: {self._closed})")
                self._arrived.wait(left)
            reply = self._results.pop(ident)
        if not reply.get("success"):
            raise HaError(f"{kind} failed: {reply.get('error')}")
        return reply.get("result")

    @property
    def closed(self) -> bool:
        return self._closed

    def events(self, subscription: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events.get(subscription, ()))

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            self._ws.close()
        self._reader.join(5)

    def __enter__(self) -> Websocket:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class HomeAssistant:
    """`python -m homeassistant -c DIR` from the venv, on 127.0.0.1 and a free port, with
    the MQTT integration pointing at the broker on `broker_port`.

    `start()` the first time also onboards the owner and adds the MQTT config entry the
    way the UI does (REST flow); later starts (`restart()`) reuse the stored tokens. Runs
    with `--skip-pip`: HA never installs anything at run time, so a requirement missing
    from the venv shows up as an import error in its log, not as a download.
    """

    def __init__(
        self,
        directory: Path,
        broker_port: int,
        *,
        venv: Path | None = None,
        port: int | None = None,
    ) -> None:
        self.directory = directory
        self.broker_port = broker_port
        self.venv = venv or ha_venv()
        self.port = port or free_port()
        self.tokens: dict[str, Any] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self.client_id = f"http://{HOST}:{self.port}/"
        self.starts = 0

    # -- files -------------------------------------------------------------------------

    def log_files(self) -> list[Path]:
        """This instance's logs, one per start (HA would rotate a single file away)."""
        return [self.directory / f"home-assistant.{n}.log" for n in range(1, self.starts + 1)]

    def log(self) -> str:
        """Everything HA logged since the first start."""
        return "".join(p.read_text(errors="replace") for p in self.log_files() if p.exists())

    def log_lines(self, levels: tuple[str, ...] = ("WARNING", "ERROR", "CRITICAL")) -> list[str]:
        """Log records at these levels, continuation lines (tracebacks) joined to theirs."""
        records: list[str] = []
        for line in self.log().splitlines():
            if line[:4].isdigit() and " " in line:
                records.append(line)
            elif records:
                records[-1] += "\n" + line
        return [r for r in records if r.split(" ", 3)[2:3] and r.split(" ", 3)[2] in levels]

    def _write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [
            "homeassistant:",
            "  name: edge-agent test",
            # A fixed location and units: with none HA would guess them over the network.
            "  latitude: 52.37",
            "  longitude: 4.89",
            "  elevation: 0",
            "  unit_system: metric",
            "  time_zone: UTC",
            "  currency: EUR",
            "  country: NL",
            "http:",
            f"  server_host: {HOST}",
            f"  server_port: {self.port}",
            "logger:",
            "  default: warning",
            # Where the UI's automation editor (and POST /api/config/automation/config) writes.
            "automation: !include automations.yaml",
            *(f"{name}:" for name in INTEGRATIONS),
        ]
        (self.directory / "configuration.yaml").write_text("\n".join(lines) + "\n")
        automations = self.directory / "automations.yaml"
        if not automations.exists():
            automations.write_text("[]\n")

    # -- process -----------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> HomeAssistant:
        first = not (self.directory / ".storage" / "onboarding").exists()
        self._write_config()
        self.starts += 1
        self._stdout = open(self.directory / "stdout.log", "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                str(self.venv / "bin" / "python"),
                "-m",
                "homeassistant",
                "-c",
                str(self.directory),
                "--skip-pip",
                "--log-file",
                str(self.log_files()[-1]),
            ],
            stdout=self._stdout,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
            start_new_session=True,
        )
        try:
            if not wait_until(self._answers, timeout, interval=0.5):
                raise HaError(self._failure("did not answer on HTTP"))
            if first:
                self._onboard()
                self._add_mqtt_entry()
            else:
                self._refresh()
            if not wait_until(self._running, timeout, interval=0.5):
                raise HaError(self._failure("did not reach RUNNING"))
            if not wait_until(self._mqtt_loaded, 60, interval=0.5):
                raise HaError(self._failure("the MQTT entry did not load"))
        except BaseException:
            self.stop()
            raise
        return self

    def _failure(self, what: str) -> str:
        code = self.process.poll() if self.process else None
        tail = "\n".join(self.log().splitlines()[-30:])
        return f"Home Assistant {what} (exit code {code}); end of its log:\n{tail}"

    def _answers(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise HaError(self._failure("exited"))
        try:
            self.rest("GET", "/api/onboarding", auth=False)
        except HaError:
            return True  # an HTTP error is an answer; the next step says what is wrong
        except OSError:
            return False
        return True

    def _running(self) -> bool:
        return bool(self.rest("GET", "/api/config").get("state") == "RUNNING")

    def _mqtt_loaded(self) -> bool:
        entries = self.rest("GET", "/api/config/config_entries/entry")
        return any(e["domain"] == "mqtt" and e["state"] == "loaded" for e in entries)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM and wait (HA writes its storage on the way out); SIGKILL after timeout."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if getattr(self, "_stdout", None) is not None:
            self._stdout.close()

    def restart(self, timeout: float = 180.0) -> HomeAssistant:
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> HomeAssistant:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- REST --------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def rest(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: bool = True,
        form: bool = False,
        timeout: float = 30.0,
    ) -> Any:
        """JSON in, JSON out; HaError with HA's message on an HTTP error."""
        headers = {}
        data = None
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.tokens['access_token']}"
        request = urllib.request.Request(self.url(path), data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            raise HaError(f"{method} {path}: {error.code} {error.read().decode()[:500]}") from error
        return json.loads(text) if text else None

    def _onboard(self) -> None:
        """The owner through onboarding, then the analytics and integration steps; the
        core_config step is left out because finishing it starts integrations (met,
        radio_browser, ...) that reach the internet. `finish_onboarding()` does it for the
        frontend."""
        created = self.rest(
            "POST", "/api/onboarding/users", {**OWNER, "client_id": self.client_id}, auth=False
        )
        self._token({"grant_type": "authorization_code", "code": created["auth_code"]})
        self.rest("POST", "/api/onboarding/analytics", {})
        self.rest(
            "POST",
            "/api/onboarding/integration",
            {"client_id": self.client_id, "redirect_uri": f"{self.client_id}?auth_callback=1"},
        )

    def finish_onboarding(self) -> None:
        """Marks the core_config step done in HA's onboarding store, with HA stopped, and
        starts it again: the frontend shows the onboarding wizard until every step is done."""
        self.stop()
        store = self.directory / ".storage" / "onboarding"
        data = json.loads(store.read_text())
        done = data["data"]["done"]
        if "core_config" not in done:
            done.append("core_config")
        store.write_text(json.dumps(data))
        self.start()

    def _token(self, grant: dict[str, str]) -> None:
        reply = self.rest(
            "POST", "/auth/token", {**grant, "client_id": self.client_id}, auth=False, form=True
        )
        self.tokens = {**self.tokens, **reply, "obtained_at": time.time()}

    def _refresh(self) -> None:
        self._token({"grant_type": "refresh_token", "refresh_token": self.tokens["refresh_token"]})

    def _add_mqtt_entry(self) -> None:
        flow = self.rest("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        if flow.get("type") != "form":
            raise HaError(f"the MQTT flow did not ask for a broker: {flow}")
        done = self.rest(
            "POST",
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {"broker": HOST, "port": self.broker_port},
        )
        if done.get("type") != "create_entry":
            raise HaError(f"the MQTT flow did not create an entry: {done}")

    # -- websocket ---------------------------------------------------------------------

    def websocket(self) -> Websocket:
        return Websocket(f"ws://{HOST}:{self.port}/api/websocket", self.tokens["access_token"])

    def states(self) -> dict[str, dict[str, Any]]:
        return {s["entity_id"]: s for s in self.rest("GET", "/api/states")}


# -- the whole stack: mosquitto, Home Assistant and the daemon on a clip --------------------


class Stack:
    """What an owner runs, on loopback: mosquitto, Home Assistant with the MQTT entry, and
    the real daemon (`edge-agent run`) on a looping clip with discovery on.

    `entities()` maps each of the device's object ids (`face_count`, ...) to its entity
    registry entry; `states()` are HA's states of those entities by object id.
    """

    def __init__(
        self,
        directory: Path,
        clip: Path,
        *,
        device: str = "ha-kitchen",
        area: str = "Kitchen",
        stats_interval_s: float = 2.0,
    ) -> None:
        self.directory = directory
        self.clip = clip
        self.device = device
        self.area = area
        self.stats_interval_s = stats_interval_s
        self.broker = Mosquitto(directory / "mosquitto")
        self.ha: HomeAssistant | None = None
        self.collector: Collector | None = None
        self.agent: Daemon | None = None
        self._ws: Websocket | None = None

    def start(self) -> Stack:
        self.broker.start()
        try:
            self.collector = Collector(
                self.broker, (f"edge-agent/{self.device}/#", "homeassistant/#")
            ).start()
            self.ha = HomeAssistant(self.directory / "homeassistant", self.broker.port).start()
            self.start_agent()
        except BaseException:
            self.stop()
            raise
        return self

    def agent_config(self) -> Path:
        broker = (self.broker.host, self.broker.port)
        config = on_a_clip(
            self.directory, self.clip, self.device, broker, stats_interval_s=self.stats_interval_s
        )
        config.mqtt.reconnect_min_s, config.mqtt.reconnect_max_s = 0.1, 1.0
        config.mqtt.area = self.area
        return write(self.directory / "agent.toml", config)

    def start_agent(self) -> None:
        self.agent = Daemon(self.agent_config(), None, watchdog_usec=None)

    def agent_running(self) -> bool:
        return self.agent is not None and self.agent.process.poll() is None

    @property
    def ws(self) -> Websocket:
        """A websocket to the running HA, opened again after a restart."""
        assert self.ha is not None
        if self._ws is None or self._ws.closed:
            self._ws = self.ha.websocket()
        return self._ws

    def restart_ha(self, *, finish_onboarding: bool = False) -> None:
        assert self.ha is not None
        if self._ws is not None:
            self._ws.close()
            self._ws = None
        if finish_onboarding:
            self.ha.finish_onboarding()
        else:
            self.ha.restart()

    def device_entry(self) -> dict[str, Any] | None:
        wanted = ["mqtt", f"edge_agent_{node_id(self.device)}"]
        for device in self.ws.call("config/device_registry/list"):
            if wanted in device["identifiers"]:
                return dict(device)
        return None

    def entities(self) -> dict[str, dict[str, Any]]:
        device = self.device_entry()
        if device is None:
            return {}
        prefix = f"edge_agent_{node_id(self.device)}_"
        return {
            entry["unique_id"].removeprefix(prefix): entry
            for entry in self.ws.call("config/entity_registry/list")
            if entry["device_id"] == device["id"] and entry["unique_id"].startswith(prefix)
        }

    def states(self) -> dict[str, dict[str, Any]]:
        assert self.ha is not None
        by_entity = {e["entity_id"]: o for o, e in self.entities().items()}
        return {
            by_entity[s["entity_id"]]: s
            for s in self.ws.call("get_states")
            if s["entity_id"] in by_entity
        }

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.kill()
        if self._ws is not None:
            self._ws.close()
        if self.ha is not None:
            self.ha.stop()
        if self.collector is not None:
            self.collector.stop()
        self.broker.stop()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
