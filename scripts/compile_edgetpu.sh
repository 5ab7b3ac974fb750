#!/usr/bin/env bash
# Compile the full-int8 models in models/ for the Coral Edge TPU, each on its own.
#
# edgetpu_compiler only accepts fully integer-quantised TFLite files, which is why it is run on
# the *_int8.tflite files alone.  For each models/NAME_int8.tflite it writes
# models/NAME_int8_edgetpu.tflite (the compiler's own naming) and keeps the compiler's
# report as models/NAME_int8_edgetpu.log, whatever the outcome.
# The compiler runs on x86-64 Linux only (Debian package `edgetpu-compiler` from Coral's apt
# repository); the compiled files then run on the Pi with libedgetpu.
#
# Usage: scripts/compile_edgetpu.sh [--min-mapped PCT] [MODELS_DIR]
#   MODELS_DIR    default: models/ next to this script
#   --min-mapped  least share of a model's operations that must map to the Edge TPU
#                 (default 90); a model below it is not installed and the script fails
#
# Why one model at a time: the compiler stops at an op it cannot handle (compiler 15 aborted
# on DEPTH_TO_SPACE v2, which the full-range detector has), and one such model must not
# leave the others without an Edge TPU build.  The models that pass are then compiled once
# more together, so they share the Edge TPU's 8 MB of parameter cache instead of evicting
# each other every frame; if that joint run fails, the separate builds are installed.
#
# Exit status: 0 when every model compiled and mapped at least PCT % of its operations,
# 1 otherwise (the summary names each model's outcome), 64 for a bad command line.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
min_mapped=90
models=""
while [ $# -gt 0 ]; do
    case "$1" in
        --min-mapped)
            [ $# -ge 2 ] || { echo "error: --min-mapped needs a number" >&2; exit 64; }
            min_mapped="$2"
            shift
            ;;
        -h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "error: unknown option: $1" >&2; exit 64 ;;
        *) models="$1" ;;
    esac
    shift
done
models="${models:-${here}/../models}"
case "$min_mapped" in
    '' | *[!0-9]*) echo "error: --min-mapped must be a whole percentage, not '$min_mapped'" >&2
        exit 64 ;;
esac
if [ "$min_mapped" -gt 100 ]; then
    echo "error: --min-mapped must be at most 100" >&2
    exit 64
fi

if ! command -v edgetpu_compiler >/dev/null 2>&1; then
    echo "error: edgetpu_compiler not found on PATH." >&2
    echo "Install Coral's edgetpu-compiler package (x86-64 Linux), then run this again." >&2
    exit 1
fi

shopt -s nullglob
# Detectors first: the compiler caches co-compiled models' parameters in the order given.
inputs=("${models}"/blazeface_*_int8.tflite)
for model in "${models}"/*_int8.tflite; do
    case "${model##*/}" in blazeface_*) ;; *) inputs+=("${model}") ;; esac
done
if [ "${#inputs[@]}" -eq 0 ]; then
    echo "error: no *_int8.tflite files in ${models}; run 'make models' first." >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The compiler's "-s" report: the total, and how many ops it left on the CPU (the line is
# missing when none). Prints "ON_TPU TOTAL", or nothing when the report has no total.
mapped_ops() {
    awk -F': *' '
        /^Total number of operations:/ { total = $2 }
        /^Number of operations that will run on CPU:/ { cpu = $2 }
        END { if (total != "") print total - cpu, total }
    ' "$1"
}

# A model that fails now loses the build an earlier run left: models/ says what this run made.
reject() {  # reject MODEL_STEM SUMMARY_LINE
    if [ -f "${models}/${1}_edgetpu.tflite" ]; then
        rm -f "${models}/${1}_edgetpu.tflite"
        echo "    (removed the earlier ${1}_edgetpu.tflite)" >&2
    fi
    summary+=("$2")
    failed=1
}

passed=()
failed=0
summary=()
for model in "${inputs[@]}"; do
    name="${model##*/}"
    stem="${name%.tflite}"
    log="${models}/${stem}_edgetpu.log"
    out="${work}/alone/${stem}"
    mkdir -p "$out"
    echo "==> compiling ${name}"
    if ! edgetpu_compiler -s -o "$out" "$model" >"$log" 2>&1; then
        echo "error: edgetpu_compiler failed on ${name}; its report is in ${log}:" >&2
        tail -n 5 "$log" | sed 's/^/    /' >&2
        reject "$stem" "${name}: FAILED to compile (see ${log})"
        continue
    fi
    on_tpu="" total=""
    read -r on_tpu total < <(mapped_ops "$log") || true
    if [ -z "$total" ] || [ "$total" -eq 0 ] || [ ! -f "${out}/${stem}_edgetpu.tflite" ]; then
        echo "error: ${name}: the compiler wrote no model or no operation count (${log})" >&2
        reject "$stem" "${name}: FAILED (no compiled file or no operation count; see ${log})"
        continue
    fi
    percent=$((on_tpu * 100 / total))
    if [ "$percent" -lt "$min_mapped" ]; then
        echo "error: ${name}: only ${on_tpu} of ${total} operations (${percent} %) map to the" \
            "Edge TPU, under --min-mapped ${min_mapped}; not installed (${log} lists the ops)" >&2
        reject "$stem" "${name}: REFUSED, ${on_tpu}/${total} ops (${percent} %) on the Edge TPU"
        continue
    fi
    summary+=("${name}: ok, ${on_tpu}/${total} ops (${percent} %) on the Edge TPU")
    passed+=("$model")
done

if [ "${#passed[@]}" -gt 1 ]; then
    echo "==> co-compiling the ${#passed[@]} that passed, to share the parameter cache"
    together="${work}/together"
    mkdir -p "$together"
    if edgetpu_compiler -s -o "$together" "${passed[@]}" >"${models}/edgetpu_cocompile.log" 2>&1; then
        source_dir="$together"
    else
        echo "warning: the joint compilation failed (${models}/edgetpu_cocompile.log);" \
            "installing the separate builds" >&2
        source_dir=""
    fi
else
    source_dir=""
fi
for model in "${passed[@]}"; do
    stem="${model##*/}"
    stem="${stem%.tflite}"
    built="${source_dir:-${work}/alone/${stem}}/${stem}_edgetpu.tflite"
    [ -f "$built" ] || built="${work}/alone/${stem}/${stem}_edgetpu.tflite"
    cp "$built" "${models}/${stem}_edgetpu.tflite.tmp"
    mv "${models}/${stem}_edgetpu.tflite.tmp" "${models}/${stem}_edgetpu.tflite"
done

echo
printf '  %s\n' "${summary[@]}"
if [ "$failed" = 1 ]; then
    echo "compile_edgetpu.sh: ${#passed[@]} of ${#inputs[@]} model(s) installed; the others" \
        "stay on the CPU (see above)" >&2
    exit 1
fi
echo "done: ${#passed[@]} model(s) compiled into ${models}"
