#!/usr/bin/env bash
# Compile every full-int8 model in models/ for the Coral Edge TPU.
#
# edgetpu_compiler only accepts fully integer-quantised TFLite files, which is why it is run on
# the *_int8.tflite files alone.  For each models/NAME_int8.tflite it writes
# models/NAME_int8_edgetpu.tflite (the compiler's own naming) plus a .log beside it.
# The compiler runs on x86-64 Linux only (Debian package `edgetpu-compiler` from Coral's apt
# repository); the compiled files then run on the Pi with libedgetpu.
#
# Usage: scripts/compile_edgetpu.sh [MODELS_DIR]   (default: models/ next to this script)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
models="${1:-${here}/../models}"

if ! command -v edgetpu_compiler >/dev/null 2>&1; then
    echo "error: edgetpu_compiler not found on PATH." >&2
    echo "Install Coral's edgetpu-compiler package (x86-64 Linux), then run this again." >&2
    exit 1
fi

shopt -s nullglob
inputs=("${models}"/blazeface_*_int8.tflite)
for model in "${models}"/*_int8.tflite; do
    case "${model##*/}" in blazeface_*) ;; *) inputs+=("${model}") ;; esac
done
if [ "${#inputs[@]}" -eq 0 ]; then
    echo "error: no *_int8.tflite files in ${models}; run 'make models' first." >&2
    exit 1
fi

# One call co-compiles them: the pipeline runs all of them on every frame through one
# delegate, and co-compiled models share the Edge TPU's 8 MB of on-chip memory instead of
# evicting each other's parameters (about 4 MB of int8 weights in all). Detectors come
# first, as the compiler caches models in the order given.
echo "==> co-compiling ${#inputs[@]} model(s): ${inputs[*]##*/}"
# -s: print the per-op mapping so a CPU fallback is visible in the log.
edgetpu_compiler -s -o "${models}" "${inputs[@]}"
echo "done: ${#inputs[@]} model(s) compiled into ${models}"
