"""scripts/install.sh (dry run, and a real install into a temporary root) and the unit file
(`systemd-analyze verify` and `security`)."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
from pathlib import Path

import pytest
from helpers import need

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
    result = install("--dry-run", "--pi", "--with-mosquitto", "--with-coral")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"apt-get install .*python3-venv .*python3-picamera2 .*mosquitto", out)
    assert "libedgetpu1-std" in out
    assert "-m venv --system-site-packages /opt/edge-agent/venv" in out
    assert re.search(r"pip install .*simplejpeg", out)  # picamera2 with the venv's numpy
    assert "useradd --system" in out and "edge-agent" in out
    assert "install -D -m 0644" in out and "/etc/edge-agent/config.toml" in out
    assert "systemctl enable edge-agent.service" in out
    assert "systemctl restart edge-agent.service" in out
    plain = install("--dry-run", "--no-pi", "--root", str(root)).stdout
    assert "python3-picamera2" not in plain and "mosquitto" not in plain
    assert "simplejpeg" not in plain
    assert list(root.iterdir()) == []  # nothing written
    gone = install("--dry-run", "--uninstall")
    assert gone.returncode == 0
    assert "systemctl disable --now edge-agent.service" in gone.stdout
    assert "rm -rf /opt/edge-agent" in gone.stdout and "/etc/edge-agent" not in re.sub(
        r"keeping .*|kept: .*", "", gone.stdout
    )


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
