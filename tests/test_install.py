"""scripts/install.sh (dry run, and a real install into a temporary root) and the unit file
(`systemd-analyze verify` and `security`)."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
from pathlib import Path

import pytest
from helpers import cli, need
from helpers.daemon import base_config, write

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "install.sh"
UNIT = REPO / "systemd" / "edge-agent.service"
MAX_EXPOSURE = 2.0  # `systemd-analyze security` scored 1.5 when this was written


def install(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


# -- the unit file ---------------------------------------------------------------------------


def test_unit_declares_the_contract():
    unit = unit_settings(UNIT.read_text())
    assert unit["Type"] == ["notify"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == ["78"]
    assert int(unit["WatchdogSec"][0]) >= 10
    assert unit["User"] == ["edge-agent"]
    assert unit["StateDirectory"] == ["edge-agent"]
    assert unit["ConfigurationDirectory"] == ["edge-agent"]
    assert unit["ExecStart"][0].startswith("/opt/edge-agent/venv/bin/edge-agent run ")
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges"):
        assert unit[key] == ["strict" if key == "ProtectSystem" else "yes"]
    assert unit["DevicePolicy"] == ["closed"]
    allowed = " ".join(unit["DeviceAllow"])
    for device in (
        "char-video4linux",
        "char-i2c",
        "char-spi",
        "char-gpiochip",
        "char-apex",
        "char-usb_device",
    ):
        assert device in allowed
    assert "video" in unit["SupplementaryGroups"][0]


@pytest.fixture
def runnable_unit(tmp_path):
    """The unit with ExecStart pointing at a file that exists here (verify insists)."""
    need("systemd-analyze")
    text = UNIT.read_text().replace("/opt/edge-agent/venv/bin/edge-agent", "/bin/true")
    path = tmp_path / "edge-agent.service"
    path.write_text(text)
    return path


def test_systemd_analyze_verify_is_clean(runnable_unit):
    result = subprocess.run(
        ["systemd-analyze", "verify", str(runnable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "" and result.stdout.strip() == ""


def test_systemd_analyze_security_exposure_stays_low(runnable_unit):
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(runnable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= MAX_EXPOSURE, result.stdout


# -- the script --------------------------------------------------------------------------------


def test_shellcheck_clean():
    """Every shell script of the project, not only the installer."""
    need("shellcheck")
    scripts = [*sorted((REPO / "scripts").glob("*.sh")), REPO / ".ci" / "run"]
    assert SCRIPT in scripts and len(scripts) >= 5
    result = subprocess.run(
        ["shellcheck", *map(str, scripts)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout


def test_dry_run_prints_every_step_and_changes_nothing(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    result = install("--dry-run", "--pi", "--mqtt-listen", "--with-coral-apt")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"apt-get install .*python3-venv .*python3-picamera2 .*mosquitto", out)
    # spidev from apt: PyPI has it as source only, and there is no compiler on the Pi.
    assert re.search(r"apt-get install .*python3-spidev .*python3-rpi-lgpio", out)
    assert "apt-get install -y -q libedgetpu1-std" in out
    assert "groupadd --system apex" in out
    assert "write /etc/udev/rules.d/60-edge-agent-coral.rules" in out
    assert 'SUBSYSTEM=="apex", MODE="0660", GROUP="apex"' in out
    assert "-m venv --system-site-packages /opt/edge-agent/venv" in out
    assert re.search(r"pip install .*-e /opt/edge-agent/app\\\[display-spi\\\] simplejpeg", out)
    assert "useradd --system" in out and "edge-agent" in out
    assert "install -D -m 0644" in out and "/etc/edge-agent/config.toml" in out
    assert "ln -sfn /opt/edge-agent/venv/bin/edge-agent /usr/local/bin/edge-agent" in out
    assert "new password for MQTT user edge-agent in /etc/edge-agent/mqtt-password" in out
    assert "new password for MQTT user homeassistant" in out
    assert "listener 1883\n|   allow_anonymous false" in out
    assert "systemctl restart mosquitto.service" in out
    assert "systemctl enable edge-agent.service" in out
    assert "systemctl restart edge-agent.service" in out
    plain = install("--dry-run", "--no-pi", "--root", str(root)).stdout
    assert "python3-picamera2" not in plain and "mosquitto" not in plain
    assert "simplejpeg" not in plain and "spidev" not in plain
    assert list(root.iterdir()) == []  # nothing written
    gone = install("--dry-run", "--uninstall")
    assert gone.returncode == 0
    assert "systemctl disable --now edge-agent.service" in gone.stdout
    assert "rm -rf /opt/edge-agent" in gone.stdout and "/etc/edge-agent" not in re.sub(
        r"keeping .*|kept: .*", "", gone.stdout
    )


def test_coral_without_a_matching_runtime_is_refused_before_any_change(tmp_path):
    result = install("--dry-run", "--with-coral", env={"EDGE_AGENT_EDGETPU_LIBRARY": ""})
    if "using the Edge TPU runtime" in result.stdout:
        pytest.skip("this machine has a libedgetpu.so.1")
    assert result.returncode == 1
    assert result.stdout.strip() == "==> dry run: nothing is changed"  # no step began
    assert "no Edge TPU runtime (libedgetpu.so.1) is installed" in result.stderr
    assert "Nothing was changed" in result.stderr and "--with-coral-apt" in result.stderr
    assert "TensorFlow commit of the installed ai-edge-litert" in result.stderr

    runtime = tmp_path / "libedgetpu.so.1"
    runtime.write_bytes(b"\x7fELF")
    found = install("--dry-run", "--with-coral", env={"EDGE_AGENT_EDGETPU_LIBRARY": str(runtime)})
    assert found.returncode == 0, found.stderr
    assert f"using the Edge TPU runtime {runtime}" in found.stdout
    assert f"Environment=EDGE_AGENT_EDGETPU_LIBRARY={runtime}" in found.stdout
    assert "libedgetpu1-std" not in found.stdout


def test_mqtt_listen_needs_no_broker_choice_of_its_own():
    # --mqtt-listen opens the local broker, so it brings mosquitto along.
    result = install("--dry-run", "--no-pi", "--mqtt-listen")
    assert result.returncode == 0, result.stderr
    assert re.search(r"apt-get install .* mosquitto mosquitto-clients", result.stdout)


def test_unknown_option_fails():
    result = install("--frobnicate")
    assert result.returncode != 0 and "unknown option: --frobnicate" in result.stderr


@pytest.fixture
def target_root(tmp_path):
    """A root with its own user database: root, and video, i2c and plugdev groups (no spi,
    no gpio), so the script's "only the groups that exist" is visible."""
    if os.geteuid() != 0:
        pytest.skip("useradd --root needs root")
    root = tmp_path / "root"
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "group").write_text("root:x:0:\nvideo:x:44:\ni2c:x:998:\nplugdev:x:46:\n")
    (etc / "gshadow").write_text("root:*::\nvideo:!::\ni2c:!::\nplugdev:!::\n")
    for name in ("shadow", "gshadow"):
        (etc / name).chmod(0o640)
    return root


@pytest.mark.slow
def test_install_into_a_root_then_uninstall(target_root):
    env = {"PIP_NO_DEPS": "1"}  # the package itself; its dependencies are the venv's business
    first = install("--root", str(target_root), env=env, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    venv = target_root / "opt/edge-agent/venv"
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    config = target_root / "etc/edge-agent/config.toml"
    assert config.read_text() == (REPO / "config/edge-agent.toml").read_text()
    checked = subprocess.run(
        [str(venv / "bin/edge-agent"), "config", "check", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    unit = target_root / "etc/systemd/system/edge-agent.service"
    assert unit.read_text() == UNIT.read_text()
    assert (
        target_root / "etc/systemd/system/multi-user.target.wants/edge-agent.service"
    ).is_symlink()
    dropin = configparser.ConfigParser()
    dropin.read(target_root / "etc/systemd/system/edge-agent.service.d/10-groups.conf")
    assert dropin["Service"]["SupplementaryGroups"] == "i2c plugdev"
    passwd = (target_root / "etc/passwd").read_text()
    assert re.search(
        r"^edge-agent:x:\d+:\d+:.*:/var/lib/edge-agent:/usr/sbin/nologin$", passwd, re.M
    )
    groups = (target_root / "etc/group").read_text()
    for group in ("video", "i2c", "plugdev"):
        assert re.search(rf"^{group}:x:\d+:edge-agent$", groups, re.M)
    models = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import edge_agent.vision.manifest as m; print(m.DEFAULT_MODELS_DIR)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=target_root,
    )  # not the checkout: the installed copy
    assert models.stdout.strip() == str(target_root / "opt/edge-agent/app/models")

    # An edited config survives a reinstall and an uninstall; state survives the uninstall.
    config.write_text('device_id = "porch"\n')
    state = target_root / "var/lib/edge-agent"
    state.mkdir(parents=True)
    (state / "outbox.sqlite3").write_bytes(b"events")
    again = install("--root", str(target_root), env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "keeping" in again.stdout and config.read_text() == 'device_id = "porch"\n'

    gone = install("--root", str(target_root), "--uninstall")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert not (target_root / "opt/edge-agent").exists()
    assert not unit.exists()
    assert not (target_root / "etc/systemd/system/edge-agent.service.d").exists()
    assert not (
        target_root / "etc/systemd/system/multi-user.target.wants/edge-agent.service"
    ).exists()
    assert "edge-agent:" not in (target_root / "etc/passwd").read_text()
    assert config.read_text() == 'device_id = "porch"\n'
    assert (state / "outbox.sqlite3").read_bytes() == b"events"


@pytest.mark.slow
def test_a_failed_pip_puts_the_previous_program_back_and_says_how_to_finish(target_root):
    env = {"PIP_NO_DEPS": "1"}
    first = install("--root", str(target_root), env=env, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    app = target_root / "opt/edge-agent/app"
    (app / "marker").write_text("the working copy")
    # An impossible constraint: pip refuses at once, as it would without a network.
    constraint = target_root / "impossible.txt"
    constraint.write_text("edge-agent==0.0.0\n")
    failed = install("--root", str(target_root), env={**env, "PIP_CONSTRAINT": str(constraint)})
    assert failed.returncode != 0
    assert "failed during: program in " in failed.stderr
    assert "run the same command again" in failed.stderr
    assert "the previous program is put back" in failed.stderr
    assert (app / "marker").read_text() == "the working copy"
    assert not (target_root / "opt/edge-agent/app.new").exists()
    assert not (target_root / "opt/edge-agent/app.old").exists()
    again = install("--root", str(target_root), env=env, timeout=300)  # the same command
    assert again.returncode == 0, again.stdout + again.stderr
    assert not (app / "marker").exists()  # a fresh copy this time


@pytest.mark.slow
@pytest.mark.broker
def test_mqtt_listen_and_coral_in_a_root(target_root, tmp_path):
    from helpers.mqtt import Mosquitto

    need("mosquitto_passwd")  # install.sh hashes the listener's password with it
    runtime = "/usr/local/lib/libedgetpu-own/libedgetpu.so.1"
    (target_root / runtime.lstrip("/")).parent.mkdir(parents=True)
    (target_root / runtime.lstrip("/")).write_bytes(b"\x7fELF")
    env = {"PIP_NO_DEPS": "1", "EDGE_AGENT_EDGETPU_LIBRARY": runtime}
    args = ("--root", str(target_root), "--mqtt-listen", "--with-coral")
    first = install(*args, env=env, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr

    link = target_root / "usr/local/bin/edge-agent"
    assert os.readlink(link) == "/opt/edge-agent/venv/bin/edge-agent"
    assert re.search(r"^apex:x:\d+:edge-agent$", (target_root / "etc/group").read_text(), re.M)
    dropins = target_root / "etc/systemd/system/edge-agent.service.d"
    groups = configparser.ConfigParser()
    groups.read(dropins / "10-groups.conf")
    assert groups["Service"]["SupplementaryGroups"] == "i2c plugdev apex"
    assert (
        f"Environment=EDGE_AGENT_EDGETPU_LIBRARY={runtime}"
        in (dropins / "20-edgetpu.conf").read_text()
    )
    assert (
        'GROUP="apex"' in (target_root / "etc/udev/rules.d/60-edge-agent-coral.rules").read_text()
    )

    config = (target_root / "etc/edge-agent/config.toml").read_text()
    assert 'username = "edge-agent"' in config
    assert 'password_file = "/etc/edge-agent/mqtt-password"' in config
    agent_secret = target_root / "etc/edge-agent/mqtt-password"
    uid = int(re.search(r"^edge-agent:x:(\d+):", (target_root / "etc/passwd").read_text(), re.M)[1])
    assert agent_secret.stat().st_uid == uid and agent_secret.stat().st_mode & 0o777 == 0o600
    listener = (target_root / "etc/mosquitto/conf.d/edge-agent-lan.conf").read_text()
    assert "listener 1883\nallow_anonymous false\n" in listener
    passwd = target_root / "etc/mosquitto/edge-agent.passwd"
    assert "password_file /etc/mosquitto/edge-agent.passwd" in listener

    # A re-run keeps both passwords.
    before = (passwd.read_text(), agent_secret.read_text())
    again = install(*args, env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (passwd.read_text(), agent_secret.read_text()) == before
    assert "keeping the password of MQTT user homeassistant" in again.stdout

    # The real broker with that password file: `check` logs in with the agent's password,
    # and without one is refused.
    with Mosquitto(tmp_path / "broker", anonymous=False, password_file=passwd) as broker:
        rows = {}
        for name, user, secret in (("agent", "edge-agent", agent_secret), ("anonymous", "", "")):
            settings = base_config(tmp_path)
            settings.mqtt.enabled = True
            settings.mqtt.host, settings.mqtt.port = broker.host, broker.port
            settings.mqtt.username, settings.mqtt.password_file = user, str(secret or "")
            checked = cli("check", "--config", str(write(tmp_path / f"{name}.toml", settings)))
            rows[name] = next(line for line in checked.stdout.splitlines() if "broker" in line)
        assert rows["agent"].split()[1] == "ok", rows
        assert rows["anonymous"].split()[1] == "FAIL", rows
