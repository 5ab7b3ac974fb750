"""The appliance daemon: parts built from the config, an inference loop feeding sinks, and
the supervisor that talks to systemd. `edge-agent run` (cli/run.py) starts `Daemon`."""

from edge_agent.daemon.sinks import EventCounter, ResultSink
from edge_agent.daemon.supervisor import Daemon, RunReport

__all__ = ["Daemon", "EventCounter", "ResultSink", "RunReport"]
