"""A daemon's config for the tests that run `edge-agent run` or `check` on the real models."""

from __future__ import annotations

from pathlib import Path

from edge_agent import config as config_model
from edge_agent.config import Config


def base_config(tmp_path: Path) -> Config:
    """The real models in models/, on the CPU, with MQTT off unless a test turns it on."""
    config = Config()
    config.accelerator = "cpu"
    config.mqtt.enabled = False
    config.state.dir = str(tmp_path / "state")
    return config


def write(path: Path, config: Config) -> Path:
    path.write_text(config_model.render_toml(config))
    return path
