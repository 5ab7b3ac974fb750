"""How to reach the broker: credentials, TLS, client construction, backoff, one-shot checks.

Shared by the publisher, `edge-agent check` and `edge-agent watch`, so all three connect the
same way and report the same one-line reasons when they cannot. Nothing here imports the
vision stack. The password is read when a client is built and never logged or stored on
the config.
"""

from __future__ import annotations

import os
import random
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config import MqttConfig, read_password, tls_context
from edge_agent.errors import EX_UNAVAILABLE, ConfigError, EdgeAgentError
from edge_agent.types import BrokerState, BrokerStatus

PASSWORD_ENV = "EDGE_AGENT_MQTT_PASSWORD"
CONNECT_TIMEOUT_S = 5.0
# MQTT 5 CONNACK reason codes (and their 3.1.1 equivalents, which paho maps onto them).
_AUTH_REASONS = {134, 135, 140}  # bad user name or password, not authorized, bad auth method


class MqttError(EdgeAgentError):
    """The broker cannot be reached, refused us, or the TLS handshake failed."""

    exit_code = EX_UNAVAILABLE

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message  # the short cause, for a status line


@dataclass(frozen=True, slots=True)
class Connection:
    """Everything needed to open a connection, resolved and checked once."""

    host: str
    port: int
    protocol: str  # "5" or "3.1.1"
    keepalive_s: int
    username: str
    password: str | None
    tls: ssl.SSLContext | None

    def __repr__(self) -> str:  # never show the password
        return (
            f"Connection({self.host}:{self.port}, MQTT {self.protocol}, "
            f"user={self.username or '-'}, tls={self.tls is not None})"
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def describe(self) -> str:
        parts = [f"MQTT {self.protocol}"]
        if self.tls is not None:
            parts.append("TLS")
        if self.username:
            parts.append(f"user {self.username}")
        return f"{self.address} ({', '.join(parts)})"

    def refusal(self, reason: ReasonCode) -> BrokerStatus:
        """Why the broker refused our CONNECT, with a hint when no login was configured."""
        status = refusal_status(reason)
        if status.state == BrokerState.AUTH_FAILED and not self.username:
            status = BrokerStatus(status.state, f"{status.reason} (mqtt.username is empty)")
        return status

    @classmethod
    def from_config(cls, mqtt: MqttConfig) -> Connection:
        if not mqtt.host:
            raise ConfigError("mqtt.host: must not be empty")
        return cls(
            mqtt.host,
            mqtt.port,
            mqtt.protocol,
            mqtt.keepalive_s,
            mqtt.username,
            _password(mqtt),
            tls_context(mqtt),
        )

    def new_client(
        self,
        client_id: str,
        *,
        will: tuple[str, str] | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> paho.Client:
        """A fresh paho client (callback API 2) set up for this connection, not yet connected."""
        v5 = self.protocol == "5"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            userdata={},
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            clean_session=None if v5 else True,
        )
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls is not None:
            client.tls_set_context(self.tls)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        client.connect_timeout = connect_timeout_s
        client.max_inflight_messages_set(0)  # the publisher keeps its own window
        client.max_queued_messages_set(0)
        client.on_log = _remember_errors
        return client

    def open(self, client: paho.Client) -> None:
        """Open the socket and send CONNECT (blocking, bounded by the connect timeout).
        Raises MqttError with a one-line reason when the broker cannot be reached."""
        try:
            if self.protocol == "5":
                client.connect(self.host, self.port, self.keepalive_s, clean_start=True)
            else:
                client.connect(self.host, self.port, self.keepalive_s)
        except (OSError, ValueError) as error:
            reason = describe_error(error)
            raise MqttError(f"cannot reach MQTT broker {self.address}: {reason}", reason) from None


_SSL_LOCATION = re.compile(r"\s*\(_ssl\.c:\d+\)")
_SOCKET_ERROR = re.compile(r"^failed to receive on socket: (\[[A-Z0-9_: ]+\] )?")


def _remember_errors(_client: paho.Client, userdata: Any, level: int, message: str) -> None:
    """paho reports why a socket died only to its log: keep the last error in the userdata."""
    if level == paho.MQTT_LOG_ERR and isinstance(userdata, dict) and "error" not in userdata:
        # The first error is the cause; later ones only say the socket is gone.
        userdata["error"] = _SOCKET_ERROR.sub("", _SSL_LOCATION.sub("", message))


def last_error(client: paho.Client) -> str:
    """The last network error paho logged for this client ('' if none)."""
    userdata = client.user_data_get()
    return userdata.get("error", "") if isinstance(userdata, dict) else ""


def _password(mqtt: MqttConfig) -> str | None:
    if mqtt.password_file:
        return read_password(mqtt)
    if mqtt.username:
        return os.environ.get(PASSWORD_ENV)
    return None


def describe_error(error: BaseException) -> str:
    """A short human reason for a socket, TLS or paho failure."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({error.verify_message})"
    if isinstance(error, ssl.SSLError):
        return f"TLS error ({error.reason or error})"
    if isinstance(error, TimeoutError | ConnectionError) and error.strerror:
        return error.strerror.lower()
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__


def refusal_status(reason: ReasonCode | int) -> BrokerStatus:
    """`auth failed: bad user name or password` or `refused: server unavailable`."""
    value = reason.value if isinstance(reason, ReasonCode) else int(reason)
    name = str(reason).lower() if isinstance(reason, ReasonCode) else f"code {value}"
    state = BrokerState.AUTH_FAILED if value in _AUTH_REASONS else BrokerState.REFUSED
    return BrokerStatus(state, name)


def describe_rc(rc: MQTTErrorCode | int) -> str:
    return paho.error_string(rc).rstrip(".").lower()


class Backoff:
    """Exponential backoff with "equal jitter": each wait is uniform in [d/2, d], where d
    doubles from `low` up to `high`, so a fleet restarted together does not reconnect in
    lockstep."""

    def __init__(self, low: float, high: float, rng: Callable[[], float] = random.random) -> None:
        self.low, self.high = low, max(low, high)
        self._rng = rng
        self._attempt = 0

    def next(self) -> float:
        delay = min(self.high, self.low * 2.0**self._attempt)
        self._attempt = min(self._attempt + 1, 64)
        return delay / 2 + self._rng() * delay / 2

    def reset(self) -> None:
        self._attempt = 0


def connect_once(
    connection: Connection,
    client_id: str,
    timeout_s: float,
    setup: Callable[[paho.Client], None] | None = None,
) -> paho.Client:
    """Connect and wait for a successful CONNACK, or raise MqttError with the reason.
    Returns the connected client (its network loop not started)."""
    client = connection.new_client(client_id, connect_timeout_s=max(0.1, timeout_s))
    result: dict[str, Any] = {}

    def on_connect(_c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        result["reason"] = reason

    client.on_connect = on_connect
    if setup is not None:
        setup(client)
    deadline = time.monotonic() + timeout_s
    connection.open(client)
    while "reason" not in result:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            client.disconnect()
            raise MqttError(
                f"MQTT broker {connection.address} did not answer within {timeout_s:g} s"
            )
        rc = client.loop(timeout=min(0.1, remaining))
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and "reason" not in result:
            cause = last_error(client) or describe_rc(rc)
            raise MqttError(
                f"MQTT broker {connection.address} closed the connection ({cause})",
                f"connection closed ({cause})",
            )
    reason = result["reason"]
    if reason.is_failure:
        client.disconnect()
        refusal = str(connection.refusal(reason))
        raise MqttError(f"MQTT broker {connection.address}: {refusal}", refusal)
    return client
