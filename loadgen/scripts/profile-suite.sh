#!/usr/bin/env bash
# The suite (S1-S7) on a broker with a tuning profile against the same
# broker on its defaults, interleaved, in one report:
#
#   PROFILE=tuning/profiles/example.toml DURATION=10s ROUNDS=3 bash loadgen/scripts/profile-suite.sh
#   PROFILE=my.toml bash ...          # a profile from `ringstream tune --output my.toml`
#
# "ours" in the report is the tuned broker and the peer is "default", so
# every "ours / default" ratio reads as tuned over default. Both brokers are
# fresh (ephemeral 127.0.0.1 ports, temporary data dirs, fdatasync before
# every ack unless the profile says otherwise) and are killed by PID on
# exit. Results go to target/suite/<UTC time>-profile/.
set -euo pipefail
cd "$(dirname "$0")/../.."
PROFILE=${PROFILE:-tuning/profiles/example.toml}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-S1,S2,S3,S4,S5,S6,S7}
OUT=target/suite/$(date -u +%Y%m%dT%H%M%SZ)-profile
mkdir -p "$OUT"
[ -f "$PROFILE" ] || { echo "no profile at $PROFILE" >&2; exit 2; }
cp "$PROFILE" "$OUT/profile.toml"

cargo build --release -p ringstream -p ringstream-loadgen
cp target/release/ringstream "$OUT/ringstream"
cp target/release/ringstream-loadgen "$OUT/ringstream-loadgen"

PIDS=()
DIRS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    for dir in "${DIRS[@]}"; do rm -rf "$dir"; done
}
trap cleanup EXIT INT TERM

# start NAME [serve flags...]: sets ADDRESS and PID (no subshell, so that
# cleanup sees every PID and directory).
start() {
    local name=$1
    shift
    local data
    data=$(mktemp -d)
    DIRS+=("$data")
    "$OUT/ringstream" serve --data-dir "$data" --listen 127.0.0.1:0 "$@" >"$OUT/$name.ready" 2>"$OUT/$name.log" &
    PID=$!
    PIDS+=("$PID")
    local line=""
    for _ in $(seq 100); do line=$(head -n1 "$OUT/$name.ready" 2>/dev/null || true); [ -n "$line" ] && break; sleep 0.1; done
    [ -n "$line" ] || { echo "$name: broker not ready after 10 s (see $OUT/$name.log)" >&2; exit 1; }
    ADDRESS=$(sed -E 's/.*listen=([^ ]+).*/\1/' <<<"$line")
}

start tuned --profile "$OUT/profile.toml"
TUNED=$ADDRESS TUNED_PID=$PID
start default
DEFAULT=$ADDRESS DEFAULT_PID=$PID
echo "tuned: $TUNED (PID $TUNED_PID), default: $DEFAULT (PID $DEFAULT_PID)"
grep "from the profile\|profile value" "$OUT/tuned.log" | sed 's/\x1b\[[0-9;]*m//g' >"$OUT/profile-values.log" || true

status=0
"$OUT/ringstream-loadgen" suite --brokers "$TUNED" --broker-pid "$TUNED_PID" \
    --peer "$DEFAULT" --peer-name default --peer-pid "$DEFAULT_PID" \
    --duration "$DURATION" --rounds "$ROUNDS" --scenarios "$SCENARIOS" --out "$OUT" || status=$?
case $status in
    0) ;;
    3) echo "some runs had errors or failed: see the report" >&2 ;;
    *) echo "the suite exited $status" >&2 ;;
esac
echo "results in $OUT (report: $OUT/report.md; ours = tuned profile, peer = default)"
