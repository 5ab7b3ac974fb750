"""`edge-agent dashboard`: serve the live web page of the devices under the topic prefix.

Connects to the broker with the config's [mqtt] keys (as `watch` does), subscribes to every
device (or `--device ID`), and serves the page on `dashboard.listen` (127.0.0.1:8080) or
`--listen HOST:PORT`. Any address other than loopback needs a password file
(`dashboard.password_file` or `--password-file`); the start says so. SIGTERM or Ctrl-C stop
it with exit code 0; an unreachable broker or a listen address in use is one line on stderr
and exit code 69, a bad flag 64, a bad config 78.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from edge_agent.config import (
    check_topic_part,
    is_loopback,
    load_or_default,
    parse_listen,
    read_dashboard_password,
    read_secret,
)
from edge_agent.dashboard.fleet import Fleet
from edge_agent.dashboard.server import DashboardServer
from edge_agent.errors import EX_UNAVAILABLE, ConfigError, EdgeAgentError, UsageError
from edge_agent.subscriber import KINDS, Subscriber, topic_filters


class ListenError(EdgeAgentError):
    """The listen address cannot be bound (in use, not an address of this machine)."""

    exit_code = EX_UNAVAILABLE


def _from_flag(key: str, check: Any, *args: Any) -> Any:
    """Run a config rule on a flag's value; its failure is a bad command line (64)."""
    try:
        return check(key, *args)
    except ConfigError as error:
        raise UsageError(str(error)) from None


def main(args: Any) -> int:
    config = load_or_default(getattr(args, "config", None))
    flag_listen = getattr(args, "listen", None)
    if flag_listen:
        host, port = _from_flag("--listen", parse_listen, flag_listen)
    else:
        host, port = parse_listen("dashboard.listen", config.dashboard.listen)
    flag_password = getattr(args, "password_file", None)
    if flag_password:
        password_file = flag_password
        password = _from_flag("--password-file", read_secret, flag_password)
    else:
        password_file = config.dashboard.password_file
        password = read_dashboard_password(config.dashboard)
    if password is None and not is_loopback(host):
        where = "--listen" if flag_listen else "dashboard.listen"
        error = UsageError if flag_listen else ConfigError
        raise error(
            f"{where} = {flag_listen or config.dashboard.listen!r}: not a loopback address, so "
            "the page needs a password: set dashboard.password_file or --password-file"
        )
    device = getattr(args, "device", None) or "+"
    if device != "+":
        check_topic_part("--device", device, allow_slash=False)

    prefix = config.mqtt.topic_prefix.rstrip("/")
    fleet = Fleet(prefix, device_filter=device)
    subscriber = Subscriber(
        config.mqtt, topic_filters(prefix, device, KINDS), fleet.receive, name="dashboard", qos=1
    )
    try:
        server = DashboardServer((host, port), fleet, password)
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise ListenError(f"cannot listen on {host}:{port}: {reason}") from None
    try:
        subscriber.connect()
        return _serve(server, subscriber, fleet, host, password_file)
    finally:
        server.server_close()


def _serve(
    server: DashboardServer, subscriber: Subscriber, fleet: Fleet, host: str, password_file: str
) -> int:
    subscriber.on_status = lambda: fleet.set_broker(subscriber.status)
    fleet.set_broker(subscriber.status)
    mqtt_thread = threading.Thread(target=subscriber.run, name="mqtt", daemon=True)
    http_thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    mqtt_thread.start()
    http_thread.start()
    shown = f"[{host}]" if ":" in host else host
    topics = f"{fleet.prefix}/{fleet.device_filter}"
    print(
        f"edge-agent dashboard: http://{shown}:{server.port}/ "
        f"(broker {subscriber.connection.address}, devices {topics})",
        flush=True,
    )
    if password_file:
        reach = "loopback only" if is_loopback(host) else "reachable from other machines"
        print(
            f"edge-agent dashboard: listening on {shown}:{server.port}, {reach}; the page asks "
            f"for the password in {password_file} (HTTP Basic, any user name; plain HTTP, so "
            "use it on a network you trust or behind a TLS proxy)",
            file=sys.stderr,
            flush=True,
        )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        subscriber.stop()
        mqtt_thread.join(5)
        subscriber.close()
    return 0
