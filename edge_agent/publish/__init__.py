"""Publishing over MQTT: the durable outbox, payloads, Home Assistant discovery, the client.

`MqttPublisher` (in `mqtt`) is what the daemon uses. It is exported lazily so that
`edge-agent watch`, which needs only `connection`, does not load the vision stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge_agent.publish.connection import MqttError

if TYPE_CHECKING:
    from edge_agent.publish.mqtt import MqttPublisher

__all__ = ["MqttError", "MqttPublisher"]


def __getattr__(name: str) -> Any:
    if name == "MqttPublisher":
        from edge_agent.publish.mqtt import MqttPublisher

        return MqttPublisher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
