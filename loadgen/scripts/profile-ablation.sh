#!/usr/bin/env bash
# Which profile value helps or hurts: S1 (1 KiB records to 12 partitions,
# acks=all, max throughput) on the broker's defaults, on a tuning profile,
# and on the profile with one value at a time put back to its default.
#
#   PROFILE=tuning/profiles/example.toml ROUNDS=3 DURATION=10s bash loadgen/scripts/profile-ablation.sh
#
# One broker at a time (fresh data dir, ephemeral port, killed by PID after
# its run), variants in a rotating order each round; ratios are taken to the
# default broker's run of the same round. Results: target/profile-ablation/<UTC time>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
PROFILE=${PROFILE:-tuning/profiles/example.toml}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
OUT=target/profile-ablation/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
cp "$PROFILE" "$OUT/profile.toml"
cargo build --release -p ringstream -p ringstream-loadgen
cp target/release/ringstream "$OUT/ringstream"
cp target/release/ringstream-loadgen "$OUT/ringstream-loadgen"

# name|serve flags (the default values come from README.md / limits.rs)
variants=(
    "default|"
    "profile|--profile $OUT/profile.toml"
    "profile,spin=50us|--profile $OUT/profile.toml --set shard.spin.before.park.us=50"
    "profile,write-buffer=16MiB|--profile $OUT/profile.toml --set shard.write.buffer.bytes=16777216"
    "profile,io-depth=64|--profile $OUT/profile.toml --set shard.io.depth=64"
    "profile,cache=256MiB|--profile $OUT/profile.toml --set batch.cache.bytes=268435456"
)

PID=""
DATA=""
stop() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    if [ -n "$DATA" ]; then rm -rf "$DATA"; fi
    PID="" DATA=""
}
trap stop EXIT INT TERM

for round in $(seq "$ROUNDS"); do
    count=${#variants[@]}
    for i in $(seq 0 $((count - 1))); do
        entry=${variants[$(((i + round - 1) % count))]}
        name=${entry%%|*}
        flags=${entry#*|}
        DATA=$(mktemp -d)
        # shellcheck disable=SC2086 # flags are words
        "$OUT/ringstream" serve --data-dir "$DATA" --listen 127.0.0.1:0 $flags >"$OUT/r$round-$name.ready" 2>"$OUT/r$round-$name.log" &
        PID=$!
        line=""
        for _ in $(seq 100); do line=$(head -n1 "$OUT/r$round-$name.ready" 2>/dev/null || true); [ -n "$line" ] && break; sleep 0.1; done
        [ -n "$line" ] || { echo "$name: broker not ready (see $OUT/r$round-$name.log)" >&2; exit 1; }
        broker=$(sed -E 's/.*listen=([^ ]+).*/\1/' <<<"$line")
        "$OUT/ringstream-loadgen" --brokers "$broker" --topic s1 --partitions 12 --record-size 1024 --acks all \
            --duration "$DURATION" --json "$OUT/r$round-$name.json" >"$OUT/r$round-$name.loadgen" 2>&1
        stop
        echo "round $round $name: $(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['throughput_records_per_sec']))" "$OUT/r$round-$name.json") records/s"
    done
done

python3 - "$OUT" "$ROUNDS" "${variants[@]}" <<'EOF' | tee "$OUT/summary.md"
import json, os, statistics, sys
out, rounds, variants = sys.argv[1], int(sys.argv[2]), [v.split("|")[0] for v in sys.argv[3:]]
def run(r, name):
    with open(os.path.join(out, f"r{r}-{name}.json")) as f:
        return json.load(f)
print("| variant | records/s median [min-max] | ratio to default, median [min-max] | ack p99 ms (median) |")
print("|---|---|---|---|")
for name in variants:
    rates = [run(r, name)["throughput_records_per_sec"] for r in range(1, rounds + 1)]
    ratios = [rate / run(r, "default")["throughput_records_per_sec"] for r, rate in zip(range(1, rounds + 1), rates)]
    p99 = statistics.median(run(r, name)["latency_ack_us"]["p99"] / 1000 for r in range(1, rounds + 1))
    print(f"| {name} | {statistics.median(rates):.0f} [{min(rates):.0f}-{max(rates):.0f}] | "
          f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}] | {p99:.1f} |")
EOF
echo "results in $OUT"
