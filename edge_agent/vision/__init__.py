"""The vision core: detect → track → classify on the TFLite runtime, one frame at a time."""
