"""The dashboard as a person sees it: a real mosquitto, the real daemon on the sample clip,
`edge-agent dashboard`, and the page in Debian's headless Chromium (selenium)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from helpers import need, wait_until
from helpers.daemon import on_a_clip, write
from helpers.dashboard import REPO, Dashboard, chrome
from helpers.mqtt import Collector, Mosquitto, free_port

pytestmark = pytest.mark.slow

CLIP = "WolfgangLanger_Pexels.mp4"
DEVICE = "dash-cam"
EVIL = "<script>window.pwned=1<script>"  # a topic level cannot hold "/"


def run_daemon(config: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(config)],
        cwd=REPO,
        env={**env, "EDGE_AGENT_LOG": "stderr"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def publish(broker: Mosquitto, messages: list[tuple[str, Any, bool]]) -> None:
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    for topic, payload, retain in messages:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        client.publish(topic, data, qos=1, retain=retain).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def texts(driver: Any, selector: str) -> list[str]:
    return [
        element.text
        for element in driver.find_elements("css selector", selector)
        if element.is_displayed()
    ]


def test_the_page_shows_a_live_daemon_its_events_its_end_and_markup_as_text(
    tmp_path: Path, media, mosquitto: Mosquitto
):
    chromium, chromedriver = need("chromium"), need("chromedriver")
    broker = (mosquitto.host, mosquitto.port)
    config = on_a_clip(tmp_path, media(CLIP), DEVICE, broker, stats_interval_s=1.0)
    config.mqtt.discovery = False
    publish(mosquitto, [(f"edge-agent/{EVIL}/availability", "<img src=x onerror=pwned=2>", True)])

    events: dict[int, float] = {}  # seq -> when the broker delivered it to a subscriber

    with (
        Collector(mosquitto, (f"edge-agent/{DEVICE}/events",)) as collector,
        Dashboard(
            "--config",
            str(write(tmp_path / "dashboard.toml", config)),
            "--listen",
            f"127.0.0.1:{free_port()}",
        ) as dashboard,
    ):
        collector.client.on_message = lambda _c, _u, m: events.setdefault(
            json.loads(m.payload)["seq"], time.time()
        )
        driver = chrome(chromium, chromedriver)
        daemon = run_daemon(write(tmp_path / "daemon.toml", config))
        try:
            driver.get(dashboard.url())
            tile = f'.tile[data-device="{DEVICE}"]'
            assert wait_until(lambda: driver.find_elements("css selector", tile), 60), (
                dashboard.output()
            )
            assert wait_until(lambda: texts(driver, f"{tile} .badge") == ["online"], 60)

            # Each event the broker delivered shows in the log within a few seconds.
            assert wait_until(lambda: events, 60), "the daemon published no event"
            seq, published = min(events.items())
            row = f'#log tr[data-seq="{seq}"]'
            assert wait_until(lambda: driver.find_elements("css selector", row), 5)
            shown = time.time()
            assert shown - published < 5
            cells = driver.find_element("css selector", row).text
            assert DEVICE in cells and f"#{seq}" in cells
            assert "face appeared" in texts(driver, "#log td.type")
            assert wait_until(lambda: "fps" in " ".join(texts(driver, f"{tile} .meta")), 10)

            # Markup in a device id and in a payload is text, never markup.
            publish(
                mosquitto,
                [
                    (
                        f"edge-agent/{EVIL}/events",
                        {
                            "id": "evil-1",
                            "seq": 1,
                            "type": "<script>window.pwned=3</script>",
                            "ts": "<b>bold</b>",
                            "emotion": "<img src=x onerror=window.pwned=4>",
                        },
                        False,
                    )
                ],
            )
            assert wait_until(
                lambda: "<script>window.pwned=3</script>" in texts(driver, "#log td.type"), 10
            )
            assert EVIL in texts(driver, ".tile .name")
            assert "<img src=x onerror=pwned=2>" in texts(driver, ".tile .badge")
            assert "<img src=x onerror=window.pwned=4>" in " ".join(texts(driver, "#log td"))
            assert driver.execute_script("return typeof window.pwned") == "undefined"
            assert driver.execute_script("return document.scripts.length") == 2
            assert driver.find_elements("css selector", "main img, main b") == []

            # The daemon stops: its tile says offline, and its faces are gone.
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(10) == 0
            assert wait_until(lambda: texts(driver, f"{tile} .badge") == ["offline"], 10)
            assert texts(driver, f"{tile} .now .count") == ["0 faces"]
            # No CSP violation or script error on the way (uPlot included).
            severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert severe == [], severe
        finally:
            driver.quit()
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(5)
    assert "Traceback" not in dashboard.output()
