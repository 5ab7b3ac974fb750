"""Load benchmark of `edge-agent dashboard`: N simulated devices, one page, real parts.

    .venv/bin/python scripts/dashboard_load.py [--devices 1 10 50] [--seconds 30]

For each N: a fresh mosquitto on loopback, N simulated devices (one MQTT client each)
publishing the payload shapes of docs/mqtt.md and the #12 contract at a busy device's rate
(a face always in view: faces at 5 Hz, state at 1 Hz, `--events-per-min` events, stats every
5 s, availability retained), `edge-agent dashboard`, and the page in headless Chromium
(tests/helpers/dashboard.py). After a warm-up it measures for `--seconds`:

- the dashboard process's CPU (user + system time over wall time, % of one core) and its
  largest resident memory (VmHWM);
- the delay from publish to the page, measured in the page: each event's `ts` is the
  publish time, and a MutationObserver on the event log takes the time when the row is
  drawn (the next animation frame after it enters the DOM);
- the page's responsiveness: the largest lag of a 100 ms timer in the page, and the total
  of long tasks (main thread busy > 50 ms at once).

Prints one table (Markdown) and, with --json, one JSON line per N. Everything runs on this
machine: publishers, broker, dashboard and browser share its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the launchers the browser tests use

import paho.mqtt.client as paho  # noqa: E402
from helpers import wait_until  # noqa: E402
from helpers.dashboard import Dashboard, chrome  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from edge_agent.demo.mosquitto import Mosquitto, find_binary, free_port  # noqa: E402
from edge_agent.publish.messages import iso_utc  # noqa: E402
from edge_agent.types import EMOTIONS  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FACES_HZ = 5.0
STATE_HZ = 1.0
STATS_EVERY_S = 5.0

# Installed in the page before the measurement: a row's delay is taken at the animation
# frame after it is added, i.e. when it is drawn.
PROBE = """
window.__load = {delays: [], lags: [], longTasks: 0};
const body = document.querySelector('#log tbody');
new MutationObserver((records) => {
  const added = [];
  for (const r of records) {
    for (const n of r.addedNodes) if (n.dataset && n.dataset.ts) added.push(n);
  }
  if (!added.length) return;
  requestAnimationFrame(() => {
    const now = Date.now();
    for (const n of added) window.__load.delays.push(now - Date.parse(n.dataset.ts));
  });
}).observe(body, {childList: true});
let last = performance.now();
setInterval(() => {
  const now = performance.now();
  window.__load.lags.push(now - last - 100);
  last = now;
}, 100);
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__load.longTasks += e.duration;
}).observe({entryTypes: ['longtask']});
"""


class Device:
    """One simulated device: its own client, a face that changes its mind."""

    def __init__(self, name: str, port: int, events_per_min: float, rng: random.Random) -> None:
        self.name = name
        self.base = f"edge-agent/{name}"
        self.rng = rng
        self.events_per_min = events_per_min
        self.seq = 0
        self.emotion = rng.choice(EMOTIONS)
        self.started = time.time()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{name}")
        self.client.will_set(f"{self.base}/availability", "offline", qos=1, retain=True)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def publish(self, kind: str, payload: Any, qos: int, retain: bool) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        self.client.publish(f"{self.base}/{kind}", data, qos=qos, retain=retain)

    def scores(self) -> dict[str, float]:
        raw = {label: self.rng.random() * 0.1 for label in EMOTIONS}
        raw[self.emotion] += 0.8
        total = sum(raw.values())
        return {label: round(value / total, 4) for label, value in raw.items()}

    def face(self, detail: bool) -> dict[str, Any]:
        face: dict[str, Any] = {"track": 1, "emotion": self.emotion, "age": 34, "gender": "female"}
        if detail:
            face.update(emotion_scores=self.scores(), age=33.6, gender_score=0.82)
        return face

    def faces(self) -> None:
        self.publish(
            "faces",
            {
                "device": self.name,
                "updated_at": iso_utc(time.time()),
                "face_count": 1,
                "faces": [self.face(True)],
            },
            0,
            True,
        )

    def state(self) -> None:
        self.publish(
            "state",
            {
                "device": self.name,
                "updated_at": iso_utc(time.time()),
                "face_count": 1,
                "dominant_emotion": self.emotion,
                "faces": [self.face(False)],
            },
            1,
            True,
        )

    def event(self) -> None:
        previous, self.emotion = (
            self.emotion,
            self.rng.choice([e for e in EMOTIONS if e != self.emotion]),
        )
        self.seq += 1
        now = time.time()
        self.publish(
            "events",
            {
                "id": f"{self.name}-{self.seq}",
                "seq": self.seq,
                "type": "emotion_changed",
                "ts": iso_utc(now),
                "device": self.name,
                "t": round(now - self.started, 3),
                "track": 1,
                "emotion": self.emotion,
                "previous_emotion": previous,
                "emotion_scores": self.scores(),
                "age": 33.6,
                "gender": "female",
                "gender_score": 0.82,
                "duration_s": None,
            },
            1,
            False,
        )

    def stats(self) -> None:
        self.publish(
            "stats",
            {
                "device": self.name,
                "ts": iso_utc(time.time()),
                "accelerator": "cpu",
                "fps": round(14 + self.rng.random(), 1),
                "latency_ms": {"p50": 41.2, "p95": 58.0, "p99": 71.5},
                "frames_dropped": 0,
                "frames_processed": int((time.time() - self.started) * 15),
                "camera": "ok",
                "uptime_s": round(time.time() - self.started, 1),
                "cpu_temp_c": 52.1,
                "outbox_depth": 0,
                "events_dropped": 0,
            },
            0,
            True,
        )

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Fleet:
    """Every device on one timetable, driven by one thread (offsets spread them out)."""

    def __init__(self, devices: list[Device]) -> None:
        self.devices = devices
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        for device in self.devices:
            device.publish("availability", "online", 1, True)
            device.stats()
            device.state()
        self.thread.start()

    def _run(self) -> None:
        n = len(self.devices)
        rng = random.Random(1)
        tick = 1.0 / FACES_HZ
        next_at = time.monotonic()
        frame = 0
        while not self.stop_flag.is_set():
            for index, device in enumerate(self.devices):
                if self.stop_flag.is_set():
                    return
                device.faces()
                if frame % int(FACES_HZ / STATE_HZ) == index % int(FACES_HZ / STATE_HZ):
                    device.state()
                if rng.random() < device.events_per_min / 60.0 * tick:
                    device.event()
                if frame % int(FACES_HZ * STATS_EVERY_S) == index % int(FACES_HZ * STATS_EVERY_S):
                    device.stats()
                time.sleep(tick / n / 4)  # spread the devices over the tick
            frame += 1
            next_at += tick
            time.sleep(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(5)
        for device in self.devices:
            device.stop()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_level(n: int, args: argparse.Namespace, chromium: str, chromedriver: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dashboard-load-") as folder:
        work = Path(folder)
        broker = Mosquitto(work / "mosquitto").start()
        rng = random.Random(n)
        devices = [Device(f"sim-{i:03d}", broker.port, args.events_per_min, rng) for i in range(n)]
        fleet = Fleet(devices)
        config = work / "dashboard.toml"
        config.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n')
        driver = None
        try:
            fleet.start()
            with Dashboard(
                "--config", str(config), "--listen", f"127.0.0.1:{free_port()}"
            ) as board:
                driver = chrome(chromium, chromedriver, width=1400, height=1000)
                driver.get(board.url())
                if not wait_until(
                    lambda: len(driver.find_elements("css selector", ".tile")) >= n, 60
                ):
                    raise RuntimeError(f"the page did not show {n} devices")
                time.sleep(args.warmup)
                driver.execute_script(PROBE)
                pid = board.process.pid
                cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
                time.sleep(args.seconds)
                cpu = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
                probe = driver.execute_script("return window.__load")
                rss = peak_rss_mb(pid)
        finally:
            if driver is not None:
                driver.quit()
            fleet.stop()
            broker.stop()
    delays = [float(d) for d in probe["delays"]]
    lags = [float(v) for v in probe["lags"]]
    rate = n * (FACES_HZ + STATE_HZ + args.events_per_min / 60 + 1 / STATS_EVERY_S)
    return {
        "devices": n,
        "messages_per_s": round(rate),
        "dashboard_cpu_percent": round(cpu * 100, 1),
        "dashboard_peak_rss_mb": round(rss, 1),
        "events_measured": len(delays),
        "delay_ms_p50": round(percentile(delays, 0.5)),
        "delay_ms_p95": round(percentile(delays, 0.95)),
        "delay_ms_max": round(max(delays, default=float("nan"))),
        "page_timer_lag_ms_p95": round(percentile(lags, 0.95)),
        "page_timer_lag_ms_max": round(max(lags, default=float("nan"))),
        "page_long_tasks_ms_per_s": round(probe["longTasks"] / args.seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured per level")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--events-per-min", type=float, default=20.0, help="per device")
    parser.add_argument("--json", action="store_true", help="also one JSON line per level")
    args = parser.parse_args()
    chromium, chromedriver = find_binary("chromium"), find_binary("chromedriver")
    if not (chromium and chromedriver):
        print("dashboard_load: needs chromium and chromium-driver", file=sys.stderr)
        return 1
    results = []
    for n in args.devices:
        result = run_level(n, args, chromium, chromedriver)
        results.append(result)
        if args.json:
            print(json.dumps(result), flush=True)
    print(
        "| devices | msg/s | dashboard CPU | dashboard peak RSS | publish to page p50 / p95 / max"
        " | page timer lag p95 / max | long tasks |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['devices']} | {r['messages_per_s']} | {r['dashboard_cpu_percent']} % "
            f"| {r['dashboard_peak_rss_mb']} MB "
            f"| {r['delay_ms_p50']} / {r['delay_ms_p95']} / {r['delay_ms_max']} ms "
            f"({r['events_measured']} events) "
            f"| {r['page_timer_lag_ms_p95']} / {r['page_timer_lag_ms_max']} ms "
            f"| {r['page_long_tasks_ms_per_s']} ms/s |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
