#!/usr/bin/env bash
# Install edge-agent as a systemd service on Raspberry Pi OS (Bookworm) or Debian 12+.
#
#   sudo scripts/install.sh [--with-mosquitto] [--with-coral] [--no-start]
#   sudo scripts/install.sh --uninstall        # keeps /etc/edge-agent and /var/lib/edge-agent
#   scripts/install.sh --dry-run               # print every step, change nothing
#   scripts/install.sh --root DIR              # install into DIR (tests, image builds)
#
# What it does: apt packages (python3-venv, python3-systemd; python3-picamera2 on a Pi;
# mosquitto and the Coral runtime on request), a copy of this tree in /opt/edge-agent/app,
# a venv with --system-site-packages in /opt/edge-agent/venv (picamera2 and libcamera come
# from apt, not PyPI), the system user edge-agent in whichever of video, i2c, spi, gpio,
# plugdev and apex exist, /etc/edge-agent/config.toml only if absent, and the unit enabled.
# With --root, apt and service (re)starts are skipped, the user is created only if DIR has
# its own /etc/passwd, and the unit is enabled with `systemctl --root`.
set -euo pipefail

NAME=edge-agent
SERVICE_USER=edge-agent
HARDWARE_GROUPS=(video i2c spi gpio plugdev apex)
SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CORAL_REPO="${CORAL_REPO:-https://packages.cloud.google.com/apt coral-edgetpu-stable main}"
CORAL_KEY_URL="${CORAL_KEY_URL:-https://packages.cloud.google.com/apt/doc/apt-key.gpg}"

ROOT=""
DRY_RUN=0
UNINSTALL=0
WITH_MOSQUITTO=0
WITH_CORAL=0
START=1
PI=auto

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF
Options:
  --with-mosquitto   also install the mosquitto broker (and its clients)
  --with-coral       also install the Coral Edge TPU runtime (libedgetpu1-std)
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

while [ $# -gt 0 ]; do
    case "$1" in
        --with-mosquitto) WITH_MOSQUITTO=1 ;;
        --with-coral) WITH_CORAL=1 ;;
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
APP="$PREFIX/app"
VENV="$PREFIX/venv"
CONFIG_DIR="$ROOT/etc/$NAME"
CONFIG="$CONFIG_DIR/config.toml"
UNIT_DIR="$ROOT/etc/systemd/system"
UNIT="$UNIT_DIR/$NAME.service"
DROPIN_DIR="$UNIT_DIR/$NAME.service.d"
STATE_DIR="$ROOT/var/lib/$NAME"

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

install_packages() {
    local packages=(python3 python3-venv python3-systemd)
    if is_pi; then
        # Only the Raspberry Pi OS archive has these; plain Debian on a detected Pi gets
        # V4L2 only (--pi asserts Raspberry Pi OS and installs them regardless).
        if [ "$PI" = 1 ] ||
            apt-cache policy python3-picamera2 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            packages+=(python3-picamera2 python3-libcamera)
        else
            say "warning: no python3-picamera2 in this system's apt sources; the Pi camera" \
                "will not be available (USB cameras still work)"
        fi
    fi
    if [ "$WITH_MOSQUITTO" = 1 ]; then
        packages+=(mosquitto mosquitto-clients)
    fi
    if [ -n "$ROOT" ]; then
        skip "apt-get install ${packages[*]} (--root)"
        [ "$WITH_CORAL" = 0 ] || skip "the Coral runtime (--root)"
        return
    fi
    say "Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    run apt-get update -q
    run apt-get install -y -q --no-install-recommends "${packages[@]}"
    if [ "$WITH_CORAL" = 1 ]; then
        say "Coral Edge TPU runtime"
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
        say "system user $SERVICE_USER"
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

install_program() {
    say "program in $PREFIX"
    run rm -rf "$APP"
    run mkdir -p "$APP"
    local items=(edge_agent models config systemd pyproject.toml)
    [ -f "$SOURCE_DIR/README.md" ] && items+=(README.md)
    if [ "$DRY_RUN" = 1 ]; then
        printf '+ tar -C %s -c %s | tar -C %s -x\n' "$SOURCE_DIR" "${items[*]}" "$APP"
    else
        tar -C "$SOURCE_DIR" --exclude=__pycache__ --exclude='*.egg-info' -cf - "${items[@]}" \
            | tar -C "$APP" --no-same-owner -xf -
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        run python3 -m venv --system-site-packages "$VENV"
    fi
    # Editable, so the package finds models/ beside it in $APP; pip honours PIP_* settings.
    # [display]: the OLED and LCD drivers (small, pure Python), so any panel works after
    # a config edit; on a Pi also SPI and GPIO for the ST7789.
    local extras=display
    if is_pi; then
        extras=display-spi
    fi
    run "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "${APP}[${extras}]"
    if is_pi; then
        # apt's simplejpeg (imported by picamera2) is built for Debian's numpy 1.x; the
        # venv's numpy 2 needs the PyPI build, or `import picamera2` fails.
        run "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check simplejpeg
    fi
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
        say "config $CONFIG"
        run install -D -m 0644 "$SOURCE_DIR/config/edge-agent.toml" "$CONFIG"
    fi
}

install_unit() {
    say "systemd unit $UNIT"
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
    # what --with-coral added to apt (the runtime package itself stays: apt owns it)
    run rm -f "$ROOT/etc/apt/sources.list.d/coral-edgetpu.list" \
        "$ROOT/usr/share/keyrings/coral-edgetpu.gpg"
    if user_exists; then
        # shellcheck disable=SC2046
        run userdel $(root_args) "$SERVICE_USER"
    fi
    say "kept: $CONFIG_DIR, $STATE_DIR"
}

if [ "$DRY_RUN" = 1 ]; then
    say "dry run: nothing is changed"
fi
if [ "$UNINSTALL" = 1 ]; then
    uninstall
    exit 0
fi
case "$(dpkg --print-architecture 2>/dev/null || uname -m)" in
    armhf | armel | armv7l | armv6l)
        die "32-bit Raspberry Pi OS is not supported: no TFLite runtime is published for it." \
            "Install the 64-bit Raspberry Pi OS (Bookworm) and run this again." ;;
esac
install_packages
create_user
install_program
install_config
install_unit
say "done: edge-agent check --config /etc/$NAME/config.toml tests the setup;" \
    "journalctl -u $NAME -f shows the log"
