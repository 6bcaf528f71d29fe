#!/usr/bin/env python3
"""Preliminary end-to-end benchmark: Ringstream vs the machine's ceilings
(iperf3 loopback, fio O_DIRECT writes) and a peer broker (Tansu, memory
storage), interleaved round by round so that noise on a shared VM hits every
scenario alike. Run through benches/e2e/run.sh, which builds and installs.

Every round runs iperf3 and fio without and with fdatasync, then each broker
scenario (fresh broker, fresh data dir; the broker order rotates per round):
  latency    open-loop producer at 1k and at 5k rec/s of 1 KiB (linger 1 ms)
             + a tail consumer: receive time - intended send time; first,
             on the fresh broker
  produce    one producer, N x 1 KiB, acks=all, linger 5 ms, batch 1 MiB
  consume    one consumer, the same N records from the beginning
  produce x2 two producer processes in parallel, N/2 each, new topic
Broker CPU comes from /proc/<pid>/stat (utime+stime), the clients' from
getrusage, the whole machine's from /proc/stat.

The bundled load generator (loadgen/, the load generator issue) replaces this.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LOAD = os.path.join(HERE, "load.py")
TICK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


def log(msg):
    print(msg, flush=True)


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / TICK


def system_busy():
    """(busy seconds, total seconds) over all CPUs since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    total = sum(v[:8])
    return (total - idle) / TICK, total / TICK


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def client(args, timeout=120):
    """Run one load.py process; returns (parsed JSON line, returncode)."""
    p = subprocess.run([sys.executable, LOAD] + args, capture_output=True, text=True, timeout=timeout)
    out = p.stdout.strip().splitlines()
    try:
        res = json.loads(out[-1]) if out else {"error": "no output"}
    except json.JSONDecodeError:
        res = {"error": "bad output: " + out[-1][:200]}
    if p.returncode != 0:
        res.setdefault("error", f"exit {p.returncode}")
        res["stderr_tail"] = p.stderr[-500:]
    return res, p.returncode


def start_clients(args_list):
    return [subprocess.Popen([sys.executable, LOAD] + a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for a in args_list]


def finish_clients(procs, timeout=120):
    results = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        lines = out.strip().splitlines()
        try:
            res = json.loads(lines[-1]) if lines else {"error": "no output"}
        except json.JSONDecodeError:
            res = {"error": "bad output"}
        if p.returncode != 0:
            res.setdefault("error", f"exit {p.returncode}")
            res["stderr_tail"] = err[-500:]
        results.append(res)
    return results


# ------------------------------------------------------------------ ceilings

def listening():
    return subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout.replace("\n", " \n")


def iperf3(out_dir, tag):
    port = free_port()
    srv = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Not wait_port(): "-s -1" would take that probe as its one client.
        deadline = time.time() + 10
        while f":{port} " not in listening():
            if time.time() > deadline:
                return {"error": "iperf3 server did not start"}
            time.sleep(0.05)
        p = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", "5", "-J"], capture_output=True,
                           text=True, timeout=30)
        with open(os.path.join(out_dir, f"iperf3-{tag}.json"), "w") as f:
            f.write(p.stdout)
        j = json.loads(p.stdout)
        return {"mib_s": j["end"]["sum_received"]["bits_per_second"] / 8 / MIB}
    finally:
        try:
            srv.wait(timeout=5)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()


def fio(out_dir, tag, bench_dir, size, extra):
    d = tempfile.mkdtemp(prefix="ringstream-e2e-fio-", dir=bench_dir)
    try:
        # The same job lines as benches/run.sh.
        cmd = ["fio", f"--name={tag}", f"--filename={d}/fio.dat", "--direct=1", "--ioengine=io_uring",
               f"--size={size}", "--runtime=20", "--rw=write", "--bs=1M", "--iodepth=4",
               "--output-format=json"] + extra
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        with open(os.path.join(out_dir, f"fio-{tag}.json"), "w") as f:
            f.write(p.stdout)
        j = json.loads(p.stdout[p.stdout.index("{"):])
        return {"mib_s": j["jobs"][0]["write"]["bw_bytes"] / MIB}
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------ brokers

class Broker:
    def __init__(self, kind, a, out_dir, tag, flush=None):
        self.kind, self.a, self.out_dir, self.tag, self.flush = kind, a, out_dir, tag, flush
        self.data_dir = None
        self.proc = None
        self.bootstrap = None
        self.stderr_path = os.path.join(out_dir, f"broker-{tag}.log")

    def start(self):
        err = open(self.stderr_path, "w")
        if self.kind == "ringstream":
            self.data_dir = tempfile.mkdtemp(prefix="ringstream-e2e-", dir=self.a.bench_dir)
            cmd = [self.a.ringstream, "serve", "--data-dir", self.data_dir, "--listen", "127.0.0.1:0",
                   "--set", f"num.partitions={self.a.partitions}"]
            if self.flush:
                cmd += ["--flush", self.flush]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
            line = self.proc.stdout.readline().strip()
            # "ready shards=N listen=HOST:PORT"
            if not line.startswith("ready "):
                raise RuntimeError(f"ringstream did not start: {line!r}, see {self.stderr_path}")
            kv = dict(x.split("=", 1) for x in line.split()[1:])
            self.bootstrap = kv["listen"]
            self.shards = int(kv["shards"])
        else:
            port = free_port()
            url = f"tcp://127.0.0.1:{port}"
            cmd = [self.a.tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                   "--storage-engine", "memory://tansu/"]
            self.proc = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT)
            if not wait_port(port):
                raise RuntimeError(f"tansu did not start, see {self.stderr_path}")
            self.bootstrap = f"127.0.0.1:{port}"
            self.shards = None
        log(f"    {self.tag}: pid {self.proc.pid} on {self.bootstrap}")

    def cpu(self):
        return proc_cpu_s(self.proc.pid)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        rc = self.proc.poll()
        crashed = rc is not None
        if not crashed:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
                rc = f"killed after SIGTERM timeout ({rc})"
        data_bytes = None
        if self.data_dir:
            data_bytes = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(self.data_dir) for f in fs)
            shutil.rmtree(self.data_dir, ignore_errors=True)
        with open(self.stderr_path, errors="replace") as f:
            lines = f.readlines()
        bad = [l.strip() for l in lines if any(w in l for w in ("ERROR", "WARN", "panick", "error"))]
        return {"exit": rc, "crashed_before_stop": crashed, "log_lines": len(lines), "bad_log_lines": len(bad),
                "bad_log_sample": bad[:5], "data_bytes": data_bytes}


class Sampler:
    """Samples the broker's CPU and the machine's busy time every 20 ms, so
    CPU can be charged to exactly the window a client reports (its start and
    end on CLOCK_MONOTONIC, the same clock as time.monotonic here)."""

    def __init__(self, pid):
        import threading
        self.pid = pid
        self.samples = []
        self.stop_flag = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_flag:
            try:
                busy, total = system_busy()
                self.samples.append((time.monotonic(), proc_cpu_s(self.pid), busy, total))
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.02)

    def window(self, t0, t1):
        """(broker CPU-s, machine busy CPU-s, machine CPU-s) between t0 and t1."""
        before = [x for x in self.samples if x[0] <= t0]
        after = [x for x in self.samples if x[0] >= t1]
        if not before or not after:
            return None
        a, b = before[-1], after[0]
        return b[1] - a[1], b[2] - a[2], b[3] - a[3]

    def close(self):
        self.stop_flag = True
        self.thread.join()


def charge(res, sampler):
    """Adds broker/client/machine CPU over the client's own window."""
    t0, t1 = res.get("start"), res.get("end")
    if t0 is None or t1 is None:
        return res
    time.sleep(0.05)  # let the sampler pass t1
    w = sampler.window(t0, t1)
    secs = t1 - t0
    if w:
        res["broker_cpu_s"] = w[0]
        res["broker_cpu_pct"] = 100 * w[0] / secs
        res["machine_busy_pct"] = 100 * os.cpu_count() * w[1] / w[2] if w[2] else None
    if "client_cpu_s" in res:
        res["client_cpu_pct"] = 100 * res["client_cpu_s"] / secs
        if res.get("machine_busy_pct") is not None and "broker_cpu_pct" in res:
            # Whatever else ran on the machine meanwhile (other engineers'
            # builds and tests): the noise this run had to share the CPUs with.
            res["other_cpu_pct"] = res["machine_busy_pct"] - res["broker_cpu_pct"] - res["client_cpu_pct"]
    return res


def latency_phase(a, bs, topic, rate):
    res, rc = client(["create", "--bootstrap", bs, "--topic", topic, "--partitions", str(a.partitions)], 60)
    if rc:
        raise RuntimeError(f"create {topic}: {res}")
    expect = int(rate * a.lat_seconds)
    cons = start_clients([["latency-consumer", "--bootstrap", bs, "--topic", topic, "--expect", str(expect),
                           "--seconds", str(a.lat_seconds + 10)]])
    prod, _ = client(["latency-producer", "--bootstrap", bs, "--topic", topic, "--rate", str(rate),
                      "--seconds", str(a.lat_seconds), "--size", str(a.size), "--delay-s", "1.0"])
    lat = finish_clients(cons)[0]
    lat["producer"] = prod
    lat["rate"] = rate
    return lat


def broker_scenario(kind, a, out_dir, tag, flush=None):
    b = Broker(kind, a, out_dir, tag, flush)
    b.start()
    sampler = Sampler(b.proc.pid)
    bs = b.bootstrap
    r = {"bootstrap": bs, "shards": b.shards}
    try:
        n = a.records
        # -------- latency first, on the fresh broker: open-loop producer + tail consumer
        for rate in a.lat_rates:
            lat = latency_phase(a, bs, f"lat{int(rate)}", rate)
            prod = lat["producer"]
            charge(prod, sampler)
            r[f"latency_{int(rate)}"] = lat
            log(f"      latency {int(rate):>5}/s p50 {fmt(lat, 'p50_ms', 2)} p99 {fmt(lat, 'p99_ms', 2)} "
                f"p99.9 {fmt(lat, 'p999_ms', 2)} max {fmt(lat, 'max_ms', 2)} ms (acks p50 {fmt(prod, 'ack_p50_ms', 2)} "
                f"p99 {fmt(prod, 'ack_p99_ms', 2)}); got {lat.get('received')}/{int(rate * a.lat_seconds)}, "
                f"send lag max {fmt(prod, 'max_send_lag_ms', 2)} ms, broker {fmt(prod, 'broker_cpu_pct', 0)}%"
                f"{err_of(lat)}{err_of(prod)}")
            # No machine-wide % here: with tens of thousands of short sleeps a
            # second, /proc/stat's per-CPU ticks add up to more than the wall
            # time (230-286 ticks/s on 2 CPUs seen), so it is meaningless.
        # -------- produce, one producer
        res, rc = client(["create", "--bootstrap", bs, "--topic", "s1", "--partitions", str(a.partitions)], 60)
        if rc:
            raise RuntimeError(f"create s1: {res}")
        res, rc = client(["produce", "--bootstrap", bs, "--topic", "s1", "--records", str(n), "--size", str(a.size)])
        res = charge(res, sampler)
        res["mib_s"] = res["bytes"] / MIB / res["seconds"] if res.get("seconds") else None
        r["produce"] = res
        log(f"      produce   {fmt(res, 'mib_s')} MiB/s {fmt(res, 'rec_s', 0)} rec/s  broker {fmt(res, 'broker_cpu_pct', 0)}% "
            f"client {fmt(res, 'client_cpu_pct', 0)}% machine {fmt(res, 'machine_busy_pct', 0)}%/{100 * os.cpu_count()}% "
            f"max ack gap {fmt(res, 'max_ack_gap_ms')} ms{err_of(res)}")
        # -------- consume, one consumer, the same records
        res, rc = client(["consume", "--bootstrap", bs, "--topic", "s1", "--records", str(n)])
        res = charge(res, sampler)
        res["mib_s"] = res["bytes"] / MIB / res["seconds"] if res.get("seconds") else None
        r["consume"] = res
        log(f"      consume   {fmt(res, 'mib_s')} MiB/s {fmt(res, 'rec_s', 0)} rec/s  broker {fmt(res, 'broker_cpu_pct', 0)}% "
            f"client {fmt(res, 'client_cpu_pct', 0)}% machine {fmt(res, 'machine_busy_pct', 0)}%{err_of(res)}")
        # -------- produce, two producer processes in parallel
        res, rc = client(["create", "--bootstrap", bs, "--topic", "s1x2", "--partitions", str(a.partitions)], 60)
        if rc:
            raise RuntimeError(f"create s1x2: {res}")
        procs = start_clients([["produce", "--bootstrap", bs, "--topic", "s1x2", "--records", str(n // 2),
                                "--size", str(a.size)] for _ in range(2)])
        parts = finish_clients(procs)
        res = {"parts": parts}
        if all("start" in p for p in parts):
            res.update({
                "start": min(p["start"] for p in parts), "end": max(p["end"] for p in parts),
                "bytes": sum(p["bytes"] for p in parts), "records": sum(p["records"] for p in parts),
                "client_cpu_s": sum(p["client_cpu_s"] for p in parts),
                "errors": sum(p.get("errors", 0) for p in parts),
                "max_ack_gap_ms": max(p.get("max_ack_gap_ms", 0) for p in parts),
            })
            res["seconds"] = res["end"] - res["start"]
            res["mib_s"] = res["bytes"] / MIB / res["seconds"]
            res["rec_s"] = res["records"] / res["seconds"]
            charge(res, sampler)
        else:
            res["error"] = "; ".join(str(p.get("error")) for p in parts)
        r["produce_x2"] = res
        log(f"      produce×2 {fmt(res, 'mib_s')} MiB/s {fmt(res, 'rec_s', 0)} rec/s  broker {fmt(res, 'broker_cpu_pct', 0)}% "
            f"clients {fmt(res, 'client_cpu_pct', 0)}% machine {fmt(res, 'machine_busy_pct', 0)}%{err_of(res)}")
        r["alive_at_end"] = b.alive()
    finally:
        sampler.close()
        r["stop"] = b.stop()
        if r["stop"]["bad_log_lines"] or r["stop"]["crashed_before_stop"] or r["stop"]["exit"] not in (0, -15):
            log(f"      broker stop: {r['stop']}")
    return r


def fmt(d, k, nd=1):
    v = d.get(k)
    return "-" if v is None else f"{v:.{nd}f}"


def err_of(d):
    e = d.get("error") or d.get("first_error")
    if not e and d.get("errors"):
        e = f"{d['errors']} errors"
    return f" ERROR: {e}" if e else ""


# ------------------------------------------------------------------ summary

def get(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def med(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return statistics.median(xs), min(xs), max(xs), len(xs)


def show(m, nd=1):
    """nd decimals; nd=3 means 3 significant digits (ratios)."""
    if m is None:
        return "-"
    v, lo, hi, n = m
    f = (lambda x: f"{x:.3g}") if nd == 3 else (lambda x: f"{x:.{nd}f}")
    return f"{f(v)} [{f(lo)}–{f(hi)}]" + (f" (n={n})" if n != N_ROUNDS else "")


N_ROUNDS = 0


def summarize(rounds, scenarios, rates):
    lines = []
    add = lines.append
    add(f"## medians [min–max] over {len(rounds)} interleaved rounds")
    for key, label in (("iperf3", "iperf3 loopback TCP, 1 stream, 5 s"), ("fio_nosync", "fio write 1M qd4 O_DIRECT"),
                       ("fio_fdatasync16", "fio write 1M qd4 O_DIRECT --fdatasync=16")):
        add(f"{label:58s} {show(med([get(r, key, 'mib_s') for r in rounds]))} MiB/s")
    for sc in scenarios:
        rs = [r.get(sc) or {} for r in rounds]
        add(f"-- {sc}")
        for ph, label in (("produce", "produce 1 client "), ("produce_x2", "produce 2 clients"),
                          ("consume", "consume 1 client ")):
            add(f"   {label}  MiB/s {show(med([get(x, ph, 'mib_s') for x in rs]))}   "
                f"krec/s {show(med([(get(x, ph, 'rec_s') or 0) / 1e3 or None for x in rs]))}")
            add(f"                      broker CPU % {show(med([get(x, ph, 'broker_cpu_pct') for x in rs]), 0)}  "
                f"client CPU % {show(med([get(x, ph, 'client_cpu_pct') for x in rs]), 0)}  "
                f"machine busy % {show(med([get(x, ph, 'machine_busy_pct') for x in rs]), 0)}  "
                f"other % {show(med([get(x, ph, 'other_cpu_pct') for x in rs]), 0)}  "
                f"broker CPU-s/GiB {show(med([cpu_per_gib(get(x, ph)) for x in rs]), 2)}")
        add(f"   produce max ack gap ms {show(med([get(x, 'produce', 'max_ack_gap_ms') for x in rs]))}")
        add(f"   produce+consume    broker CPU-s/GiB {show(med([both_per_gib(x) for x in rs]), 2)}")
        for rate in rates:
            k = f"latency_{int(rate)}"
            add(f"   latency {int(rate)}/s ms  p50 {show(med([get(x, k, 'p50_ms') for x in rs]), 2)}  "
                f"p99 {show(med([get(x, k, 'p99_ms') for x in rs]), 2)}  "
                f"p99.9 {show(med([get(x, k, 'p999_ms') for x in rs]), 2)}  "
                f"max {show(med([get(x, k, 'max_ms') for x in rs]), 2)}")
            add(f"        acks ms  p50 {show(med([get(x, k, 'producer', 'ack_p50_ms') for x in rs]), 2)}  "
                f"p99 {show(med([get(x, k, 'producer', 'ack_p99_ms') for x in rs]), 2)}  "
                f"broker CPU % {show(med([get(x, k, 'producer', 'broker_cpu_pct') for x in rs]), 0)}  "
                f"client CPU % {show(med([get(x, k, 'producer', 'client_cpu_pct') for x in rs]), 0)}")
    add("")
    add("## ratios (median of the per-round ratios [min–max])")

    def ratio(label, num, den):
        vals = []
        for r in rounds:
            a, b = num(r), den(r)
            if a and b:
                vals.append(a / b)
        add(f"{label:72s} {show(med(vals), 3)}")

    for sc in scenarios:
        if not sc.startswith("ringstream"):
            continue
        ratio(f"{sc} produce / iperf3 loopback", lambda r: get(r, sc, 'produce', 'mib_s'),
              lambda r: get(r, 'iperf3', 'mib_s'))
        ratio(f"{sc} produce×2 / iperf3 loopback", lambda r: get(r, sc, 'produce_x2', 'mib_s'),
              lambda r: get(r, 'iperf3', 'mib_s'))
        ratio(f"{sc} produce / fio write --fdatasync=16", lambda r: get(r, sc, 'produce', 'mib_s'),
              lambda r: get(r, 'fio_fdatasync16', 'mib_s'))
        ratio(f"{sc} produce / fio write (no sync)", lambda r: get(r, sc, 'produce', 'mib_s'),
              lambda r: get(r, 'fio_nosync', 'mib_s'))
        ratio(f"{sc} consume / iperf3 loopback", lambda r: get(r, sc, 'consume', 'mib_s'),
              lambda r: get(r, 'iperf3', 'mib_s'))
        if "tansu" in scenarios:
            for what in ("produce", "produce_x2", "consume"):
                ratio(f"{sc} {what} / tansu", lambda r, w=what: get(r, sc, w, 'mib_s'),
                      lambda r, w=what: get(r, 'tansu', w, 'mib_s'))
            for rate in rates:
                k = f"latency_{int(rate)}"
                for what in ("p50_ms", "p99_ms", "p999_ms"):
                    ratio(f"{sc} latency {int(rate)}/s {what} / tansu (lower is better)",
                          lambda r, w=what, k=k: get(r, sc, k, w), lambda r, w=what, k=k: get(r, 'tansu', k, w))
            ratio(f"{sc} broker CPU-s/GiB produce+consume / tansu (lower is better)",
                  lambda r: both_per_gib(r.get(sc) or {}), lambda r: both_per_gib(r.get('tansu') or {}))
    return "\n".join(lines)


def cpu_per_gib(x):
    if not x or not x.get("bytes") or x.get("broker_cpu_s") is None:
        return None
    return x["broker_cpu_s"] / (x["bytes"] / 2 ** 30)


def both_per_gib(x):
    p, c = x.get("produce"), x.get("consume")
    if not p or not c or not p.get("bytes") or not c.get("bytes"):
        return None
    return (p["broker_cpu_s"] + c["broker_cpu_s"]) / ((p["bytes"] + c["bytes"]) / 2 ** 30)


def main():
    global N_ROUNDS
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--records", type=int, default=300000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--lat-rates", type=float, nargs="+", default=[1000, 5000])
    ap.add_argument("--lat-seconds", type=float, default=8)
    ap.add_argument("--ringstream", required=True)
    ap.add_argument("--tansu", default="")
    ap.add_argument("--bench-dir", default="/var/tmp")
    ap.add_argument("--fio-size", default="1G")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    N_ROUNDS = a.rounds
    os.makedirs(a.out, exist_ok=True)

    brokers = [("ringstream", "ringstream", None), ("ringstream_interval50", "ringstream", "interval_ms=50")]
    if a.tansu:
        # ours, peer, ours: the peer sits between our two configurations.
        brokers.insert(1, ("tansu", "tansu", None))
    scenarios = [b[0] for b in brokers]
    rounds = []
    t_start = time.time()
    for i in range(a.rounds):
        log(f"== round {i + 1}/{a.rounds} (t={time.time() - t_start:.0f} s)")
        r = {}
        r["iperf3"] = iperf3(a.out, f"r{i}")
        log(f"    iperf3 loopback        {fmt(r['iperf3'], 'mib_s')} MiB/s")
        r["fio_nosync"] = fio(a.out, f"r{i}-nosync", a.bench_dir, a.fio_size, [])
        log(f"    fio write 1M           {fmt(r['fio_nosync'], 'mib_s')} MiB/s")
        r["fio_fdatasync16"] = fio(a.out, f"r{i}-fdatasync16", a.bench_dir, a.fio_size, ["--fdatasync=16"])
        log(f"    fio write 1M fdsync16  {fmt(r['fio_fdatasync16'], 'mib_s')} MiB/s")
        # Rotate the broker order each round so no broker always goes first.
        order = brokers[i % len(brokers):] + brokers[:i % len(brokers)]
        for name, kind, flush in order:
            log(f"  -- {name}")
            try:
                r[name] = broker_scenario(kind, a, a.out, f"{name}-r{i}", flush)
            except Exception as e:  # keep going; the failure is reported
                log(f"      FAILED: {e!r}")
                r[name] = {"error": repr(e)}
        rounds.append(r)
        with open(os.path.join(a.out, "rounds.json"), "w") as f:
            json.dump(rounds, f, indent=1)
    log(f"== done in {time.time() - t_start:.0f} s")
    s = summarize(rounds, scenarios, a.lat_rates)
    with open(os.path.join(a.out, "summary.txt"), "w") as f:
        f.write(s + "\n")
    log("")
    log(s)


if __name__ == "__main__":
    main()
