#!/usr/bin/env bash
# Install edge-agent as a systemd service on Raspberry Pi OS (Bookworm) or Debian 12+.
#
#   sudo scripts/install.sh [--with-mosquitto | --mqtt-listen] [--with-coral] [--no-start]
#   sudo scripts/install.sh --uninstall        # keeps /etc/edge-agent and /var/lib/edge-agent
#   scripts/install.sh --dry-run               # print every step, change nothing
#   scripts/install.sh --root DIR              # install into DIR (tests, image builds)
#
# What it does: apt packages (python3-venv, python3-systemd; python3-picamera2 and
# python3-spidev on a Pi; mosquitto on request), a copy of this tree in /opt/edge-agent/app,
# a venv with --system-site-packages in /opt/edge-agent/venv (picamera2, libcamera and spidev
# come from apt, not PyPI), the system user edge-agent in whichever of video, i2c, spi, gpio,
# plugdev and apex exist, /etc/edge-agent/config.toml only if absent, the unit enabled, and
# /usr/local/bin/edge-agent (so `sudo edge-agent check` works).
# With --root, apt and service (re)starts are skipped, the user is created only if DIR has
# its own /etc/passwd, and the unit is enabled with `systemctl --root`.
#
# Every step is safe to run again. Whatever can refuse is checked before anything changes;
# a step that fails later says which one, and the same command finishes the job.
set -Eeuo pipefail

NAME=edge-agent
SERVICE_USER=edge-agent
HARDWARE_GROUPS=(video i2c spi gpio plugdev apex)
SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CORAL_REPO="${CORAL_REPO:-https://packages.cloud.google.com/apt coral-edgetpu-stable main}"
CORAL_KEY_URL="${CORAL_KEY_URL:-https://packages.cloud.google.com/apt/doc/apt-key.gpg}"
# The Edge TPU runtime the agent loads: libedgetpu.so.1 from the loader's path, or a file
# named here (one built by hand; the service gets the same setting in a drop-in).
EDGETPU_LIBRARY="${EDGE_AGENT_EDGETPU_LIBRARY:-}"
MQTT_PORT=1883

ROOT=""
DRY_RUN=0
UNINSTALL=0
WITH_MOSQUITTO=0
WITH_CORAL=0
CORAL_APT=0
MQTT_LISTEN=0
START=1
PI=auto

usage() {
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF

Options:
  --with-mosquitto   also install the mosquitto broker (and its clients)
  --mqtt-listen      --with-mosquitto, opened to the LAN on port 1883 with passwords:
                     users edge-agent (this agent) and homeassistant (Home Assistant)
  --with-coral       set up a Coral Edge TPU: udev rules, the apex group; needs an Edge TPU
                     runtime that matches ai-edge-litert (refuses, naming it, without one)
  --with-coral-apt   --with-coral, and Coral's libedgetpu1-std 16.0 from Coral's apt repository
                     anyway (built for TensorFlow 2.5; untested with ai-edge-litert; the
                     agent's probe falls back to the CPU if it crashes)
  --no-start         enable the unit but do not (re)start it now
  --pi | --no-pi     treat this machine as a Raspberry Pi (OS) or not (default: detect)
  --uninstall        remove the service, program and user; keep config and state
  --dry-run          print what would be done and change nothing
  --root DIR         install under DIR instead of /
  -h, --help         this text
EOF
}

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "==> $*"; }

# The step being done, for the message when one fails half-way.
STEP="checks"
step() {
    STEP="$1"
    say "$1"
}
on_error() {
    local status=$?
    echo "install.sh: failed during: $STEP (exit status $status; the reason is above)." >&2
    echo "  The steps before it are complete; nothing after it was done. Fix the cause and" \
        "run the same command again: every step is safe to repeat." >&2
    echo "  (sudo scripts/install.sh --uninstall removes what was installed.)" >&2
    exit "$status"
}
trap on_error ERR

while [ $# -gt 0 ]; do
    case "$1" in
        --with-mosquitto) WITH_MOSQUITTO=1 ;;
        --with-coral) WITH_CORAL=1 ;;
        --with-coral-apt) WITH_CORAL=1 CORAL_APT=1 ;;
        --mqtt-listen) MQTT_LISTEN=1 WITH_MOSQUITTO=1 ;;
        --no-start) START=0 ;;
        --pi) PI=1 ;;
        --no-pi) PI=0 ;;
        --uninstall) UNINSTALL=1 ;;
        --dry-run) DRY_RUN=1 ;;
        --root)
            [ $# -ge 2 ] || die "--root needs a directory"
            ROOT="$2"
            shift
            ;;
        --root=*) ROOT="${1#--root=}" ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done

if [ -n "$ROOT" ]; then
    [ -d "$ROOT" ] || [ "$DRY_RUN" = 1 ] || die "--root $ROOT: no such directory"
    ROOT="$(cd "$ROOT" 2>/dev/null && pwd || echo "$ROOT")"
fi
if [ -z "$ROOT" ] && [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
    die "run as root (sudo), or try --dry-run or --root DIR"
fi

PREFIX="$ROOT/opt/$NAME"
BIN_LINK="$ROOT/usr/local/bin/$NAME"
UDEV_RULES="$ROOT/etc/udev/rules.d/60-edge-agent-coral.rules"
MOSQUITTO_CONF="$ROOT/etc/mosquitto/conf.d/edge-agent-lan.conf"
MOSQUITTO_PASSWD="$ROOT/etc/mosquitto/edge-agent.passwd"
HA_PASSWORD="$ROOT/etc/mosquitto/homeassistant-password"
APP="$PREFIX/app"
VENV="$PREFIX/venv"
CONFIG_DIR="$ROOT/etc/$NAME"
CONFIG="$CONFIG_DIR/config.toml"
UNIT_DIR="$ROOT/etc/systemd/system"
UNIT="$UNIT_DIR/$NAME.service"
DROPIN_DIR="$UNIT_DIR/$NAME.service.d"
STATE_DIR="$ROOT/var/lib/$NAME"
AGENT_PASSWORD="$CONFIG_DIR/mqtt-password"
CONFIG_CREATED=0

# Every change goes through run (a command) or put (a file), so --dry-run shows them all.
run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if [ "$DRY_RUN" = 0 ]; then
        "$@"
    fi
}

put() {  # put MODE PATH: write stdin to PATH
    local mode="$1" path="$2" content
    content="$(cat)"
    printf '+ write %s (mode %s)\n' "$path" "$mode"
    if [ "$DRY_RUN" = 1 ]; then
        printf '%s\n' "$content" | sed 's/^/|   /'
        return
    fi
    mkdir -p "$(dirname "$path")"
    printf '%s\n' "$content" >"$path"
    chmod "$mode" "$path"
}

skip() { printf -- '- skipped: %s\n' "$*"; }

is_pi() {
    case "$PI" in
        1) return 0 ;;
        0) return 1 ;;
    esac
    [ -r /proc/device-tree/model ] && grep -qa "Raspberry Pi" /proc/device-tree/model
}

existing_groups() {
    local group found=()
    for group in "${HARDWARE_GROUPS[@]}"; do
        if getent_group "$group"; then
            found+=("$group")
        fi
    done
    echo "${found[*]}"
}

getent_group() {
    if [ -n "$ROOT" ]; then
        [ -f "$ROOT/etc/group" ] && grep -q "^$1:" "$ROOT/etc/group"
    else
        getent group "$1" >/dev/null
    fi
}

user_exists() {
    if [ -n "$ROOT" ]; then
        [ -f "$ROOT/etc/passwd" ] && grep -q "^$SERVICE_USER:" "$ROOT/etc/passwd"
    else
        getent passwd "$SERVICE_USER" >/dev/null
    fi
}

# useradd and friends take --root DIR themselves; empty when installing to /.
root_args() {
    if [ -n "$ROOT" ]; then
        printf '%s\n' --root "$ROOT"
    fi
}

systemctl_root() {
    if [ -n "$ROOT" ]; then
        run systemctl --root="$ROOT" "$@"
    else
        run systemctl "$@"
    fi
}

apt_has() {  # apt_has PACKAGE: the system's apt sources offer it
    apt-cache policy "$1" 2>/dev/null | grep -q 'Candidate: [0-9]'
}

install_packages() {
    local packages=(python3 python3-venv python3-systemd)
    if is_pi; then
        # Only the Raspberry Pi OS archive has these; plain Debian on a detected Pi gets
        # V4L2 only (--pi asserts Raspberry Pi OS and installs them regardless).
        if [ "$PI" = 1 ] || apt_has python3-picamera2; then
            packages+=(python3-picamera2 python3-libcamera)
        else
            say "warning: no python3-picamera2 in this system's apt sources; the Pi camera" \
                "will not be available (USB cameras still work)"
        fi
        # [display-spi] needs spidev, which PyPI has only as source (a compiler and
        # python3-dev); Debian's build satisfies it through --system-site-packages.
        packages+=(python3-spidev)
        # GPIO for SPI panels: Raspberry Pi OS's build where its archive has one, else
        # pip's rpi-lgpio (a wheel for aarch64).
        if [ "$PI" = 1 ] || apt_has python3-rpi-lgpio; then
            packages+=(python3-rpi-lgpio)
        fi
    fi
    if [ "$WITH_MOSQUITTO" = 1 ]; then
        packages+=(mosquitto mosquitto-clients)
    fi
    if [ -n "$ROOT" ]; then
        skip "apt-get install ${packages[*]} (--root)"
        return
    fi
    step "Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    run apt-get update -q
    run apt-get install -y -q --no-install-recommends "${packages[@]}"
}

# --- Coral ------------------------------------------------------------------------------------
# No Edge TPU runtime built for a current TensorFlow Lite is published on Debian or PyPI.
# Coral's own libedgetpu1-std 16.0 was built for TensorFlow 2.5 and is reported to crash
# with TFLite 2.12 and later (google-coral/edgetpu#812); we ship ai-edge-litert. So
# --with-coral sets up the device side around a runtime already installed, and without one
# refuses before changing anything, saying what to install.

edgetpu_runtime() {  # prints the runtime found, or nothing
    if [ -n "$EDGETPU_LIBRARY" ]; then
        if [ -f "$ROOT$EDGETPU_LIBRARY" ]; then
            echo "$EDGETPU_LIBRARY"
        fi
        return 0
    fi
    local folder
    for folder in /usr/lib/aarch64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/lib /usr/local/lib; do
        if [ -e "$ROOT$folder/libedgetpu.so.1" ]; then
            echo "$folder/libedgetpu.so.1"
            return 0
        fi
    done
}

check_coral() {
    if [ "$WITH_CORAL" = 0 ] || [ "$CORAL_APT" = 1 ] || [ -n "$(edgetpu_runtime)" ]; then
        return 0
    fi
    cat >&2 <<EOF
install.sh: --with-coral: no Edge TPU runtime (libedgetpu.so.1${EDGETPU_LIBRARY:+ at $EDGETPU_LIBRARY}) is installed, and
none built for this agent's TensorFlow Lite (ai-edge-litert, from PyPI) is published on
Debian or PyPI: Coral's libedgetpu1-std 16.0 was built for TensorFlow 2.5 and crashes with
TFLite 2.12 and later. Nothing was changed. Install one of these, then run this again:
  - libedgetpu built from its source (github.com/google-coral/libedgetpu) against the
    TensorFlow commit of the installed ai-edge-litert, as /usr/local/lib/libedgetpu.so.1
    (then sudo ldconfig), or anywhere, named by EDGE_AGENT_EDGETPU_LIBRARY=/path/to/it
    for this script (the service gets the same setting);
  - or add --with-coral-apt to install Coral's libedgetpu1-std from Coral's apt repository
    anyway: untested with ai-edge-litert; 'edge-agent check' then says whether it works,
    and the agent falls back to the CPU if it crashes.
EOF
    exit 1
}

pcie_coral_present() {
    local device
    for device in /sys/bus/pci/devices/*; do
        [ -r "$device/vendor" ] || continue
        if [ "$(cat "$device/vendor")" = 0x1ac1 ] && [ "$(cat "$device/device")" = 0x089a ]; then
            return 0
        fi
    done
    return 1
}

install_coral() {
    [ "$WITH_CORAL" = 1 ] || return 0
    step "Coral Edge TPU"
    if [ "$CORAL_APT" = 1 ] && [ -z "$ROOT" ]; then
        say "Coral's apt repository and libedgetpu1-std (untested with ai-edge-litert)"
        run apt-get install -y -q --no-install-recommends ca-certificates curl gnupg
        if [ "$DRY_RUN" = 1 ]; then
            printf '+ curl -fsSL %s | gpg --dearmor -o %s\n' "$CORAL_KEY_URL" \
                /usr/share/keyrings/coral-edgetpu.gpg
        else
            curl -fsSL "$CORAL_KEY_URL" | gpg --dearmor --yes -o /usr/share/keyrings/coral-edgetpu.gpg
        fi
        echo "deb [signed-by=/usr/share/keyrings/coral-edgetpu.gpg] $CORAL_REPO" \
            | put 0644 /etc/apt/sources.list.d/coral-edgetpu.list
        run apt-get update -q
        run apt-get install -y -q libedgetpu1-std
    elif [ "$CORAL_APT" = 1 ]; then
        skip "Coral's apt repository and libedgetpu1-std (--root)"
    else
        say "using the Edge TPU runtime $(edgetpu_runtime)"
    fi
    # The PCIe/M.2 Coral's device belongs to group apex, the USB one to plugdev.
    if getent_group apex; then
        :
    elif [ -n "$ROOT" ] && [ ! -f "$ROOT/etc/group" ]; then
        skip "groupadd apex ($ROOT has no etc/group)"
    else
        # shellcheck disable=SC2046 # root_args is empty or exactly two words
        run groupadd $(root_args) --system apex
    fi
    put 0644 "$UDEV_RULES" <<'EOF'
# Written by edge-agent's install.sh --with-coral: who may use a Coral Edge TPU.
# USB Accelerator, before (Global Unichip) and after (Google) its firmware is loaded.
SUBSYSTEM=="usb", ATTRS{idVendor}=="1a6e", ATTRS{idProduct}=="089a", MODE="0664", GROUP="plugdev"
SUBSYSTEM=="usb", ATTRS{idVendor}=="18d1", ATTRS{idProduct}=="9302", MODE="0664", GROUP="plugdev"
# M.2 / PCIe Accelerator (/dev/apex_N), once the gasket and apex kernel modules are loaded.
SUBSYSTEM=="apex", MODE="0660", GROUP="apex"
EOF
    if [ -z "$ROOT" ]; then
        run udevadm control --reload-rules
        run udevadm trigger --subsystem-match=usb --subsystem-match=apex
    fi
    if [ -n "$EDGETPU_LIBRARY" ]; then
        put 0644 "$DROPIN_DIR/20-edgetpu.conf" <<EOF
# Written by install.sh: the Edge TPU runtime this machine uses.
[Service]
Environment=EDGE_AGENT_EDGETPU_LIBRARY=$EDGETPU_LIBRARY
EOF
    else
        run rm -f "$DROPIN_DIR/20-edgetpu.conf"
    fi
    # The PCIe driver is not ours to install: a kernel module (gasket-dkms) that only Coral's
    # apt repository and its source publish, built for the running kernel.
    if [ -z "$ROOT" ] && pcie_coral_present && [ ! -e /dev/apex_0 ]; then
        say "warning: a PCIe/M.2 Coral is present but /dev/apex_0 is not: its driver" \
            "(gasket-dkms, from Coral's apt repository or github.com/google/gasket-driver," \
            "built with the kernel headers) is missing, and install.sh does not install it;" \
            "see the README's Coral section"
    fi
}

create_user() {
    local groups
    groups="$(existing_groups)"
    if user_exists; then
        say "user $SERVICE_USER exists"
    elif [ -n "$ROOT" ] && [ ! -f "$ROOT/etc/passwd" ]; then
        skip "useradd $SERVICE_USER ($ROOT has no etc/passwd)"
        return
    else
        step "system user $SERVICE_USER"
        # shellcheck disable=SC2046 # root_args is empty or exactly two words
        run useradd $(root_args) --system --user-group --no-create-home \
            --home-dir "/var/lib/$NAME" --shell /usr/sbin/nologin \
            --comment "edge-agent daemon" "$SERVICE_USER"
    fi
    if [ -n "$groups" ]; then
        # shellcheck disable=SC2046
        run usermod $(root_args) --append --groups "${groups// /,}" "$SERVICE_USER"
    fi
}

# The new copy is staged beside the old one and swapped in; if pip then fails (a network
# error, most likely), the old copy is put back, so the installed program keeps working.
install_program() {
    step "program in $PREFIX"
    local items=(edge_agent models config systemd pyproject.toml)
    [ -f "$SOURCE_DIR/README.md" ] && items+=(README.md)
    run rm -rf "$APP.new"
    run mkdir -p "$APP.new"
    if [ "$DRY_RUN" = 1 ]; then
        printf '+ tar -C %s -c %s | tar -C %s -x\n' "$SOURCE_DIR" "${items[*]}" "$APP.new"
    else
        tar -C "$SOURCE_DIR" --exclude=__pycache__ --exclude='*.egg-info' -cf - "${items[@]}" \
            | tar -C "$APP.new" --no-same-owner -xf -
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        run python3 -m venv --system-site-packages "$VENV"
    fi
    if [ -d "$APP" ]; then
        run rm -rf "$APP.old"
        run mv "$APP" "$APP.old"
    fi
    run mv "$APP.new" "$APP"
    # Editable, so the package finds models/ beside it in $APP; pip honours PIP_* settings.
    # [display]: the OLED and LCD drivers (small, pure Python), so any panel works after
    # a config edit; on a Pi also SPI and GPIO for the ST7789 (spidev from apt). On a Pi,
    # apt's simplejpeg (imported by picamera2) is built for Debian's numpy 1.x; the venv's
    # numpy 2 needs the PyPI build, or `import picamera2` fails. One pip run: all or nothing.
    local extras=display extra_packages=()
    if is_pi; then
        extras=display-spi
        extra_packages=(simplejpeg)
    fi
    if ! run "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -e "${APP}[${extras}]" "${extra_packages[@]}"; then
        echo "install.sh: pip failed; the previous program is put back" >&2
        if [ -d "$APP.old" ]; then
            rm -rf "$APP"
            mv "$APP.old" "$APP"
        fi
        return 1
    fi
    run rm -rf "$APP.old"
    # The service's /opt is read-only (ProtectSystem=strict): compile the bytecode now.
    run "$VENV/bin/python" -m compileall -q "$APP/edge_agent"
}

install_config() {
    if [ -f "$CONFIG" ]; then
        say "keeping $CONFIG (the shipped one is $APP/config/edge-agent.toml)"
        if [ "$DRY_RUN" = 0 ] && ! "$VENV/bin/edge-agent" config check "$CONFIG"; then
            echo "install.sh: warning: $CONFIG does not pass the check above; fix it" \
                "before starting the service" >&2
        fi
    else
        step "config $CONFIG"
        run install -D -m 0644 "$SOURCE_DIR/config/edge-agent.toml" "$CONFIG"
        CONFIG_CREATED=1
    fi
}

# `edge-agent` on root's and sudo's PATH (secure_path has /usr/local/bin); a file there that
# is not our link is left alone.
install_command() {
    if [ -e "$BIN_LINK" ] && [ ! -L "$BIN_LINK" ]; then
        say "warning: $BIN_LINK exists and is not a link; leaving it (use $VENV/bin/$NAME)"
        return
    fi
    step "command $BIN_LINK"
    run mkdir -p "$(dirname "$BIN_LINK")"
    run ln -sfn "/opt/$NAME/venv/bin/$NAME" "$BIN_LINK"
}

# --- mosquitto on the LAN -----------------------------------------------------------------------
# Mosquitto 2 listens on localhost only until a listener is configured. This one opens port
# 1883 on every interface with passwords only: the agent's (edge-agent) and Home Assistant's
# (homeassistant). Each password is made once and kept in a file of its own, so a re-run
# changes nothing; a password whose file is lost is made anew.

check_mqtt_listen() {
    [ "$MQTT_LISTEN" = 1 ] || return 0
    # With --root apt is skipped: the host's mosquitto_passwd hashes the passwords.
    if [ "$DRY_RUN" = 0 ] && [ -n "$ROOT" ] && ! command -v mosquitto_passwd >/dev/null 2>&1
    then
        die "--mqtt-listen with --root needs mosquitto_passwd here (Debian package mosquitto)"
    fi
}

new_password() {  # new_password USER PLAIN_FILE OWNER: a fresh password, hashed into the broker's file
    local user="$1" plain="$2" owner="$3" secret hashed ids
    printf '+ new password for MQTT user %s in %s (mode 0600, owner %s)\n' "$user" "$plain" "$owner"
    [ "$DRY_RUN" = 1 ] && return 0
    secret="$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')"
    hashed="$(mktemp)"
    printf '%s:%s\n' "$user" "$secret" >"$hashed"
    mosquitto_passwd -U "$hashed"
    mkdir -p "$(dirname "$MOSQUITTO_PASSWD")"
    touch "$MOSQUITTO_PASSWD"
    if grep -q "^$user:" "$MOSQUITTO_PASSWD"; then
        sed -i "/^$user:/d" "$MOSQUITTO_PASSWD"
    fi
    cat "$hashed" >>"$MOSQUITTO_PASSWD"
    rm -f "$hashed"
    mkdir -p "$(dirname "$plain")"
    (umask 077 && printf '%s\n' "$secret" >"$plain")
    ids="$(owner_ids "$owner")"
    if [ -n "$ids" ]; then
        chown "$ids" "$plain"
    fi
}

owner_ids() {  # owner_ids USER: "uid:gid" in the target's user database (chown has no --root)
    if [ -n "$ROOT" ]; then
        awk -F: -v user="$1" '$1 == user { print $3 ":" $4 }' "$ROOT/etc/passwd" 2>/dev/null
    else
        getent passwd "$1" | awk -F: '{ print $3 ":" $4 }'
    fi
}

install_mqtt_listen() {
    [ "$MQTT_LISTEN" = 1 ] || return 0
    step "mosquitto on the LAN (port $MQTT_PORT, passwords only)"
    local user plain owner ids
    for user in "$SERVICE_USER" homeassistant; do
        if [ "$user" = "$SERVICE_USER" ]; then
            plain="$AGENT_PASSWORD" owner="$SERVICE_USER"
        else
            plain="$HA_PASSWORD" owner=root
        fi
        if [ -s "$plain" ] && grep -q "^$user:" "$MOSQUITTO_PASSWD" 2>/dev/null; then
            say "keeping the password of MQTT user $user ($plain)"
        else
            new_password "$user" "$plain" "$owner"
        fi
    done
    if [ "$DRY_RUN" = 0 ]; then
        chmod 0600 "$MOSQUITTO_PASSWD"
        ids="$(owner_ids mosquitto)"
        if [ -n "$ids" ]; then
            chown "$ids" "$MOSQUITTO_PASSWD"
        fi
    fi
    put 0644 "$MOSQUITTO_CONF" <<EOF
# Written by edge-agent's install.sh --mqtt-listen: MQTT for the LAN, with passwords.
# Users: edge-agent (password in /etc/edge-agent/mqtt-password) and homeassistant
# (password in /etc/mosquitto/homeassistant-password). Delete this file to close it again.
listener $MQTT_PORT
allow_anonymous false
password_file /etc/mosquitto/edge-agent.passwd
EOF
    if [ "$CONFIG_CREATED" = 1 ]; then
        say "the agent logs in as $SERVICE_USER ($CONFIG)"
        run sed -i -e "s|^username = \"\"$|username = \"$SERVICE_USER\"|" \
            -e "s|^password_file = \"\"$|password_file = \"/etc/$NAME/mqtt-password\"|" \
            "$CONFIG"
    elif ! grep -q "^password_file = \"/etc/$NAME/mqtt-password\"" "$CONFIG" 2>/dev/null; then
        say "warning: $CONFIG was kept: set username = \"$SERVICE_USER\" and" \
            "password_file = \"/etc/$NAME/mqtt-password\" in its [mqtt] section"
    fi
    if [ -z "$ROOT" ]; then
        run systemctl restart mosquitto.service
    fi
}

install_unit() {
    step "systemd unit $UNIT"
    run install -D -m 0644 "$SOURCE_DIR/systemd/$NAME.service" "$UNIT"
    local groups extra=()
    groups="$(existing_groups)"
    for group in $groups; do
        [ "$group" = video ] || extra+=("$group")
    done
    if [ "${#extra[@]}" -gt 0 ]; then
        put 0644 "$DROPIN_DIR/10-groups.conf" <<EOF
# Written by install.sh: the hardware groups that exist on this machine.
[Service]
SupplementaryGroups=${extra[*]}
EOF
    else
        run rm -f "$DROPIN_DIR/10-groups.conf"
    fi
    if [ -z "$ROOT" ]; then
        run systemctl daemon-reload
    fi
    systemctl_root enable "$NAME.service"
    if [ -n "$ROOT" ]; then
        skip "starting $NAME (--root)"
    elif [ "$START" = 1 ]; then
        run systemctl restart "$NAME.service"
    fi
}

uninstall() {
    say "removing $NAME (keeping $CONFIG_DIR and $STATE_DIR)"
    if [ -z "$ROOT" ]; then
        run systemctl disable --now "$NAME.service" || true
    elif [ -f "$UNIT" ]; then
        systemctl_root disable "$NAME.service" || true
    fi
    run rm -f "$UNIT"
    run rm -rf "$DROPIN_DIR"
    if [ -z "$ROOT" ]; then
        run systemctl daemon-reload
    fi
    run rm -rf "$PREFIX"
    if [ -L "$BIN_LINK" ]; then
        run rm -f "$BIN_LINK"
    fi
    # what --with-coral added (the runtime package itself stays: apt owns it)
    run rm -f "$ROOT/etc/apt/sources.list.d/coral-edgetpu.list" \
        "$ROOT/usr/share/keyrings/coral-edgetpu.gpg" "$UDEV_RULES"
    if user_exists; then
        # shellcheck disable=SC2046
        run userdel $(root_args) "$SERVICE_USER"
    fi
    say "kept: $CONFIG_DIR, $STATE_DIR"
    if [ -f "$MOSQUITTO_CONF" ]; then
        say "kept: $MOSQUITTO_CONF (mosquitto stays open to the LAN; delete it and restart" \
            "mosquitto to close it)"
    fi
}

if [ "$DRY_RUN" = 1 ]; then
    say "dry run: nothing is changed"
fi
if [ "$UNINSTALL" = 1 ]; then
    uninstall
    exit 0
fi
# Everything that can refuse does so here, before anything is changed.
case "$(dpkg --print-architecture 2>/dev/null || uname -m)" in
    armhf | armel | armv7l | armv6l)
        die "32-bit Raspberry Pi OS is not supported: no TFLite runtime is published for it." \
            "Install the 64-bit Raspberry Pi OS (Bookworm) and run this again." ;;
esac
check_coral
check_mqtt_listen

install_packages
install_coral
create_user
install_program
install_config
install_command
install_mqtt_listen
install_unit
STEP="done"
say "done: sudo edge-agent check tests the setup; journalctl -u $NAME -f shows the log"
if [ "$MQTT_LISTEN" = 1 ]; then
    say "Home Assistant: MQTT integration, broker <this machine's address>, port $MQTT_PORT," \
        "user homeassistant, password: sudo cat /etc/mosquitto/homeassistant-password"
fi
