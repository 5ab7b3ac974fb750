"""The README's picture of the dashboard, made the way a person would see it.

    .venv/bin/python scripts/dashboard_screenshot.py [--out docs/images/dashboard.png]

Starts a throwaway mosquitto, two real daemons (`edge-agent run`) on the sample clips with
faces, `edge-agent dashboard`, and Debian's headless Chromium (the same launcher as the
browser tests, tests/helpers/dashboard.py); lets the timelines fill for `--seconds`, waits
until faces are in view and saves a screenshot. Needs chromium and chromium-driver
(scripts/install-dev-deps.sh). Exit 0 on success, 1 with one line when something is missing
or never showed.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the launchers the browser tests use

from helpers import wait_until  # noqa: E402
from helpers.daemon import base_config, write  # noqa: E402
from helpers.dashboard import Dashboard, chrome  # noqa: E402

from edge_agent.demo.mosquitto import Mosquitto, find_binary, free_port  # noqa: E402
from edge_agent.demo.samples import sample  # noqa: E402

CAMERAS = {"kitchen": "WolfgangLanger_Pexels.mp4", "front-desk": "single_face.mp4"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "dashboard.png")
    parser.add_argument("--seconds", type=float, default=45.0, help="timeline history first")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1050)
    args = parser.parse_args()
    chromium, chromedriver = find_binary("chromium"), find_binary("chromedriver")
    if not (chromium and chromedriver):
        print("dashboard_screenshot: needs chromium and chromium-driver", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="dashboard-shot-") as folder:
        work = Path(folder)
        broker = Mosquitto(work / "mosquitto").start()
        daemons: list[subprocess.Popen[bytes]] = []
        try:
            config = base_config(work)
            config.mqtt.enabled = True
            config.mqtt.host, config.mqtt.port = broker.host, broker.port
            config.mqtt.stats_interval_s = 2.0
            config.mqtt.discovery = False
            config.camera.loop = True
            for device, clip in CAMERAS.items():
                config.device_id = device
                config.camera.source = str(sample(clip))
                config.state.dir = str(work / device)
                daemons.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "edge_agent.cli",
                            "run",
                            "--config",
                            str(write(work / f"{device}.toml", config)),
                        ],
                        cwd=REPO,
                        env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            board_config = work / "dashboard.toml"
            board_config.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n')
            with Dashboard(
                "--config", str(board_config), "--listen", f"127.0.0.1:{free_port()}"
            ) as board:
                return _shoot(board.url(), chromium, chromedriver, args)
        finally:
            for daemon in daemons:
                daemon.send_signal(signal.SIGTERM)
            for daemon in daemons:
                try:
                    daemon.wait(10)
                except subprocess.TimeoutExpired:
                    daemon.kill()
            broker.stop()


def _shoot(url: str, chromium: str, chromedriver: str, args: argparse.Namespace) -> int:
    driver = chrome(chromium, chromedriver, width=args.width, height=args.height)
    try:
        driver.get(url)

        def faces_in_view() -> bool:
            counts = driver.find_elements("css selector", ".tile .face")
            return len(counts) >= len(CAMERAS)

        if not wait_until(faces_in_view, 90, interval=0.2):
            print("dashboard_screenshot: no face showed on the page", file=sys.stderr)
            return 1
        time.sleep(args.seconds)
        if not wait_until(faces_in_view, 30, interval=0.1):
            print("dashboard_screenshot: the faces left the page", file=sys.stderr)
            return 1
        time.sleep(1.2)  # one chart tick, so every timeline reaches "now"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
    finally:
        driver.quit()
    print(f"dashboard_screenshot: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
