"""Publishing over MQTT: payloads, Home Assistant discovery, the durable outbox, the sender.

Nothing here loads the vision stack: `edge-agent watch` and the dashboards import it on a
laptop with no model runtime.
"""

from edge_agent.publish.connection import MqttError
from edge_agent.publish.mqtt import MqttPublisher

__all__ = ["MqttError", "MqttPublisher"]
