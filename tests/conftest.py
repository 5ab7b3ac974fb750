"""Shared fixtures: real sample media (verified, cached outside the repo) and a real mosquitto.
The helpers they use are in tests/helpers/. Every test that uses the `mosquitto` fixture is
marked `broker` here; the ones that start a `Mosquitto(...)` of their own say so themselves.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.mqtt import Mosquitto

from edge_agent.demo.samples import sample


@pytest.fixture(scope="session")
def media() -> Callable[[str], Path]:
    """`media("single_face.mp4")`: path of the verified sample, fetched once per machine."""
    return sample


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A running anonymous mosquitto on a free 127.0.0.1 port (`.host`, `.port`)."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    try:
        yield broker
    finally:
        broker.stop()


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C tests send SIGINT to a child and expect what a terminal user sees. A suite
    started in the background by a shell without job control inherits SIGINT ignored, and
    so would every child, which then runs on; a handler here is reset to the default in
    each child at exec."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "mosquitto" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.broker)
