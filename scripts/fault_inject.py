"""Fault injection: the delivery promise re-checked under kills and outages at random times.

    .venv/bin/python scripts/fault_inject.py [--minutes 30] [--seed N]

The real daemon (`edge-agent run`) plays the looping sample clip at full speed into a local
mosquitto (persistent, loopback only), while a subscriber with a persistent session records
every event. At random moments the daemon is SIGKILLed and restarted, or the broker is
stopped for a few seconds and restarted on the same port. At the end the daemon is stopped
cleanly, the outbox drains, and the script reports every `seq` the outbox ever assigned
that never arrived (lost) and every one that arrived more than once (duplicated: allowed by
QoS 1, consumers drop them by `id`). Exit 0 when none was lost.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.demo.mosquitto import Mosquitto
from edge_agent.demo.samples import DEMO_CLIP, sample
from edge_agent.publish.mqtt import OUTBOX_FILE
from edge_agent.publish.outbox import Outbox

DEVICE = "faults"
HOST = "127.0.0.1"


class Recorder:
    """A subscriber whose session outlives its own and the broker's restarts."""

    def __init__(self, port: int) -> None:
        self.seqs: Counter[int] = Counter()
        self._lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="fault-recorder", clean_session=False
        )
        self.client.on_connect = lambda c, *_: c.subscribe(f"edge-agent/{DEVICE}/events", 1)
        self.client.on_message = self._message
        self.client.reconnect_delay_set(0.2, 2.0)
        self.client.connect(HOST, port)
        self.client.loop_start()

    def _message(self, _client: object, _userdata: object, message: paho.MQTTMessage) -> None:
        seq = int(json.loads(message.payload)["seq"])
        with self._lock:
            self.seqs[seq] += 1

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="edge-agent-faults-") as folder:
        work = Path(folder)
        (work / "broker").mkdir()
        broker = Mosquitto(work / "broker", persistence=True).start()
        config = work / "config.toml"
        config.write_text(
            f'device_id = "{DEVICE}"\n[camera]\nsource = "{sample(DEMO_CLIP)}"\nloop = true\n'
            f'realtime = false\n[mqtt]\nhost = "{HOST}"\nport = {broker.port}\n'
            "reconnect_min_s = 0.1\nreconnect_max_s = 2.0\ndiscovery = false\n"
            f'[state]\ndir = "{work / "state"}"\n'
        )
        recorder = Recorder(broker.port)
        log = work / "daemon.log"
        agent = daemon(config, log)
        kills = outages = 0
        end = time.monotonic() + args.minutes * 60
        while time.monotonic() < end:
            time.sleep(rng.uniform(5.0, 40.0))
            if rng.random() < 0.6:
                agent.send_signal(signal.SIGKILL)
                agent.wait()
                kills += 1
                agent = daemon(config, log)
            else:
                broker.stop()
                time.sleep(rng.uniform(1.0, 10.0))
                broker.start()
                outages += 1
            print(f"{time.strftime('%H:%M:%S')} kills {kills}, outages {outages}", flush=True)
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        # One more, undisturbed start sends what a kill left in the outbox, then stops.
        agent = daemon(config, log)
        time.sleep(10.0)
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        time.sleep(3.0)
        recorder.stop()
        broker.stop()
        outbox = Outbox(work / "state" / OUTBOX_FILE)
        left, issued = outbox.depth, outbox.last_seq(DEVICE)
        outbox.close()
        seqs = recorder.seqs
        lost = [seq for seq in range(1, issued + 1) if seq not in seqs]
        repeated = sum(count - 1 for count in seqs.values())
        print(
            f"fault injection, {args.minutes:g} min: {kills} SIGKILLs, {outages} broker outages; "
            f"{issued} events issued, {len(seqs)} received, {len(lost)} lost, "
            f"{repeated} duplicates, {left} still in the outbox"
        )
        if lost:
            print(f"lost seqs: {lost[:50]}")
        return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
