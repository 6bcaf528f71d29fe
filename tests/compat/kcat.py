"""kcat (Debian's, librdkafka 2.0.2): `kcat -L` metadata (ApiVersions with
KIP-511 first), keyed produce with -K and headers with -H in every codec to
auto-created topics, consume with -e and -f, per-partition order, key ->
partition stability, the codec really stored, and -Q offsets for times."""

import json
import random
import subprocess

import common as c

KEYS = 150


def kcat(args, what, stdin=None, timeout=60):
    cmd = ["kcat", "-b", ARGS.bootstrap, "-m", "15"] + args
    try:
        out = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        c.fail(f"{what}: `{' '.join(cmd)}` still running after {timeout}s; stderr: "
               f"{(e.stderr or b'').decode(errors='replace')[-2000:]}")
    stderr = out.stderr.decode(errors="replace")
    if out.returncode != 0:
        c.fail(f"{what}: `{' '.join(cmd)}` exited {out.returncode}; stderr:\n{stderr[-3000:]}")
    return out.stdout, stderr


def metadata(topic=None):
    out, _ = kcat(["-L", "-J"] + (["-t", topic] if topic else []), "kcat -L")
    return json.loads(out)


def main():
    global ARGS
    ARGS = args = c.parse_args(__doc__, lambda p: p.add_argument("--per-codec", type=int, default=2_000))
    version = subprocess.run(["kcat", "-V"], capture_output=True, text=True).stdout
    c.log(" ".join(line for line in version.splitlines() if "Version" in line))
    host, port = args.bootstrap.rsplit(":", 1)
    md = metadata()
    brokers = [(b["id"], b["name"]) for b in md["brokers"]]
    c.check(brokers == [(0, f"{host}:{port}")], f"kcat -L brokers {brokers}")
    c.check(md.get("controllerid") == 0, f"kcat -L controller {md.get('controllerid')}")
    # The handshake: librdkafka 2.0.2 opens with ApiVersions v3 (KIP-511:
    # client name and version) and must get a v3 answer, not a fallback.
    _, debug = kcat(["-L", "-d", "protocol"], "kcat -L -d protocol")
    sent = [l for l in debug.splitlines() if "Sent ApiVersionRequest" in l]
    received = [l for l in debug.splitlines() if "Received ApiVersionResponse" in l]
    c.check(sent and "(v3," in sent[0], f"kcat did not open with ApiVersions v3: {sent[:1]}")
    c.check(received and "(v3," in received[0], f"no ApiVersions v3 response: {received[:1]}\n{debug[-2000:]}")
    c.check("ApiVersionRequest failed" not in debug, f"ApiVersions failed:\n{debug[-2000:]}")
    c.log(f"kcat -L: ApiVersions v3 handshake; broker 0 at {host}:{port}, controller 0, {len(md['topics'])} topics")
    placements = {}

    def case(codec):
        topic = f"kcat-{codec}"
        rng = random.Random(codec)
        lines = []
        for i in range(args.per_codec):
            key = f"key-{rng.randrange(KEYS):04d}"
            value = f"{i:06d}|" + " ".join(rng.choice(["alpha", "beta", "gamma", "ringstream"])
                                           for _ in range(rng.randrange(1, 40)))
            lines.append((key, value))
        stdin = "".join(f"{k}\t{v}\n" for k, v in lines).encode()
        _, stderr = kcat(["-P", "-t", topic, "-K", "\t", "-H", "trace=abc", "-H", f"codec={codec}",
                          "-X", f"compression.codec={codec}", "-X", "linger.ms=20"], f"kcat -P ({codec})", stdin)
        c.check("Delivery failed" not in stderr and "ERROR" not in stderr, f"kcat -P ({codec}): {stderr[-2000:]}")
        # Auto-created with the broker's num.partitions.
        md = metadata(topic)
        t = [x for x in md["topics"] if x["topic"] == topic]
        c.check(t and len(t[0]["partitions"]) == c.PARTITIONS, f"kcat -L -t {topic}: {t}")
        c.check(all(p["leader"] == 0 for p in t[0]["partitions"]), f"kcat -L -t {topic}: leaders {t}")
        c.check_spread(args.data_dir, topic)
        out, _ = kcat(["-C", "-t", topic, "-e", "-o", "beginning", "-f", "%p\\t%o\\t%T\\t%k\\t%s\\t%h\\n"],
                      f"kcat -C ({codec})")
        rows = [line.split("\t") for line in out.decode().splitlines() if line]
        c.check(len(rows) == len(lines), f"kcat -C ({codec}): read {len(rows)} records, produced {len(lines)}")
        by_partition = {}
        where = {}
        seen = set()
        for row in rows:
            c.check(len(row) == 6, f"kcat -C ({codec}): malformed line {row}")
            p, o, ts, key, value, headers = int(row[0]), int(row[1]), int(row[2]), row[3], row[4], row[5]
            i = int(value.split("|", 1)[0])
            c.check(0 <= i < len(lines) and lines[i] == (key, value),
                    f"kcat -C ({codec}): {p}/{o} holds {key!r}:{value!r}, produced {lines[i] if i < len(lines) else None}")
            c.check(headers == f"trace=abc,codec={codec}", f"kcat -C ({codec}): {p}/{o} headers {headers!r}")
            c.check(i not in seen, f"kcat -C ({codec}): record {i} read twice")
            seen.add(i)
            c.check(where.setdefault(key, p) == p, f"kcat ({codec}): key {key} in partitions {where[key]} and {p}")
            by_partition.setdefault(p, []).append((o, i, ts))
        for p, entries in by_partition.items():
            c.check([o for o, _, _ in entries] == list(range(len(entries))),
                    f"kcat -C ({codec}): partition {p} offsets not 0..{len(entries) - 1}")
            c.check([i for _, i, _ in entries] == sorted(i for _, i, _ in entries),
                    f"kcat -C ({codec}): partition {p} out of production order")
        placements[codec] = where
        stored = c.check_stored_codec(args.data_dir, topic, codec, f"kcat {codec}")
        queried = check_query(topic, by_partition, codec)
        c.log(f"{codec:>6}: produced {len(lines)} with -K/-H, read back exactly with -C -e -f, partitions "
              f"{[len(by_partition.get(p, [])) for p in range(c.PARTITIONS)]}, {len(where)} keys each in one "
              f"partition, {stored}, {queried} -Q lookups")

    def stability():
        first = placements.get("none")
        c.check(first, "no placement from the uncompressed case")
        for codec, placement in placements.items():
            c.check(placement == first, f"kcat: key -> partition differs between the none and {codec} runs")
        c.log(f"placement: identical across {len(placements)} kcat runs")

    c.run_cases(c.CODECS + ["placement"], lambda n: stability() if n == "placement" else case(n))
    c.log("kcat: all cases passed")


def check_query(topic, by_partition, codec):
    """kcat -Q -t topic:partition:timestamp against Kafka's answer, the
    earliest offset with a timestamp >= the one asked for. The timestamps
    were set by the producer (CreateTime), non-decreasing per partition."""
    targets = []
    for p, entries in sorted(by_partition.items()):
        stamps = [ts for _, _, ts in entries]
        if stamps != sorted(stamps):
            c.fail(f"kcat {topic}/{p}: producer timestamps decrease; cannot compute expected -Q answers")
        for ts in {stamps[0] - 1, stamps[len(stamps) // 2], stamps[-1], stamps[-1] + 1}:
            expected = next((o for o, _, t in entries if t >= ts), -1)
            targets.append((p, ts, expected))
    args = []
    for p, ts, _ in targets:
        args += ["-t", f"{topic}:{p}:{ts}"]
    failures = []
    for p, ts, expected in targets:
        out, _ = kcat(["-Q", "-J", "-t", f"{topic}:{p}:{ts}"], f"kcat -Q {topic}:{p}:{ts}")
        got = json.loads(out)[topic][str(p)]["offset"]
        if got != expected:
            failures.append(f"{topic}:{p}:{ts} -> {got}, expected {expected}")
    if failures:
        c.fail(f"kcat -Q ({codec}): {len(failures)} of {len(targets)} lookups differ: {failures[:6]}")
    return len(targets)


if __name__ == "__main__":
    c.run(main)
