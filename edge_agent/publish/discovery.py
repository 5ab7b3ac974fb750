"""Home Assistant MQTT discovery: one device with four entities, and no YAML for the user.

Configs are retained and sent again whenever Home Assistant announces `online` on
`<discovery_prefix>/status`, so entities survive a Home Assistant restart either way.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from edge_agent import __version__
from edge_agent.publish.messages import OFFLINE, ONLINE, Topics

_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


def node_id(device_id: str) -> str:
    """The device id in the characters discovery topics and unique ids allow.

    When characters had to be replaced, a short hash of the real id is appended, so
    `pi.kitchen` and `pi_kitchen` do not overwrite each other's entities in Home
    Assistant or take over each other's MQTT session.
    """
    safe = _UNSAFE.sub("_", device_id)
    if safe == device_id and safe:
        return safe
    digest = hashlib.sha256(device_id.encode()).hexdigest()[:6]
    return f"{safe or 'edge_agent'}_{digest}"


def status_topic(discovery_prefix: str) -> str:
    return f"{discovery_prefix.rstrip('/')}/status"


def discovery_messages(
    device_id: str, topics: Topics, discovery_prefix: str, *, stats_interval_s: float
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, config) for each entity, in a stable order."""
    node = node_id(device_id)
    prefix = discovery_prefix.rstrip("/")
    common: dict[str, Any] = {
        "availability": [
            {
                "topic": topics.availability,
                "payload_available": ONLINE,
                "payload_not_available": OFFLINE,
            }
        ],
        "device": {
            "identifiers": [f"edge_agent_{node}"],
            "name": device_id,
            "manufacturer": "edge-agent",
            "model": "Face emotion, age and gender sensor",
            "sw_version": __version__,
        },
        "origin": {"name": "edge-agent", "sw_version": __version__},
        "has_entity_name": True,
    }
    entities: list[tuple[str, str, dict[str, Any]]] = [
        (
            "sensor",
            "dominant_emotion",
            {
                "name": "Dominant emotion",
                "icon": "mdi:emoticon-outline",
                "state_topic": topics.state,
                "value_template": "{{ value_json.dominant_emotion or 'none' }}",
                "json_attributes_topic": topics.state,
            },
        ),
        (
            "sensor",
            "face_count",
            {
                "name": "Faces",
                "icon": "mdi:account-group",
                "state_class": "measurement",
                "state_topic": topics.state,
                "value_template": "{{ value_json.face_count }}",
            },
        ),
        (
            "sensor",
            "fps",
            {
                "name": "Frame rate",
                "icon": "mdi:speedometer",
                "unit_of_measurement": "fps",
                "state_class": "measurement",
                "entity_category": "diagnostic",
                "state_topic": topics.stats,
                "value_template": "{{ value_json.fps | default(none) }}",
                "expire_after": int(3 * stats_interval_s) + 1,
            },
        ),
        (
            "binary_sensor",
            "face_present",
            {
                "name": "Face present",
                "device_class": "occupancy",
                "state_topic": topics.state,
                "value_template": "{{ 'ON' if value_json.face_count > 0 else 'OFF' }}",
            },
        ),
    ]
    messages = []
    for component, object_id, config in entities:
        payload = {**config, "unique_id": f"edge_agent_{node}_{object_id}", **common}
        messages.append((f"{prefix}/{component}/{node}/{object_id}/config", payload))
    return messages
