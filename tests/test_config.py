"""The config model: every bad file names its key and exits 78; the shipped file is the model."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

import pytest

from edge_agent import cli, config
from edge_agent.config import Config, ConfigError

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "config" / "edge-agent.toml"

BAD = [
    # (file content, text the one-line error must contain)
    ("device_id = 5\n", "device_id = 5: must be a string"),
    ('device_id = "my camera"\n', "device_id = 'my camera'"),
    ('accelerator = "gpu"\n', "accelerator = 'gpu': must be one of"),
    ("colour = 1\n", "colour: unknown key in the top level"),
    ("[camrea]\nsource = 'auto'\n", "[camrea]: unknown section"),
    ("[camera]\nsorce = 'auto'\n", "camera.sorce: unknown key in section [camera]"),
    ("[camera]\nsource = ''\n", "camera.source = '': must not be empty"),
    ("[camera]\nsource = 'ftp://cam/x'\n", "camera.source = 'ftp://cam/x': unsupported URL"),
    ("[camera]\nsource = '/dev/sda'\n", "camera.source = '/dev/sda': a device must be"),
    ("[camera]\nloop = 'yes'\n", "camera.loop = 'yes': must be true or false"),
    ("[camera]\nrealtime = 1\n", "camera.realtime = 1: must be true or false"),
    ("[camera]\nwidth = 640.5\n", "camera.width = 640.5: must be a whole number"),
    ("[camera]\nheight = 8\n", "camera.height = 8: must be at least 16"),
    ("[camera]\nfps = 0\n", "camera.fps = 0: must be at least 0.1"),
    ("[detector]\nscore_threshold = 1.5\n", "detector.score_threshold = 1.5: must be at most 1"),
    ("[detector]\nscore_threshold = 'high'\n", "detector.score_threshold = 'high': must be a"),
    ("[detector]\nscore_threshold = nan\n", "detector.score_threshold = nan: must be a finite"),
    ("[tracker]\nlost_after_s = inf\n", "tracker.lost_after_s = inf: must be a finite"),
    ("[mqtt]\nenabled = 'no'\n", "mqtt.enabled = 'no': must be true or false"),
    ("[mqtt]\nhost = ''\n", "mqtt.host = '': must be set while mqtt.enabled = true"),
    ("[display]\nkind = 'oled'\n", "display.kind = 'oled': must be one of"),
    ("[display]\nnight_off = '25:00-07:00'\n", "display.night_off = '25:00-07:00'"),
    ("[state]\ndir = 'state'\n", "state.dir = 'state': must be an absolute path"),
    ("camera = 'auto'\n", "camera = 'auto': must be a section [camera]"),
    ("[camera.source]\nx = 1\n", "[camera.source]: camera.source is a key, not a section"),
    ("[camera]\nsource = 'auto'\n[camera]\nloop = true\n", ":3: TOML syntax error at line 3"),
    ("device_id = \n", ":1: TOML syntax error at line 1"),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[e.split(":")[0] for _, e in BAD])
def test_bad_file_names_the_key_and_exits_78(tmp_path, capsys, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert cli.main(["config", "check", str(path)]) == 78
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_file_exits_78(tmp_path, capsys):
    assert cli.main(["config", "check", str(tmp_path / "nope.toml")]) == 78
    assert "config file not found" in capsys.readouterr().err


def test_good_file_says_ok(tmp_path, capsys):
    path = tmp_path / "good.toml"
    path.write_text(
        'device_id = "hall-1"\n[camera]\nsource = "rtsp://10.0.0.2/s"\n'
        "[detector]\nscore_threshold = 0.7\n"
    )
    assert cli.main(["config", "check", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: ok"


def _fields(cls: type, prefix: str = "") -> list[str]:
    paths = []
    for item in dataclasses.fields(cls):
        default = getattr(cls(), item.name)
        if dataclasses.is_dataclass(default):
            paths += _fields(type(default), f"{prefix}{item.name}.")
        else:
            paths.append(f"{prefix}{item.name}")
    return paths


def test_shipped_file_holds_every_field_and_loads_to_the_defaults():
    table = tomllib.loads(SHIPPED.read_text())
    for path in _fields(Config):
        node = table
        for part in path.split("."):
            assert part in node, f"{path} is missing from {SHIPPED.name}"
            node = node[part]
    assert config.load(SHIPPED) == Config()


def _settings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_shipped_file_is_the_rendered_template():
    """Same keys, order and values as the template rendered from the dataclasses (the
    comments may lag behind a reworded note without failing)."""
    expected = config.render_toml(Config(), notes=True)
    assert _settings(SHIPPED.read_text()) == _settings(expected), (
        "config/edge-agent.toml drifted from the dataclasses; regenerate it with "
        "`python -m edge_agent.cli.config template > config/edge-agent.toml`"
    )


def test_every_field_of_the_shipped_file_is_commented_or_documented():
    text = SHIPPED.read_text()
    assert text.count("\n# ") > 20
    assert "[camera]" in text and "[detector]" in text


def test_show_prints_effective_config_as_toml_and_json(tmp_path, capsys):
    path, secret = tmp_path / "c.toml", tmp_path / "pw"
    secret.write_text("hunter2\n")  # the file must exist: it is checked on load
    path.write_text(
        "[detector]\nscore_threshold = 0.7\n"
        f"[mqtt]\nusername = 'agent'\npassword_file = '{secret}'\n"
    )
    assert cli.main(["config", "show", "--config", str(path)]) == 0
    shown = capsys.readouterr().out
    assert config.parse(shown).detector.score_threshold == 0.7
    assert cli.main(["config", "show", "--json", "--config", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["detector"]["score_threshold"] == 0.7
    assert data["mqtt"]["password_file"] == str(secret)  # a path, not a secret
    assert "hunter2" not in shown


def test_secret_looking_values_are_masked():
    @dataclasses.dataclass
    class Section:
        password: str = "hunter2"
        password_file: str = "/etc/pw"

    @dataclasses.dataclass
    class Holder:
        mqtt: Section = dataclasses.field(default_factory=Section)

    shown = config.masked(Holder())  # type: ignore[arg-type]
    assert shown.mqtt.password == "***" and shown.mqtt.password_file == "/etc/pw"


def test_reload_applies_tunables_and_ignores_the_rest():
    running = Config()
    new = config.parse(
        "[detector]\nscore_threshold = 0.8\n[camera]\nwidth = 320\n"
        "[display]\nfps = 2.0\n[mqtt]\nstats_interval_s = 5.0\n"
    )
    reload = config.merge_reload(running, new)
    assert reload.applied == {
        "detector.score_threshold": (0.65, 0.8),
        "display.fps": (5.0, 2.0),
        "mqtt.stats_interval_s": (30.0, 5.0),
    }
    assert reload.ignored == {"camera.width": (640, 320)}
    assert reload.config.detector.score_threshold == 0.8
    assert reload.config.camera.width == 640  # needs a restart
    assert running.detector.score_threshold == 0.65  # the running one is not mutated


def test_errors_are_config_errors_with_exit_78():
    with pytest.raises(ConfigError) as caught:
        config.parse("[detector]\nscore_threshold = 2\n")
    assert caught.value.exit_code == 78


def test_show_gives_the_device_id_it_will_use(tmp_path, capsys):
    import socket

    path = tmp_path / "c.toml"
    path.write_text("[detector]\nscore_threshold = 0.7\n")
    assert cli.main(["config", "show", "--config", str(path)]) == 0
    shown = capsys.readouterr().out
    host = socket.gethostname()
    assert f'device_id = "{host}"  # empty in the file: the host name\n' in shown


def test_a_config_with_a_utf8_bom_loads(tmp_path, capsys):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'device_id = "hall-1"\n[detector]\nscore_threshold = 0.7\n')
    assert config.load(path).device_id == "hall-1"
    assert cli.main(["config", "check", str(path)]) == 0


def test_a_password_file_others_can_read_is_warned_about(tmp_path, caplog):
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    secret.chmod(0o644)
    mqtt = config.MqttConfig(username="agent", password_file=str(secret))
    assert config.read_password(mqtt) == "hunter2"
    assert "readable by everyone (mode 644); chmod 600 it" in caplog.text
    assert "hunter2" not in caplog.text
    secret.write_text("")
    with pytest.raises(ConfigError, match=r"mqtt.password_file = .*: the file is empty"):
        config.read_password(mqtt)
