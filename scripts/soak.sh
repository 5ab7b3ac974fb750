#!/usr/bin/env bash
# Soak: `edge-agent run` on the looping sample clip at full speed for SOAK_MINUTES
# (default 30), sampling resident memory and fps every SOAK_EVERY seconds into a CSV.
# Passes when RSS grows by no more than SOAK_MAX_GROWTH_MB (default 5) after warm-up
# (the first SOAK_WARMUP seconds, default 120).
#
#   scripts/soak.sh [OUT.csv]        # needs `make setup` first
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${SOAK_MINUTES:-30}
every=${SOAK_EVERY:-10}
warmup=${SOAK_WARMUP:-120}
max_growth=${SOAK_MAX_GROWTH_MB:-5}
out=${1:-soak.csv}
bin=.venv/bin

work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
clip=$("$bin/python" -c 'from edge_agent.demo.samples import DEMO_CLIP, sample; print(sample(DEMO_CLIP))')
cat > "$work/soak.toml" <<TOML
[camera]
source = "$clip"
loop = true
realtime = false
[mqtt]
enabled = false
stats_interval_s = $every
[state]
dir = "$work"
TOML

"$bin/edge-agent" run --config "$work/soak.toml" 2> "$work/run.log" &
pid=$!
echo "elapsed_s,rss_mb,fps" > "$out"
start=$(date +%s)
end=$((start + minutes * 60))
while [ "$(date +%s)" -lt "$end" ]; do
    sleep "$every"
    kill -0 "$pid" 2>/dev/null || { echo "soak: edge-agent exited early" >&2; tail "$work/run.log" >&2; exit 1; }
    rss_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    fps=$(grep -o 'stats: [0-9.]* fps' "$work/run.log" | tail -n 1 | awk '{print $2}' || true)
    printf '%s,%s,%s\n' "$(( $(date +%s) - start ))" "$(awk -v k="$rss_kb" 'BEGIN {printf "%.1f", k / 1024}')" "${fps:-0}" >> "$out"
done
kill -TERM "$pid"
wait "$pid" || true

awk -F, -v warmup="$warmup" -v limit="$max_growth" '
    NR > 1 && $1 >= warmup { if (base == "") base = $2; if ($2 > peak) peak = $2; n++; fps += $3 }
    END {
        if (n == 0) { print "soak: too short to judge (no samples after warm-up)"; exit 1 }
        growth = peak - base
        printf "soak: RSS %.1f MB after warm-up, peak %.1f MB (+%.1f MB), mean %.1f fps over %d samples\n", base, peak, growth, fps / n, n
        exit (growth > limit)
    }' "$out"
