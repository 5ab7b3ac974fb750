#!/usr/bin/env bash
# Vendors the dashboard's chart library, uPlot, from the npm registry: `npm pack` fetches the
# pinned release, its sha512 is checked against the one recorded here, and the browser build,
# its stylesheet, its licence and its package.json go into edge_agent/dashboard/static/uplot/.
# The page loads it from there: no CDN, no build step, nothing fetched at run time.
# To move to another release, change both lines below and run this again.
set -euo pipefail
version=1.6.32
integrity="sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=="

repo="$(cd "$(dirname "$0")/.." && pwd)"
target="$repo/edge_agent/dashboard/static/uplot"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "uplot@$version" >/dev/null)
tarball="$work/uplot-$version.tgz"
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$actual" != "$integrity" ]; then
    echo "vendor_uplot: uplot-$version.tgz has $actual, expected $integrity" >&2
    exit 1
fi
tar -xzf "$tarball" -C "$work"
mkdir -p "$target"
cp "$work/package/dist/uPlot.iife.min.js" "$work/package/dist/uPlot.min.css" \
    "$work/package/LICENSE" "$work/package/package.json" "$target/"
echo "uplot $version -> $target"
