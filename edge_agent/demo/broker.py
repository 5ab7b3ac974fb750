"""The embedded MQTT broker `edge-agent demo` starts where mosquitto is not installed:
amqtt (https://github.com/Yakifo/amqtt, MQTT 3.1.1), from the `demo` extra, never a
dependency of the appliance itself.

It runs as `python -m edge_agent.demo.broker --port N`, a child process like mosquitto
(`mosquitto.BrokerProcess`), not a thread of the demo: the daemon's inference keeps the
interpreter to itself, and the stop is a SIGTERM that cannot hang. (amqtt 0.12's own
shutdown can wait indefinitely for a client caught in the middle of a QoS 1 exchange, and
nothing here needs saving at the end: no persistence, and the clients have gone first.)
Its stderr is its log: amqtt's warnings and errors, INFO too with `--verbose`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import sys
from pathlib import Path

from edge_agent.demo.mosquitto import HOST, BrokerError, BrokerProcess

INSTALL_HINT = "pip install 'edge-agent[demo]', or make setup"


def amqtt_config(host: str, port: int) -> dict[str, object]:
    """One TCP listener; anonymous clients; none of amqtt's $SYS topics or packet logging."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }


class EmbeddedBroker(BrokerProcess):
    """amqtt on a free loopback port (or `port`). `verbose` sends its log, at INFO, to our
    stderr instead of to `directory`."""

    name = "embedded"
    protocol = "3.1.1"  # all amqtt speaks
    log_name = "embedded-broker.log"

    def __init__(self, directory: Path, *, port: int | None = None, verbose: bool = False) -> None:
        super().__init__(directory, port=port)
        self.verbose = verbose
        self.stderr_to_log = not verbose

    def describe(self) -> str:
        return "the embedded MQTT broker (amqtt)"

    def command(self) -> list[str]:
        if importlib.util.find_spec("amqtt") is None:
            raise BrokerError(f"the embedded MQTT broker needs amqtt: {INSTALL_HINT}")
        command = [sys.executable, "-m", "edge_agent.demo.broker", "--port", str(self.port)]
        return command + (["--verbose"] if self.verbose else [])


async def _serve(host: str, port: int) -> None:
    from amqtt.broker import Broker

    broker = Broker(amqtt_config(host, port))
    await broker.start()
    await asyncio.Event().wait()  # until SIGTERM, whose default action ends the process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_agent.demo.broker")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--verbose", action="store_true", help="amqtt's INFO messages too")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s embedded broker %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("transitions").setLevel(logging.WARNING)  # a line per state change
    try:
        asyncio.run(_serve(args.host, args.port))
    except ImportError as error:
        print(f"{error} ({INSTALL_HINT})", file=sys.stderr)
        return 69
    except Exception as error:  # amqtt's BrokerError wraps the OSError of a taken port
        print(error.__cause__ or error, file=sys.stderr)
        return 69
    return 0


if __name__ == "__main__":
    sys.exit(main())
