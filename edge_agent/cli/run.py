"""`edge-agent run`: the appliance daemon, camera to MQTT and the local display."""

from __future__ import annotations

import argparse
import logging

from edge_agent.config import load_or_default, resolve_path
from edge_agent.daemon import Daemon, logs

log = logging.getLogger("edge_agent.daemon")


def main(args: argparse.Namespace) -> int:
    config_path = resolve_path(args.config)
    config = load_or_default(args.config)
    target = logs.setup("debug" if args.verbose else config.log_level)
    log.info(
        "edge-agent starting (config %s, logging to %s)",
        config_path or "built-in defaults",
        target,
    )
    return Daemon(config, config_path, verbose=args.verbose).run()
