#!/usr/bin/env bash
# First-cut S1 figures: the S1 produce workload against a fresh release
# broker and against `--baseline raw-tcp`, interleaved, ROUNDS times (the
# order alternates each round). Prints one line per run and the medians.
#
#   bash loadgen/scripts/s1-vs-raw.sh            # ROUNDS=3 DURATION=15s
#   ROUNDS=5 DURATION=10s bash loadgen/scripts/s1-vs-raw.sh
#
# Needs `cargo build --workspace --release` first. Results (JSON per run and
# broker logs) go to target/bench-results/loadgen-<time>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-15s}
BIN=target/release
OUT=target/bench-results/loadgen-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
for b in ringstream ringstream-loadgen; do
    [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: run cargo build --workspace --release" >&2; exit 1; }
done
# Copies, so a rebuild during the run cannot swap the binaries under it.
cp "$BIN/ringstream" "$BIN/ringstream-loadgen" "$OUT/"
BIN=$OUT
echo "commit $(git rev-parse --short HEAD); uncommitted src changes: $(git status --short src | wc -l) files; $(nproc) CPUs" | tee "$OUT/about.txt"
S1=(--topic s1 --partitions 12 --record-size 1024 --acks all --duration "$DURATION")

run_broker() { # $1 = json path
    local data; data=$(mktemp -d)
    local ready="$1.ready"
    "$BIN/ringstream" serve --data-dir "$data" --listen 127.0.0.1:0 >"$ready" 2>>"$OUT/broker.log" &
    local pid=$!
    local line=""
    for _ in $(seq 100); do line=$(head -n1 "$ready" 2>/dev/null || true); [ -n "$line" ] && break; sleep 0.1; done
    [ -n "$line" ] || { echo "broker not ready after 10 s" >&2; kill "$pid"; exit 1; }
    local address
    address=$(sed -E 's/.*listen=([^ ]+).*/\1/' <<<"$line")
    "$BIN/ringstream-loadgen" --brokers "$address" "${S1[@]}" --json "$1" >"$1.txt" 2>"$1.progress" || echo "broker run exited $?" >&2
    kill "$pid"; wait "$pid" || true
    rm -rf "$data"
}
run_raw() { # $1 = json path
    "$BIN/ringstream-loadgen" --baseline raw-tcp "${S1[@]}" --json "$1" >"$1.txt" 2>"$1.progress" || echo "raw-tcp run exited $?" >&2
}

for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then
        run_broker "$OUT/broker-$round.json"; run_raw "$OUT/raw-$round.json"
    else
        run_raw "$OUT/raw-$round.json"; run_broker "$OUT/broker-$round.json"
    fi
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rows = {"broker": [], "raw": []}
print(f"{'run':<10} {'MiB/s':>8} {'rec/s':>9} {'errors':>6} {'ack p50 ms':>10} {'p99':>8} {'p99.9':>8} {'max':>8}")
ratios = []
for r in range(1, rounds + 1):
    got = {}
    for kind in ("broker", "raw"):
        d = json.load(open(f"{out}/{kind}-{r}.json"))
        got[kind] = d
        l = d["latency_ack_us"] or {}
        print(f"{kind+'-'+str(r):<10} {d['throughput_bytes_per_sec']/2**20:>8.1f} {d['throughput_records_per_sec']:>9.0f} {d['errors']:>6} "
              f"{l.get('p50',0)/1e3:>10.3f} {l.get('p99',0)/1e3:>8.3f} {l.get('p999',0)/1e3:>8.3f} {l.get('max',0)/1e3:>8.3f}")
        rows[kind].append(d["throughput_bytes_per_sec"] / 2**20)
    ratios.append(got["broker"]["throughput_bytes_per_sec"] / got["raw"]["throughput_bytes_per_sec"])
for kind in rows:
    v = rows[kind]
    print(f"median {kind}: {statistics.median(v):.1f} MiB/s [{min(v):.1f}-{max(v):.1f}]")
print(f"median broker/raw-tcp ratio: {statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]")
PY
echo "results in $OUT"
