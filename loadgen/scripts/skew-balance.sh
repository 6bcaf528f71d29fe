#!/usr/bin/env bash
# Skewed keys before and after automatic balancing (issue 6's benchmark).
#
#   ROUNDS=3 DURATION=10s bash loadgen/scripts/skew-balance.sh
#
# Each round runs two fresh brokers in turn on the same workload: "off"
# (balancer disabled) and "on" (balancer.enable=true, one move per
# BALANCE_INTERVAL_MS at most). Before each run every partition of the topic
# is moved to shard 0 with `ringstream partition move`: the hot spot a
# balancer exists for. The load is Zipf-keyed (KEYS, default zipf:1000:1.2,
# placed by murmur2 as Kafka's partitioner does), so a few partitions carry
# most of it. WARMUP lets the balancer act before the measured DURATION.
# After each run the script records where the partitions ended up and each
# shard's share of the bytes, from the broker's admin API and /metrics.
#
# Writes target/skew-balance/<UTC time>/: per-run loadgen JSON, placement
# before and after, `ringstream status` tables, broker logs, and summary.md
# with medians and the on/off ratio. Brokers are killed by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-8s}
KEYS=${KEYS:-zipf:1000:1.2}
PARTITIONS=${PARTITIONS:-8}
BALANCE_INTERVAL_MS=${BALANCE_INTERVAL_MS:-2000}
OUT=target/skew-balance/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"

cargo build --release -p ringstream -p ringstream-loadgen
cp target/release/ringstream "$OUT/ringstream"
cp target/release/ringstream-loadgen "$OUT/ringstream-loadgen"
R="$OUT/ringstream"

BROKER_PID=""
DATA=""
stop_broker() {
    if [ -n "$BROKER_PID" ]; then kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; fi
    BROKER_PID=""
    if [ -n "$DATA" ]; then rm -rf "$DATA"; fi
    DATA=""
}
trap stop_broker EXIT INT TERM

# start_broker NAME [serve flags...]: sets BROKER, ADMIN, BROKER_PID.
start_broker() {
    local name=$1
    shift
    DATA=$(mktemp -d)
    "$R" serve --data-dir "$DATA" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 "$@" \
        >"$OUT/$name.ready" 2>"$OUT/$name.log" &
    BROKER_PID=$!
    local line=""
    for _ in $(seq 100); do line=$(head -n1 "$OUT/$name.ready" 2>/dev/null || true); [ -n "$line" ] && break; sleep 0.1; done
    [ -n "$line" ] || { echo "$name: broker not ready after 10 s (see $OUT/$name.log)" >&2; exit 1; }
    BROKER=$(sed -E 's/.*listen=([^ ]+).*/\1/' <<<"$line")
    ADMIN=$(sed -E 's/.*metrics=([^ ]+).*/\1/' <<<"$line")
}

# Each shard's share of bytes in+out so far, from /metrics.
shard_bytes() {
    "$R" status --metrics "$ADMIN" --count 1 --interval 1 2>/dev/null || true
}

for round in $(seq "$ROUNDS"); do
    for mode in off on; do
        name="r$round-$mode"
        flags=()
        if [ "$mode" = on ]; then
            flags=(--set balancer.enable=true --set "balancer.interval.ms=$BALANCE_INTERVAL_MS")
        fi
        start_broker "$name" "${flags[@]}"
        "$R" topic create skew --partitions "$PARTITIONS" -b "$BROKER" >/dev/null
        for p in $(seq 0 $((PARTITIONS - 1))); do
            "$R" partition move "skew/$p" --shard 0 --admin "$ADMIN" >/dev/null
        done
        "$R" partition list --admin "$ADMIN" >"$OUT/$name.placement-before"
        "$OUT/ringstream-loadgen" --brokers "$BROKER" --topic skew --keys "$KEYS" --producers 2 --consumers 1 \
            --record-size 1024 --warmup "$WARMUP" --duration "$DURATION" --json "$OUT/$name.json" \
            >"$OUT/$name.loadgen" 2>&1 &
        loadgen=$!
        # Mid-run: each shard's load over 2 s.
        sleep "${WARMUP%s}"
        sleep 2
        shard_bytes >"$OUT/$name.status"
        wait "$loadgen" || { echo "$name: loadgen failed (see $OUT/$name.loadgen)" >&2; exit 1; }
        "$R" partition list --admin "$ADMIN" >"$OUT/$name.placement-after"
        grep -c "balancer: moving" "$OUT/$name.log" >"$OUT/$name.moves" || true
        stop_broker
        echo "$name: $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(round(d['throughput_records_per_sec']), 'records/s')" "$OUT/$name.json" 2>/dev/null || echo '?') moves=$(cat "$OUT/$name.moves")"
    done
done

python3 - "$OUT" "$ROUNDS" <<'EOF' | tee "$OUT/summary.md"
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def load(name):
    with open(os.path.join(out, name + ".json")) as f:
        return json.load(f)
def field(d, *path):
    for key in path:
        d = d[key]
    return d
rows = []
for mode in ("off", "on"):
    runs = [load(f"r{r}-{mode}") for r in range(1, rounds + 1)]
    rate = [field(d, "throughput_records_per_sec") for d in runs]
    p99 = [field(d, "latency_ack_us", "p99") / 1000 for d in runs]
    moves = [int(open(os.path.join(out, f"r{r}-{mode}.moves")).read().strip() or 0) for r in range(1, rounds + 1)]
    rows.append((mode, rate, p99, moves))
print("| balancer | records/s (median [min-max]) | ack p99 ms | moves per run |")
print("|---|---|---|---|")
for mode, rate, p99, moves in rows:
    print(f"| {mode} | {statistics.median(rate):.0f} [{min(rate):.0f}-{max(rate):.0f}] | "
          f"{statistics.median(p99):.1f} | {moves} |")
ratios = [on / off for off, on in zip(rows[0][1], rows[1][1])]
print(f"\non/off throughput ratio per round: {', '.join(f'{r:.2f}' for r in ratios)}; "
      f"median {statistics.median(ratios):.2f}")
EOF
echo "results in $OUT"
