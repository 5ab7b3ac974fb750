"""Tracking: stable ids for faces across frames, smoothed emotions, and the events."""

from edge_agent.track.tracker import Track, Tracker, TrackerSettings, TrackEvent

__all__ = ["Track", "TrackEvent", "Tracker", "TrackerSettings"]
