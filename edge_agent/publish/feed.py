"""The inference thread's side of the publisher: results into outbox rows and state.

Each frame's events are committed to the outbox before anything is sent (one sqlite
transaction; most frames have none), and two bodies are rebuilt from the confirmed faces:
`faces`, the detail that moves every frame (scores, ages to a tenth), and `state`, only what
an owner acts on (count, emotions, whole-year ages, genders), so that Home Assistant records
a row when something happened rather than five a second. Only a changed body is handed to
the sender, which decides when it may go.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from edge_agent.publish.messages import (
    Topics,
    event_payload,
    face_entry,
    faces_body,
    iso_utc,
    stamped,
    state_body,
    stated_age,
    stated_gender,
)
from edge_agent.publish.outbox import Outbox
from edge_agent.types import FrameResult

log = logging.getLogger("edge_agent.mqtt")


class ResultFeed:
    def __init__(
        self,
        outbox: Outbox,
        topics: Topics,
        device_id: str,
        offer_state: Callable[[dict[str, Any]], None],
        offer_faces: Callable[[dict[str, Any]], None],
        wake: Callable[[], None],
    ) -> None:
        self.outbox = outbox
        self.topics = topics
        self.device_id = device_id
        self.store_failures = 0  # events that could not be stored: never delivered
        self._store_problem: str | None = None  # the last logged, until a store succeeds
        self._offer_state = offer_state
        self._offer_faces = offer_faces
        self._wake = wake
        self._faces: dict[int, dict[str, Any]] = {}  # confirmed, not yet lost
        self._ages: dict[int, int | None] = {}  # the whole-year age `state` says, per track
        self._age_sums: dict[int, tuple[float, int]] = {}  # each track's ages so far
        self._genders: dict[int, str | None] = {}  # the gender `state` says, per track
        self._state_body = state_body([], {}, {})
        self._faces_body = faces_body([])

    def offer_first(self) -> None:
        """No face yet: what `state` and `faces` say until the first frame says otherwise
        (it replaces whatever a previous run left retained)."""
        now = iso_utc(time.time())
        self._offer_state(stamped(self._state_body, device=self.device_id, updated_at=now))
        self._offer_faces(stamped(self._faces_body, device=self.device_id, updated_at=now))

    def consume(self, result: FrameResult, wall: float) -> None:
        """Store the frame's events and refresh the state; never blocks on the network."""
        changed = False
        if result.events:
            ts = iso_utc(wall)
            payloads = [event_payload(e, device=self.device_id, ts=ts) for e in result.events]
            try:
                self.outbox.append(self.topics.events, payloads, seq_key=self.device_id)
            except sqlite3.Error as error:
                self.store_failures += len(payloads)
                problem = self.outbox.error or str(error)
                if problem != self._store_problem:  # once a problem, not once a frame
                    log.error(
                        "outbox %s: %s: %d event(s) not stored (counted in events_dropped)",
                        self.outbox.path,
                        problem,
                        len(payloads),
                    )
                self._store_problem = problem
            else:
                if self._store_problem is not None:
                    log.warning(
                        "outbox %s: storing again; %d event(s) were not stored",
                        self.outbox.path,
                        self.store_failures,
                    )
                self._store_problem = None
            for event in result.events:
                if event.type == "face_lost":
                    self._faces.pop(event.face.track, None)
                    self._ages.pop(event.face.track, None)
                    self._age_sums.pop(event.face.track, None)
                    self._genders.pop(event.face.track, None)
                else:
                    self._faces[event.face.track] = face_entry(event.face)
            changed = True
        for face in result.faces:
            if face.track in self._faces:
                self._faces[face.track] = face_entry(face)
        for face in result.faces:
            if face.track in self._faces and face.age is not None:
                total, count = self._age_sums.get(face.track, (0.0, 0))
                self._age_sums[face.track] = (total + face.age, count + 1)
        for track in self._faces:
            # The mean over the whole time in view: the per-frame estimate wanders by
            # years on a still face, its mean settles, so `state` (and the recorder) sees
            # a few changes early and then none.
            total, count = self._age_sums.get(track, (0.0, 0))
            mean = total / count if count else None
            self._ages[track] = stated_age(mean, self._ages.get(track))
            entry = self._faces[track]
            self._genders[track] = stated_gender(
                entry["gender"], entry["gender_score"], self._genders.get(track)
            )
        faces = list(self._faces.values())
        detail = faces_body(faces)
        if detail != self._faces_body:
            self._faces_body = detail
            self._offer_faces(stamped(detail, device=self.device_id, updated_at=iso_utc(wall)))
            changed = False  # (the offer wakes the sender)
        body = state_body(faces, self._ages, self._genders, self._state_body["dominant_emotion"])
        if body != self._state_body:
            self._state_body = body
            self._offer_state(stamped(body, device=self.device_id, updated_at=iso_utc(wall)))
            changed = False
        if changed:
            self._wake()  # new rows in the outbox
