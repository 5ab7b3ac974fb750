#!/usr/bin/env python3
"""Screenshot of the agent's device page in a real Home Assistant, for docs/mqtt.md.

Starts what tests/test_home_assistant.py runs (mosquitto, Home Assistant 2024.3.3 from its
cached venv, the daemon on the sample clip with a face in view, all on loopback), logs the
frontend in by putting the owner's tokens into the page's localStorage (`hassTokens`, where
the frontend keeps them) and saves the page from Debian's headless chromium, driven by
selenium through Debian's chromedriver (scripts/install-dev-deps.sh installs both).

    .venv/bin/python scripts/ha_screenshot.py [--out docs/images/ha-device.png]

Exit codes: 0 saved; 1 the page did not show the device in time; 69 chromium, chromedriver,
mosquitto or the Home Assistant venv is missing or cannot be built.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from helpers.homeassistant import Stack

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SIZE = (1200, 1320)  # two columns, down to the last diagnostic sensor
# Shadow DOM all the way down: collect the text of every open shadow root.
PAGE_TEXT = """
const parts = [];
const walk = (node) => {
  if (node.shadowRoot) walk(node.shadowRoot);
  for (const child of node.children || []) walk(child);
  if (node.nodeType === 1 && !node.children.length) parts.push(node.textContent);
};
walk(document.documentElement);
return parts.join(' ');
"""
# Integration logos come from the internet (brands.home-assistant.io), out of reach here:
# hide them rather than show broken images.
HIDE_LOGOS = """
const walk = (node) => {
  if (node.shadowRoot) walk(node.shadowRoot);
  for (const child of node.children || []) walk(child);
  if (node.tagName === 'IMG' && node.src.includes('brands.home-assistant.io')) {
    node.style.visibility = 'hidden';
  }
};
walk(document.documentElement);
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "ha-device.png")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds for the page")
    args = parser.parse_args()
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not tool.exists():
            print(f"{tool} is missing (scripts/install-dev-deps.sh installs it)", file=sys.stderr)
            return 69

    import pytest
    from helpers.homeassistant import Stack, VenvError, ha_venv

    from edge_agent.demo.samples import sample

    try:
        ha_venv(lambda line: print(f"building the Home Assistant venv: {line[:100]}"))
    except (VenvError, OSError) as error:
        print(f"the Home Assistant venv could not be built: {error}", file=sys.stderr)
        return 69
    with tempfile.TemporaryDirectory(prefix="ha-screenshot-") as scratch:
        try:
            stack = Stack(Path(scratch), sample("WolfgangLanger_Pexels.mp4")).start()
        except pytest.skip.Exception as missing:  # helpers.need: mosquitto is not installed
            print(str(missing), file=sys.stderr)
            return 69
        try:
            return _shoot(stack, args.out, args.timeout)
        finally:
            stack.stop()


def _shoot(stack: Stack, out: Path, timeout: float) -> int:
    from helpers import wait_until
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert stack.ha is not None
    ha = stack.ha
    stack.restart_ha(finish_onboarding=True)  # the frontend shows its wizard until then
    ready = wait_until(
        lambda: (
            stack.states().get("face_present", {}).get("state") == "on"
            and stack.states().get("fps", {}).get("state") not in (None, "unavailable")
        ),
        timeout,
        interval=0.5,
    )
    if not ready:
        print(f"Home Assistant never showed a face: {stack.states()}", file=sys.stderr)
        return 1
    device = stack.device_entry()
    assert device is not None
    tokens = {
        "hassUrl": ha.url(""),
        "clientId": ha.client_id,
        "access_token": ha.tokens["access_token"],
        "refresh_token": ha.tokens["refresh_token"],
        "token_type": "Bearer",
        "expires_in": ha.tokens["expires_in"],
        "expires": int((ha.tokens["obtained_at"] + ha.tokens["expires_in"]) * 1000),
    }
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={SIZE[0]},{SIZE[1]}")
    browser = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        browser.get(ha.url("/auth/authorize"))  # any page of the origin, to reach its storage
        browser.execute_script(
            "localStorage.setItem('hassTokens', arguments[0]);", json.dumps(tokens)
        )
        browser.get(ha.url(f"/config/devices/device/{device['id']}"))
        # The page is drawn once it names the device and its diagnostic sensors have values.
        shown = wait_until(
            lambda: all(
                text in browser.execute_script(PAGE_TEXT)
                for text in (stack.device, "Dominant emotion", "Frame rate", "Kitchen")
            ),
            timeout,
            interval=1.0,
        )
        if not shown:
            print("the device page did not show the device in time", file=sys.stderr)
            return 1
        time.sleep(3)  # icons and the last card settle
        browser.execute_script(HIDE_LOGOS)
        out.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(out))
    finally:
        browser.quit()
    print(f"saved {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
