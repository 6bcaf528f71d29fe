#!/usr/bin/env bash
# Broker CPU-seconds per GiB acknowledged under the S1 shape (1 KiB records,
# 12 partitions, acks=all, max throughput, 10 s), from /proc/PID/stat
# (utime + stime) around a ringstream-loadgen run, for this tree's broker and
# optionally another build (PREV=path), alternating, ROUNDS times.
#
#   cargo build --workspace --release
#   PREV=/tmp/prev/target/release/ringstream ROUNDS=3 bash loadgen/scripts/cpu-per-gib.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
LOADGEN=target/release/ringstream-loadgen
TICKS=$(getconf CLK_TCK)
run() { # $1 = broker binary, $2 = label
    local d; d=$(mktemp -d)
    "$1" serve --data-dir "$d" --listen 127.0.0.1:0 >"$d/ready" 2>/dev/null &
    local pid=$! line=""
    for _ in $(seq 100); do line=$(head -n1 "$d/ready" 2>/dev/null || true); [ -n "$line" ] && break; sleep 0.1; done
    [ -n "$line" ] || { echo "broker not ready" >&2; kill "$pid"; exit 1; }
    local t0 t1
    t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    "$LOADGEN" --brokers "$(sed -E 's/.*listen=([^ ]+).*/\1/' <<<"$line")" --topic s1 --partitions 12 --record-size 1024 --acks all \
        --duration 10s --json "$d/out.json" >/dev/null 2>&1
    t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    python3 - "$d/out.json" "$2" "$t0" "$t1" "$TICKS" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
label, t0, t1, ticks = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
gib = d["throughput_bytes_per_sec"] * d["parameters"]["duration_ms"] / 1000 / 2**30
print(f"{label:<6} {d['throughput_bytes_per_sec'] / 2**20:8.1f} MiB/s  {(t1 - t0) / ticks / gib:.3f} broker CPU-s/GiB")
PY
    rm -rf "$d"
}
echo "commit $(git rev-parse --short HEAD); $(nproc) CPUs"
for _ in $(seq "$ROUNDS"); do
    run target/release/ringstream head
    if [ -n "${PREV:-}" ]; then run "$PREV" prev; fi
done
