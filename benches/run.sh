#!/usr/bin/env bash
# One command for the storage and router benchmarks, with fio as the
# reference for what the disk can do, and the CPU-only micro-benchmarks
# (divan). See benches/README.md.
#
#   bash benches/run.sh            # everything (needs root for fio install
#                                  # and for dropping the page cache)
#
# Environment:
#   RINGSTREAM_BENCH_DIR   parent of every temp dir (default /var/tmp; must be
#                          on the filesystem you want to measure)
#   RINGSTREAM_BENCH_OUT   where the logs go (default target/bench-results/<time>)
#   FIO_SIZE               bytes per fio job (default 1G)
#   SKIP_FIO=1, SKIP_CARGO=1  run only one half
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
parent="${RINGSTREAM_BENCH_DIR:-/var/tmp}"
export RINGSTREAM_BENCH_DIR="$parent"
out="${RINGSTREAM_BENCH_OUT:-$repo/target/bench-results/$(date +%Y%m%d-%H%M%S)}"
fio_size="${FIO_SIZE:-1G}"
mkdir -p "$out" "$parent"
results="$out/results.txt"
: >"$results"

fio_dir="$(mktemp -d "$parent/ringstream-fio-XXXXXX")"
cleanup() { rm -rf "$fio_dir"; }
trap cleanup EXIT

say() { printf '%s\n' "$*" | tee -a "$out/summary.txt"; }

# ---------------------------------------------------------------- machine
device="$(df --output=source "$parent" | tail -1)"
say "# ringstream benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "host: nproc=$(nproc), kernel $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
say "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB total, " $7 " GiB available"}')"
say "bench dir: $parent on $device ($(df --output=fstype "$parent" | tail -1 | tr -d ' '))"
if [ "$(df --output=source "$repo" | tail -1)" != "$device" ]; then
  say "WARNING: $parent is not on the same filesystem as $repo"
fi
block="$(basename "$device")"
if [ -d "/sys/block/$block/queue" ]; then
  q="/sys/block/$block/queue"
  say "block device $block: logical $(cat $q/logical_block_size) B, physical $(cat $q/physical_block_size) B, rotational $(cat $q/rotational), scheduler $(cat $q/scheduler)"
fi
say "logs: $out"
say ""

# ---------------------------------------------------------------- fio
fio_mib_s() { # $1 = READ|WRITE, $2 = fio output file -> MiB/s
  sed -n "s/^ *$1: bw=\([0-9.]*\)\([KMG]i\{0,1\}B\)\/s.*/\1 \2/p" "$2" | head -1 | awk '
    { v = $1; u = $2
      if (u == "KiB") v = v / 1024; else if (u == "GiB") v = v * 1024
      else if (u == "B") v = v / 1048576; else if (u == "kB") v = v * 1000 / 1048576
      else if (u == "MB") v = v * 1000000 / 1048576; else if (u == "GB") v = v * 1e9 / 1048576
      printf "%.1f", v }'
}

run_fio() { # name, READ|WRITE, fio args...
  local name="$1" direction="$2"
  shift 2
  local log="$out/fio-$name.txt"
  if [ "$direction" = WRITE ]; then rm -f "$fio_dir/fio.dat"; fi
  fio --name="$name" --filename="$fio_dir/fio.dat" --direct=1 --ioengine=io_uring \
    --size="$fio_size" --runtime=20 "$@" >"$log" 2>&1
  local bw
  bw="$(fio_mib_s "$direction" "$log")"
  say "$(printf '%-26s %10s MiB/s   fio %s' "$name" "$bw" "$*")"
  echo "RESULT fio $name mib_s=$bw" >>"$results"
}

if [ "${SKIP_FIO:-0}" != 1 ]; then
  if ! command -v fio >/dev/null 2>&1; then
    say "installing fio"
    apt-get install -y -qq fio >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq fio >/dev/null; }
  fi
  say "## fio ($(fio --version)), $fio_size per job, O_DIRECT, io_uring, file in $fio_dir"
  run_fio write-1m-nosync WRITE --rw=write --bs=1M --iodepth=4
  run_fio write-1m-fdatasync16 WRITE --rw=write --bs=1M --iodepth=4 --fdatasync=16
  run_fio write-16k-nosync WRITE --rw=write --bs=16k --iodepth=64
  run_fio write-16k-fdatasync64 WRITE --rw=write --bs=16k --iodepth=64 --fdatasync=64
  run_fio read-1m-qd4 READ --rw=read --bs=1M --iodepth=4
  run_fio read-1m-qd1 READ --rw=read --bs=1M --iodepth=1
  rm -f "$fio_dir/fio.dat"
  say ""
fi

# ---------------------------------------------------------------- cargo
divan_results() { # divan's table on stdin -> RESULT micro <group>/<bench>/<arg> ops_s=.. median_ns=.. [mib_s=..]
  sed 's/│/|/g; s/├─/+-/g; s/╰─/`-/g' | awk '
    function ns(v, u) {
      if (u == "ns") return v; if (u == "µs" || u == "us") return v * 1e3
      if (u == "ms") return v * 1e6; if (u == "s") return v * 1e9; return -1 }
    function mib(v, u) {
      if (u == "B/s") return v / 1048576; if (u == "KiB/s") return v / 1024; if (u == "MiB/s") return v
      if (u == "GiB/s") return v * 1024; if (u == "TiB/s") return v * 1048576; return -1 }
    function flush() {
      if (leaf != "") {
        line = sprintf("RESULT micro %s ops_s=%.0f median_ns=%.1f", leaf, 1e9 / median, median)
        if (rate >= 0) line = line sprintf(" mib_s=%.1f", rate)
        print line
      }
      leaf = ""; rate = -1
    }
    {
      m = match($0, /[+`]- /)
      if (m == 0) {
        # a counter line under a leaf: the first one in B/s gives mib_s
        if (leaf != "" && rate < 0 && $0 ~ /B\/s/) {
          k = split($0, f, "|"); split(f[k - 3], w, " "); rate = mib(w[1], w[2])
        }
        next
      }
      flush()
      depth = (m - 1) / 3
      rest = substr($0, m + 3)
      k = split(rest, f, "|")
      split(f[1], w, " ")
      name[depth] = w[1]
      path = name[0]; for (d = 1; d <= depth; d++) path = path "/" name[d]
      if (k >= 6 && w[2] != "") {
        split(f[3], t, " ")
        median = ns(t[1], t[2])
        if (median > 0) leaf = path
      }
    }
    END { flush() }'
}

if [ "${SKIP_CARGO:-0}" != 1 ]; then
  build_start=$(date +%s)
  cargo bench --no-run >"$out/build.txt" 2>&1 || { cat "$out/build.txt"; exit 1; }
  say "built the benches in $(( $(date +%s) - build_start )) s (not counted below)"
  run_start=$(date +%s)
  for bench in append router cold_read micro; do
    echo "" | tee -a "$out/summary.txt"
    echo "## cargo bench --bench $bench" | tee -a "$out/summary.txt"
    set +e
    cargo bench --bench "$bench" 2>&1 | grep --line-buffered -v '^ *\(Finished\|Running\)' | tee "$out/$bench.txt"
    status=${PIPESTATUS[0]}
    set -e
    grep -v '^RESULT' "$out/$bench.txt" >>"$out/summary.txt" || true
    grep '^RESULT' "$out/$bench.txt" >>"$results" || true
    if [ "$bench" = micro ]; then divan_results <"$out/micro.txt" >>"$results"; fi
    if [ "$status" != 0 ]; then say "FAILED: cargo bench --bench $bench exited with $status"; fi
  done
  say ""
  say "benchmarks ran in $(( $(date +%s) - run_start )) s"
fi

# ---------------------------------------------------------------- ratios
value() { # bench name -> first numeric field (MiB/s or msgs/s)
  awk -v b="$1" -v n="$2" '$2 == b && $3 == n { split($4, kv, "="); print kv[2]; exit }' "$results"
}
ratio() { # label, numerator bench, name, denominator bench, name
  local a b
  a="$(value "$2" "$3")"
  b="$(value "$4" "$5")"
  if [ -n "$a" ] && [ -n "$b" ] && [ "$b" != "-" ]; then
    say "$(awk -v l="$1" -v a="$a" -v b="$b" 'BEGIN { printf "%-58s %10.1f / %10.1f = %5.2f", l, a, b, a / b }')"
  fi
}
say ""
say "## key ratios"
ratio "append 1 MiB, flush=always, 1 part / fio 1M fdatasync16" append storage/1m/always/p1 fio write-1m-fdatasync16
ratio "append 1 MiB, flush=always, 4 parts / fio 1M fdatasync16" append storage/1m/always/p4 fio write-1m-fdatasync16
ratio "append 1 MiB, flush=interval, 1 part / fio 1M nosync" append storage/1m/interval/p1 fio write-1m-nosync
ratio "append 1 MiB, flush=interval, 4 parts / fio 1M nosync" append storage/1m/interval/p4 fio write-1m-nosync
ratio "append 16 KiB, flush=always, 1 part / fio 16k fdatasync64" append storage/16k/always/p1 fio write-16k-fdatasync64
ratio "append 16 KiB, flush=interval, 1 part / fio 16k nosync" append storage/16k/interval/p1 fio write-16k-nosync
ratio "raw DmaFile 1 MiB sync / fio 1M fdatasync16" append raw/1m/sync fio write-1m-fdatasync16
ratio "cold storage.read (16 KiB batches) / fio read 1M qd1" cold_read storage.read/16k-batches fio read-1m-qd1
ratio "cold storage.read (16 KiB batches) / fio read 1M qd4" cold_read storage.read/16k-batches fio read-1m-qd4
ratio "cold storage.read (1048588 B batches) / fio read 1M qd1" cold_read storage.read/maxmsg-batches fio read-1m-qd1
ratio "cold sendfile->tcp / dma+write->tcp" cold_read "sendfile->tcp" cold_read "dma+write->tcp"
ratio "cold sendfile->tcp / storage.read+writev->tcp" cold_read "sendfile->tcp" cold_read "storage.read+writev->tcp"
ratio "router offsets round trip msgs/s / flume ping-pong" router router/offsets/serial router flume/glommio/pingpong
ratio "router remote appends msgs/s / flume 256 in flight" router router/append-remote/w256 router flume/glommio/w256
ratio "router remote appends msgs/s / local appends" router router/append-remote/w256 router router/append-local/w256
ratio "router local appends (Shard::submit) / ShardStorage::submit" router router/append-local/w256 router router/append-storage-direct/w256
say ""
say "## micro (divan medians; each ours/baseline pair counts the same bytes per op, so ops/s ratio = throughput ratio)"
# Pairs every micro/<group>/ours*/<case> with its group's baseline (the
# bench whose name does not start with "ours") for the same case.
awk '$1 == "RESULT" && $2 == "micro" {
    split($3, p, "/"); split($4, kv, "="); ops[$3] = kv[2]; order[++n] = $3
    if (p[2] !~ /^ours/) base[p[1]] = p[2]
  }
  END {
    for (i = 1; i <= n; i++) {
      split(order[i], p, "/")
      if (p[2] !~ /^ours/ || !(p[1] in base)) continue
      b = p[1] "/" base[p[1]] "/" p[3]
      if (b in ops) printf "%-58s %12.0f / %12.0f ops/s = %7.2f\n", order[i] " / " base[p[1]], ops[order[i]], ops[b], ops[order[i]] / ops[b]
    }
  }' "$results" | tee -a "$out/summary.txt"
say ""
say "all results: $results"
