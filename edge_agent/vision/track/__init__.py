"""Tracking: stable ids for faces across frames, smoothed emotions, and the events."""

from edge_agent.vision.track.tracker import Track, Tracker, TrackerSettings

__all__ = ["Track", "Tracker", "TrackerSettings"]
