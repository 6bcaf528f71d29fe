#!/usr/bin/env bash
# One command for the storage and router benchmarks, with fio as the
# reference for what the disk can do. See benches/README.md.
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
if [ "${SKIP_CARGO:-0}" != 1 ]; then
  build_start=$(date +%s)
  cargo bench --no-run >"$out/build.txt" 2>&1 || { cat "$out/build.txt"; exit 1; }
  say "built the benches in $(( $(date +%s) - build_start )) s (not counted below)"
  run_start=$(date +%s)
  for bench in append router cold_read; do
    echo "" | tee -a "$out/summary.txt"
    echo "## cargo bench --bench $bench" | tee -a "$out/summary.txt"
    set +e
    cargo bench --bench "$bench" 2>&1 | grep --line-buffered -v '^ *\(Finished\|Running\)' | tee "$out/$bench.txt"
    status=${PIPESTATUS[0]}
    set -e
    grep -v '^RESULT' "$out/$bench.txt" >>"$out/summary.txt" || true
    grep '^RESULT' "$out/$bench.txt" >>"$results" || true
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
say "all results: $results"
