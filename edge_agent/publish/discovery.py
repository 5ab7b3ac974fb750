"""Home Assistant MQTT discovery: one device with its entities and device triggers, and no
YAML for the user.

Configs are retained and sent again whenever Home Assistant announces `online` on
`<discovery_prefix>/status`, so entities survive a Home Assistant restart either way.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from edge_agent import __version__
from edge_agent.publish.messages import OFFLINE, ONLINE, Topics
from edge_agent.types import EMOTIONS, EVENT_TYPES, GENDERS, UNCERTAIN

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


def _device(node: str, device_id: str, *, area: str, hardware: str) -> dict[str, Any]:
    device: dict[str, Any] = {
        "identifiers": [f"edge_agent_{node}"],
        "name": device_id,
        "manufacturer": "edge-agent",
        "model": "Face emotion, age and gender sensor",
        "sw_version": __version__,
    }
    if hardware:
        device["hw_version"] = hardware
    if area:
        device["suggested_area"] = area
    return device


def _availability(topics: Topics) -> list[dict[str, Any]]:
    return [
        {
            "topic": topics.availability,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
        }
    ]


def _while(topics: Topics, condition: str) -> list[dict[str, Any]]:
    """The device's availability and a condition on `state`, for an enum sensor with no
    value to show. Home Assistant 2024.3 has no "unknown" for an MQTT enum sensor (it
    would show the text "None"), so such a sensor is
    unavailable while, say, no face is in view; the Face present sensor says why."""
    return [
        *_availability(topics),
        {
            "topic": topics.state,
            "value_template": f"{{{{ '{ONLINE}' if {condition} else '{OFFLINE}' }}}}",
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
        },
    ]


def _entities(topics: Topics, expire_s: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(component, object id, config) of each entity, before the shared keys."""
    main_face = "value_json.faces[0]"

    def diagnostic(name: str, template: str, **extra: Any) -> dict[str, Any]:
        # From stats: an entity that goes stale rather than lie when stats stop coming.
        return {
            "name": name,
            "entity_category": "diagnostic",
            "state_topic": topics.stats,
            "value_template": template,
            "expire_after": expire_s,
            **extra,
        }

    return [
        (
            "sensor",
            "dominant_emotion",
            {
                "name": "Dominant emotion",
                "icon": "mdi:emoticon-outline",
                "device_class": "enum",
                "options": [*EMOTIONS, UNCERTAIN],
                "state_topic": topics.state,
                "value_template": "{{ value_json.dominant_emotion }}",
                "availability": _while(topics, "value_json.dominant_emotion"),
                "json_attributes_topic": topics.state,
                "json_attributes_template": "{{ {'faces': value_json.faces} | tojson }}",
            },
        ),
        (
            "sensor",
            "face_count",
            {
                "name": "Faces",
                "icon": "mdi:account-group",
                "unit_of_measurement": "faces",
                "state_class": "measurement",
                "state_topic": topics.state,
                "value_template": "{{ value_json.face_count }}",
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
        (
            "sensor",
            "age",
            {
                "name": "Age",
                "icon": "mdi:cake-variant-outline",
                "unit_of_measurement": "years",
                "state_topic": topics.state,
                "value_template": (
                    f"{{{{ {main_face}.age if value_json.faces and {main_face}.age is not none"
                    " else 'None' }}"
                ),
            },
        ),
        (
            "sensor",
            "gender",
            {
                "name": "Gender",
                "icon": "mdi:gender-male-female",
                "device_class": "enum",
                "options": list(GENDERS),
                "state_topic": topics.state,
                "value_template": f"{{{{ {main_face}.gender if value_json.faces else none }}}}",
                "availability": _while(topics, f"value_json.faces and {main_face}.gender"),
            },
        ),
        (
            "event",
            "emotion_event",
            {
                "name": "Emotion event",
                "icon": "mdi:emoticon-excited-outline",
                "state_topic": topics.events,
                "event_types": list(EVENT_TYPES),
                "value_template": (
                    "{{ {'event_type': value_json.type, 'emotion': value_json.emotion,"
                    " 'previous_emotion': value_json.previous_emotion, 'age': value_json.age,"
                    " 'gender': value_json.gender, 'track': value_json.track} | tojson }}"
                ),
            },
        ),
        (
            "sensor",
            "fps",
            diagnostic(
                "Frame rate",
                "{{ value_json.fps }}",
                icon="mdi:speedometer",
                unit_of_measurement="fps",
                state_class="measurement",
            ),
        ),
        (
            "sensor",
            "latency",
            diagnostic(
                "Latency",
                "{{ value_json.latency_ms.p95 }}",
                # (no duration class: Home Assistant would show seconds, "0.026")
                icon="mdi:timer-outline",
                unit_of_measurement="ms",
                state_class="measurement",
            ),
        ),
        (
            "sensor",
            "frames_dropped",
            diagnostic(
                "Frames dropped",
                "{{ value_json.frames_dropped }}",
                icon="mdi:filmstrip-off",
                state_class="total_increasing",
            ),
        ),
        (
            "sensor",
            "outbox_depth",
            diagnostic(
                "Events waiting",
                "{{ value_json.outbox_depth }}",
                icon="mdi:tray-full",
                unit_of_measurement="events",
                state_class="measurement",
            ),
        ),
        (
            "sensor",
            "events_dropped",
            diagnostic(
                "Events dropped",
                "{{ value_json.events_dropped }}",
                icon="mdi:tray-remove",
                unit_of_measurement="events",
                state_class="total_increasing",
            ),
        ),
        (
            "sensor",
            "cpu_temperature",
            diagnostic(
                "CPU temperature",
                "{{ value_json.cpu_temp_c | default('None') }}",
                device_class="temperature",
                unit_of_measurement="°C",
                state_class="measurement",
            ),
        ),
        (
            "sensor",
            "uptime",
            # A start time rather than a count of seconds: Home Assistant shows "3 hours
            # ago", and the recorder writes a row per restart instead of one per stats.
            diagnostic(
                "Started",
                "{{ value_json.started_at }}",
                device_class="timestamp",
            ),
        ),
    ]


def _triggers(topics: Topics) -> list[tuple[str, dict[str, Any]]]:
    """Device triggers, so an automation is built in the UI: "emotion became X", and a face
    appeared or was lost. Home Assistant fires one when the template renders `payload`."""
    emotion_became = "{{ value_json.emotion if value_json.type == 'emotion_changed' else '' }}"
    triggers = [
        (
            f"emotion_{emotion}",
            {
                "type": "emotion_changed",
                "subtype": emotion,
                "payload": emotion,
                "value_template": emotion_became,
            },
        )
        for emotion in EMOTIONS
    ]
    for kind in ("face_appeared", "face_lost"):
        triggers.append(
            (
                kind,
                {
                    "type": kind,
                    "subtype": "face",
                    "payload": kind,
                    "value_template": "{{ value_json.type }}",
                },
            )
        )
    return [
        (object_id, {"automation_type": "trigger", "topic": topics.events, "qos": 1, **trigger})
        for object_id, trigger in triggers
    ]


def discovery_messages(
    device_id: str,
    topics: Topics,
    discovery_prefix: str,
    *,
    stats_interval_s: float,
    area: str = "",
    hardware: str = "",
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, config) for each entity and device trigger, in a stable order."""
    node = node_id(device_id)
    prefix = discovery_prefix.rstrip("/")
    device = _device(node, device_id, area=area, hardware=hardware)
    origin = {"name": "edge-agent", "sw_version": __version__}
    messages = []
    for component, object_id, config in _entities(topics, int(3 * stats_interval_s) + 1):
        payload = {
            "availability": _availability(topics),
            **config,
            "unique_id": f"edge_agent_{node}_{object_id}",
            "device": device,
            "origin": origin,
        }
        if len(payload["availability"]) > 1:
            payload["availability_mode"] = "all"
        messages.append((f"{prefix}/{component}/{node}/{object_id}/config", payload))
    for object_id, config in _triggers(topics):
        payload = {**config, "device": device, "origin": origin}
        messages.append((f"{prefix}/device_automation/{node}/{object_id}/config", payload))
    return messages
