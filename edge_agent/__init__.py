"""edge-agent: on-device face emotion, age and gender detection for a Raspberry Pi."""

__version__ = "0.1.0"
