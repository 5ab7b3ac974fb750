#!/usr/bin/env bash
# The Raspberry Pi check without a Pi: install edge-agent in an arm64 Debian Bookworm rootfs
# under qemu-user, analyse the sample media there and compare with this (x86-64) machine.
#
#   sudo scripts/arm64_smoke.sh [ROOTFS_DIR]      (default /var/tmp/edge-agent-arm64)
#
# Needs root (debootstrap, chroot, mounts), `make setup` done here (the x86 side and the
# sample media come from .venv), and the network to Debian and PyPI. Installs debootstrap
# and qemu-user-static from apt when missing. A rootfs from an earlier run is reused, so only
# the first run pays for debootstrap (4 to 13 minutes, by machine; `pip install .` about 4).
# Not part of `make test`.
#
# qemu-user 7.2 shows the host's /proc/cpuinfo to the guest, and LiteRT's CPU detection then
# segfaults on x86 flags: a Raspberry Pi 4's cpuinfo (4 Cortex-A72 cores) is bind-mounted
# over it, and QEMU_CPU=cortex-a72 makes the emulated CPU the same one.
#
# Pass: every photo gives the same faces, emotions and genders on both machines, boxes
# within BOX_PX pixels and ages within AGE_Y years (int8 kernels differ a little between
# XNNPACK's x86 and Arm code; float photos agree exactly); a video may differ in a tenth of
# its frames' face count and in 5 % of its boxes by up to 3 x BOX_PX (each machine's FFmpeg
# decodes its pixels; see the comparison below). Exit 0 on a pass, 1 on a difference beyond
# those, 2 when a step fails.
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rootfs="${1:-/var/tmp/edge-agent-arm64}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BOX_PX="${BOX_PX:-6}"
AGE_Y="${AGE_Y:-3.5}"
samples=(single_face.jpg multi_face.jpg single_face.mp4)
host_python="$here/.venv/bin/python"
work="$(mktemp -d)"
mounted=()

say() { echo "==> $*"; }
fail() { echo "arm64_smoke.sh: $*" >&2; exit 2; }
trap 'echo "arm64_smoke.sh: failed at line $LINENO" >&2; exit 2' ERR

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local index
    for ((index = ${#mounted[@]} - 1; index >= 0; index--)); do
        umount -l "${mounted[index]}" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "run as root (debootstrap, chroot and mounts need it)"
[ -x "$host_python" ] || fail "no $host_python: run 'make setup' first"

# --- tools and the arm64 binfmt handler ----------------------------------------------------
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
[ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    # Debian's rule, with the F flag: the kernel keeps the interpreter open, so it works
    # inside the chroot without a copy there.
    rule="$(grep -h '^:qemu-aarch64:' /usr/lib/binfmt.d/qemu-aarch64.conf)"
    printf '%s\n' "$rule" >/proc/sys/fs/binfmt_misc/register
fi

# --- the rootfs ----------------------------------------------------------------------------
if [ ! -f "$rootfs/.edge-agent-smoke" ]; then
    say "debootstrap arm64 bookworm into $rootfs (4 to 13 minutes under emulation)"
    rm -rf "$rootfs"
    started=$SECONDS
    debootstrap --arch=arm64 --variant=minbase \
        --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror"
    touch "$rootfs/.edge-agent-smoke"
    say "debootstrap took $(((SECONDS - started) / 60)) min"
else
    say "reusing the rootfs in $rootfs"
fi

cpuinfo="$work/cpuinfo"
{
    for cpu in 0 1 2 3; do
        cat <<EOF
processor	: $cpu
BogoMIPS	: 108.00
Features	: fp asimd evtstrm crc32 cpuid
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd08
CPU revision	: 3

EOF
    done
    cat <<EOF
Hardware	: BCM2835
Revision	: c03111
Serial		: 100000000000cafe
Model		: Raspberry Pi 4 Model B Rev 1.1
EOF
} >"$cpuinfo"

bind() {  # bind SOURCE TARGET [mount options]
    mount "${@:3}" "$1" "$2"
    mounted+=("$2")
}
# Without sysfs, cpuinfo (XNNPACK's) reads the core lists from these, as on a Pi 4.
mkdir -p "$rootfs/sys/devices/system/cpu"
for list in possible present online; do
    echo 0-3 >"$rootfs/sys/devices/system/cpu/$list"
done
bind proc "$rootfs/proc" -t proc
bind "$cpuinfo" "$rootfs/proc/cpuinfo" --bind
bind /dev "$rootfs/dev" --bind
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"

# pip in the guest reaches PyPI the way it does here: this machine's pip settings, the files
# they and the usual TLS variables name (a proxy's CA, a constraints file), and its extra CAs.
carry=()
copy_in() {  # copy_in FILE: to the same path in the rootfs
    mkdir -p "$rootfs$(dirname "$1")"
    cp "$1" "$rootfs$1"
}
[ -f /etc/pip.conf ] && copy_in /etc/pip.conf
for conf in .config/pip/pip.conf .pip/pip.conf; do  # the guest's HOME is /root
    if [ -f "$HOME/$conf" ]; then
        mkdir -p "$(dirname "$rootfs/root/$conf")"
        cp "$HOME/$conf" "$rootfs/root/$conf"
    fi
done
while IFS= read -r setting; do
    value="${setting#*=}"
    value="${value//\'/}"
    if [ -f "$value" ]; then
        copy_in "$value"
    fi
done < <("$host_python" -m pip config list 2>/dev/null || true)
for variable in PIP_CERT PIP_CONSTRAINT PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_DEFAULT_TIMEOUT \
    SSL_CERT_FILE REQUESTS_CA_BUNDLE; do
    value="${!variable:-}"
    [ -n "$value" ] || continue
    carry+=("$variable=$value")
    if [ -f "$value" ]; then
        copy_in "$value"
    fi
done
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
fi

guest() {  # guest COMMAND...: run in the arm64 rootfs
    chroot "$rootfs" /usr/bin/env -i QEMU_CPU=cortex-a72 HOME=/root LANG=C.UTF-8 \
        PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${carry[@]}" "$@"
}
[ "$(guest uname -m)" = aarch64 ] || fail "the rootfs does not run as aarch64"
guest grep -q "Cortex\|0xd08" /proc/cpuinfo || fail "the Pi 4 cpuinfo is not in place"

# --- install, as `pip install .` on a Pi would -------------------------------------------
say "copying this tree and the samples into the rootfs"
rm -rf "$rootfs/opt/src" "$rootfs/opt/samples"
mkdir -p "$rootfs/opt/src" "$rootfs/opt/samples"
tar -C "$here" --exclude=__pycache__ --exclude='*.egg-info' --exclude='*_edgetpu*' \
    -cf - edge_agent models config pyproject.toml README.md | tar -C "$rootfs/opt/src" -xf -
for name in "${samples[@]}"; do
    path="$("$host_python" -c "from edge_agent.demo.samples import sample; print(sample('$name'))")"
    cp "$path" "$rootfs/opt/samples/$name"
done

guest update-ca-certificates >/dev/null

say "pip install . (not editable) in a venv (about 4 minutes under emulation)"
started=$SECONDS
guest python3 -m venv /opt/venv
guest /opt/venv/bin/pip install --quiet --disable-pip-version-check /opt/src
say "pip took $(((SECONDS - started) / 60)) min; $(guest /opt/venv/bin/edge-agent --version)," \
    "$(guest /opt/venv/bin/python -c 'import platform; print(platform.machine())')"

# --- analyse on both machines ------------------------------------------------------------
for variant in float int8; do
    config="accelerator = \"cpu\"
[mqtt]
enabled = false
[models]
variant = \"$variant\""
    printf '%s\n' "$config" >"$rootfs/opt/smoke-$variant.toml"
    printf '%s\n' "$config" >"$work/smoke-$variant.toml"
    for name in "${samples[@]}"; do
        say "analyze $name ($variant) on arm64, then on x86-64"
        guest /opt/venv/bin/edge-agent analyze --json --config "/opt/smoke-$variant.toml" \
            "/opt/samples/$name" >"$work/arm64-$variant-$name.jsonl"
        (cd "$work" && "$host_python" -m edge_agent.cli analyze --json \
            --config "$work/smoke-$variant.toml" "$rootfs/opt/samples/$name") \
            >"$work/x86-$variant-$name.jsonl"
    done
done

# --- compare -------------------------------------------------------------------------------
say "comparing (boxes within $BOX_PX px, ages within $AGE_Y years, labels equal)"
status=0
"$host_python" - "$work" "$BOX_PX" "$AGE_Y" "${samples[@]}" <<'EOF' || status=$?
import json
import sys
from pathlib import Path

work, box_px, age_y, names = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
# A video's frames are decoded by each machine's FFmpeg, whose colour conversion rounds a
# little differently per CPU, and the tracker carries a difference on: a detection near
# the score threshold can be in one and not the other. So a video may differ in a few
# frames' face count, and its boxes are held to BOX_PX in 95 % of faces, to 3 x BOX_PX at worst.
VIDEO_COUNT_SHARE, VIDEO_BOX_SHARE, VIDEO_BOX_WORST = 0.10, 0.95, 3 * box_px
all_ok = True
for variant in ("float", "int8"):
    for name in names:
        video = not name.endswith(".jpg")
        arm = [json.loads(line) for line in (work / f"arm64-{variant}-{name}.jsonl").open()]
        x86 = [json.loads(line) for line in (work / f"x86-{variant}-{name}.jsonl").open()]
        problems, boxes, age, counts_differ = [], [], 0.0, 0
        if len(arm) != len(x86):
            problems.append(f"{len(arm)} frames on arm64, {len(x86)} on x86-64")
        for a, b in zip(arm, x86):
            fa = sorted(a["faces"], key=lambda f: f["box"][0])
            fb = sorted(b["faces"], key=lambda f: f["box"][0])
            if len(fa) != len(fb):
                counts_differ += 1
                if not video:
                    problems.append(f"{len(fa)} faces on arm64, {len(fb)} on x86-64")
                continue
            for p, q in zip(fa, fb):
                boxes.append(max(abs(u - v) for u, v in zip(p["box"], q["box"])))
                if p.get("age") is not None and q.get("age") is not None:
                    age = max(age, abs(p["age"] - q["age"]))
                for key in ("emotion", "gender"):
                    if p.get(key) != q.get(key):
                        problems.append(
                            f"frame {a['frame']}: {key} {p.get(key)} on arm64, {q.get(key)} on x86"
                        )
        boxes.sort()
        worst = boxes[-1] if boxes else 0.0
        typical = boxes[int(VIDEO_BOX_SHARE * (len(boxes) - 1))] if boxes else 0.0
        if video and counts_differ > VIDEO_COUNT_SHARE * max(len(arm), 1):
            problems.append(f"{counts_differ} of {len(arm)} frames differ in face count")
        if (video and (typical > box_px or worst > VIDEO_BOX_WORST)) or (
            not video and worst > box_px
        ):
            problems.append(f"boxes differ by up to {worst:.1f} px (95 %: {typical:.1f})")
        if age > age_y:
            problems.append(f"an age differs by {age:.1f} years")
        labels = "differ" if any("emotion" in p or "gender" in p for p in problems) else "equal"
        print(
            f"  {variant:5} {name:16} {len(arm):3} frames ({counts_differ} differ in faces), "
            f"{len(boxes):3} faces: box max {worst:5.2f} px (95 % {typical:5.2f}), "
            f"age max {age:4.2f} y, labels {labels}  {'ok' if not problems else 'DIFFERS'}"
        )
        for problem in problems[:5]:
            print(f"      {problem}")
        all_ok &= not problems
sys.exit(0 if all_ok else 1)
EOF
if [ "$status" = 0 ]; then
    say "pass: arm64 (emulated Cortex-A72) agrees with x86-64"
fi
exit "$status"
