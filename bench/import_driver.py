#!/usr/bin/env python3
"""Client side of bench/import.sh (Python 3 standard library only).

  latency    N rounds, sequential; each round, interleaved so load bursts hit all alike:
               put-file       create an image, time PUT /v2/images/{id}/file (synchronous upload);
               glance-direct  create, PUT .../stage (timed apart), then time POST .../import -> 202
                              -> polling GET /v2/images/{id} until `active`;
               web-download   create, then the same from POST .../import with the file's URL.
             With --log FILE (the API's and the worker's logs) every import's time is also
             split at the API's "import accepted" and the worker's "import succeeded" lines.
  throughput create COUNT images, submit COUNT web-download imports at once (one thread and
             connection each), poll the listing until all are `active`; sizes and checksums
             are checked. With --watch NAME=PID the CPU time of those processes is reported.
  report     the markdown summary of every result file in a directory.

Results are JSON files; progress goes to stderr.
"""

import argparse
import concurrent.futures
import datetime
import hashlib
import http.client
import json
import math
import os
import re
import sys
import threading
import time
import urllib.parse


def log(msg):
    print(f"[driver {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


class Client:
    """One keep-alive HTTP/1.1 connection to the API."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port or 80
        self.conn = None

    def request(self, method, path, body=None, headers=None, expect=(200,)):
        headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle keep-alive connection: reconnect once.
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        if resp.status not in expect:
            raise BenchError(f"{method} {path} -> {resp.status}: {data[:500]!r}")
        if data and resp.getheader("Content-Type", "").startswith("application/json"):
            return json.loads(data)
        return None

    def create_image(self, name, tags=()):
        body = {"name": name, "disk_format": "raw", "container_format": "bare", "tags": list(tags)}
        return self.request("POST", "/v2/images", body, expect=(201,))["id"]

    def image(self, image_id):
        return self.request("GET", f"/v2/images/{image_id}")

    def task_messages(self, image_id):
        try:
            tasks = self.request("GET", f"/v2/images/{image_id}/tasks").get("tasks", [])
            return "; ".join(f"task {t.get('id')} {t.get('status')}: {t.get('message')}" for t in tasks)
        except BenchError as e:
            return str(e)


def failed(image):
    """A reason if this image's import has visibly failed."""
    if image.get("os_glance_failed_import"):
        return f"os_glance_failed_import={image['os_glance_failed_import']!r}"
    if image.get("status") in ("killed", "deleted", "pending_delete"):
        return f"status {image['status']}"
    return None


def wait_active(client, image_id, poll_s, timeout_s, size):
    deadline = time.monotonic() + timeout_s
    polls = 0
    while True:
        image = client.image(image_id)
        now = time.time()
        polls += 1
        if image["status"] == "active":
            if image.get("size") != size:
                raise BenchError(f"image {image_id} is active with size {image.get('size')}, want {size}")
            return now, polls, image
        if image["status"] != "importing" or failed(image):
            # The API made it `importing` before its 202; a failed import puts it back.
            raise BenchError(f"import of {image_id} failed ({failed(image) or 'status ' + image['status']}): {client.task_messages(image_id)}")
        if time.monotonic() > deadline:
            raise BenchError(f"image {image_id} still {image['status']} after {timeout_s} s: {client.task_messages(image_id)}")
        time.sleep(poll_s)


# ----------------------------------------------------------------------------- logs ------

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The target may come after spans whose fields hold spaces (`request{method=POST uri=...}:`).
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)\s+\w+\s+.*?\S+:\s+(import accepted|import succeeded)\b(.*)$")
IMAGE_FIELD = re.compile(r"\bimage=([0-9a-fA-F-]{36})")


def log_events(paths):
    """{image_id: {"accepted": epoch, "succeeded": epoch}} from Glint's tracing output."""
    events = {}
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = LOG_LINE.match(ANSI.sub("", line.strip()))
                if not m:
                    continue
                img = IMAGE_FIELD.search(m.group(3))
                if not img:
                    continue
                ts = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
                kind = "accepted" if m.group(2) == "import accepted" else "succeeded"
                events.setdefault(img.group(1), {}).setdefault(kind, ts)
    return events


# ----------------------------------------------------------------------------- latency ---

def cmd_latency(a):
    with open(a.file, "rb") as f:
        data = f.read()
    size = len(data)
    client = Client(a.base)
    poll_s = a.poll_ms / 1000.0
    methods = [m for m in a.methods.split(",") if m]
    samples = {m: [] for m in methods}
    octet = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}

    def one(method, i):
        image_id = client.create_image(f"latency-{method}-{i}")
        if method == "put-file":
            t0 = time.perf_counter()
            client.request("PUT", f"/v2/images/{image_id}/file", data, octet, expect=(204,))
            return {"image": image_id, "total_ms": (time.perf_counter() - t0) * 1e3}
        rec = {"image": image_id}
        if method == "glance-direct":
            t0 = time.perf_counter()
            client.request("PUT", f"/v2/images/{image_id}/stage", data, octet, expect=(204,))
            rec["stage_ms"] = (time.perf_counter() - t0) * 1e3
            body = {"method": {"name": "glance-direct"}}
        else:
            body = {"method": {"name": "web-download", "uri": a.web_url}}
        rec["post_at"] = time.time()
        t0 = time.perf_counter()
        client.request("POST", f"/v2/images/{image_id}/import", body, expect=(202,))
        rec["accepted_ms"] = (time.perf_counter() - t0) * 1e3
        active_at, polls, image = wait_active(client, image_id, poll_s, a.timeout, size)
        rec["total_ms"] = (time.perf_counter() - t0) * 1e3
        rec["active_at"] = active_at
        rec["polls"] = polls
        if image.get("checksum") != a.md5:
            raise BenchError(f"image {image_id} checksum {image.get('checksum')} != {a.md5}")
        return rec

    for m in methods:               # warm-up: connections, caches, first-use paths
        for i in range(a.warmup):
            one(m, f"warm{i}")
    started = time.time()
    sys0 = system_busy()
    for i in range(a.n):
        for m in methods:
            samples[m].append(one(m, i))
        if (i + 1) % 50 == 0:
            log(f"[{a.label}] {i + 1}/{a.n} rounds")
    elapsed = time.time() - started
    sys1 = system_busy()

    # Where the time went, from the processes' own timestamps (same clock as ours).
    if a.log:
        events = log_events(a.log)
        for m in methods:
            for rec in samples[m]:
                ev = events.get(rec["image"], {})
                if "accepted" in ev and "succeeded" in ev and "post_at" in rec:
                    rec["to_accepted_log_ms"] = (ev["accepted"] - rec["post_at"]) * 1e3
                    rec["worker_ms"] = (ev["succeeded"] - ev["accepted"]) * 1e3
                    rec["poll_lag_ms"] = (rec["active_at"] - ev["succeeded"]) * 1e3
    out = {"kind": "latency", "label": a.label, "n": a.n, "size": size, "poll_ms": a.poll_ms,
           "seconds": elapsed, "loadavg": open("/proc/loadavg").read().split()[:3],
           "system_cores_busy": (sys1[0] - sys0[0]) / max(sys1[1] - sys0[1], 1) * os.cpu_count(),
           "compilers": compilers(), "samples": samples}
    with open(a.out, "w") as f:
        json.dump(out, f)
    for m in methods:
        log(f"[{a.label}] {m}: {describe([r['total_ms'] for r in samples[m]])}")


# ----------------------------------------------------------------------------- throughput

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid):
    """utime + stime of PID and of its live children (nginx's workers)."""
    total = 0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            fields = _stat(p)
        except OSError:
            continue
        if int(p) == pid or int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def system_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]            # idle + iowait
    return sum(v) - idle, sum(v), v[4]


def compilers():
    """How many rustc/cc1 processes (other people's builds) run right now."""
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    n += f.read().strip() in ("rustc", "cc1", "cc1plus", "ld", "cargo")
            except OSError:
                pass
    return n


def cmd_throughput(a):
    size = os.path.getsize(a.file)
    client = Client(a.base)
    tag = f"bench-throughput-{os.getpid()}"
    ids = [client.create_image(f"{tag}-{i}", tags=[tag]) for i in range(a.count)]
    watch = {}
    for w in a.watch or []:
        name, pid = w.split("=", 1)
        watch[name] = int(pid)
    cpu0 = {n: cpu_seconds(p) for n, p in watch.items()}
    sys0 = system_busy()

    local = threading.local()

    def submit(image_id):
        if not hasattr(local, "client"):
            local.client = Client(a.base)
        local.client.request("POST", f"/v2/images/{image_id}/import",
                             {"method": {"name": "web-download", "uri": a.web_url}}, expect=(202,))
        return time.time()

    log(f"[{a.label}] submitting {a.count} web-download imports of {size} bytes at once")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=a.count)
    # Open every connection first, so "at once" is not a TCP handshake race.
    list(pool.map(lambda _: setattr(local, "client", Client(a.base)) or local.client.request("GET", "/healthcheck", expect=(200,)),
                  range(a.count)))
    t0 = time.time()
    accepted = list(pool.map(submit, ids))
    pool.shutdown()
    t_submitted = max(accepted)
    done = {}
    deadline = time.monotonic() + a.timeout
    last_report = time.monotonic()
    while len(done) < len(ids):
        listing = client.request("GET", f"/v2/images?tag={urllib.parse.quote(tag)}&limit=1000")["images"]
        now = time.time()
        for image in listing:
            if image["id"] in done:
                continue
            if image["status"] == "active":
                if image.get("size") != size or image.get("checksum") != a.md5 or image.get("os_hash_value") != a.sha512:
                    raise BenchError(f"image {image['id']} active with size {image.get('size')} checksum {image.get('checksum')}")
                done[image["id"]] = now
            elif failed(image) or image["status"] != "importing":
                raise BenchError(f"import of {image['id']} failed ({failed(image) or 'status ' + image['status']}): {client.task_messages(image['id'])}")
        if time.monotonic() > deadline:
            raise BenchError(f"only {len(done)}/{len(ids)} active after {a.timeout} s")
        if time.monotonic() - last_report > 15:
            log(f"[{a.label}] {len(done)}/{len(ids)} active after {now - t0:.0f} s")
            last_report = time.monotonic()
        time.sleep(a.poll_ms / 1000.0)
    t_end = max(done.values())
    wall = t_end - t0
    sys1 = system_busy()
    cpu = {n: cpu_seconds(p) - cpu0[n] for n, p in watch.items()}
    finish = sorted(t - t0 for t in done.values())
    out = {"kind": "throughput", "label": a.label, "count": a.count, "size": size, "wall": wall,
           "submit_s": t_submitted - t0, "first_s": finish[0], "median_finish_s": finish[len(finish) // 2],
           "mbps": a.count * size / wall / 1e6, "cpu": cpu,
           "system_cores_busy": (sys1[0] - sys0[0]) / max(sys1[1] - sys0[1], 1) * os.cpu_count(),
           "iowait_share": (sys1[2] - sys0[2]) / max(sys1[1] - sys0[1], 1),
           "loadavg": open("/proc/loadavg").read().split()[:3], "compilers": compilers()}
    with open(a.out, "w") as f:
        json.dump(out, f)
    log(f"[{a.label}] {a.count} x {size} bytes in {wall:.1f} s = {out['mbps']:.1f} MB/s; CPU s: "
        + ", ".join(f"{n} {s:.1f}" for n, s in cpu.items()))


# ----------------------------------------------------------------------------- report ----

def pct(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    if not v:
        return float("nan")
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)]


def describe(values):
    return f"median {pct(values, 50):.1f} ms, p99 {pct(values, 99):.1f} ms, max {max(values):.1f} ms (n={len(values)})"


def fmt(x, nd=1):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def cmd_report(a):
    results = []
    for name in sorted(os.listdir(a.dir)):
        if name.endswith(".json"):
            with open(os.path.join(a.dir, name)) as f:
                results.append(json.load(f))
    lat = [r for r in results if r["kind"] == "latency"]
    tput = [r for r in results if r["kind"] == "throughput"]
    refs = [r for r in results if r["kind"] == "reference"]
    order = {label: i for i, label in enumerate(a.order.split(","))} if a.order else {}
    lat.sort(key=lambda r: order.get(r["label"], 99))
    tput.sort(key=lambda r: order.get(r["label"], 99))
    p = print
    if lat:
        n = lat[0]["n"]
        size = lat[0]["size"]
        p(f"### Import latency: POST /import -> `active`, {size // 1024} KiB raw image, {n} sequential imports per line"
          f" (poll every {lat[0]['poll_ms']} ms)")
        p()
        p("| setup | what | median ms | p90 ms | p99 ms | max ms | vs PUT /file median | cores busy (all) | load1 after | compiler procs after |")
        p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in lat:
            s = r["samples"]
            ref = pct([x["total_ms"] for x in s["put-file"]], 50) if "put-file" in s else None
            for m, what in (("put-file", "PUT /file (sync upload, reference)"),
                            ("glance-direct", "glance-direct: POST /import -> active"),
                            ("web-download", "web-download: POST /import -> active")):
                if m not in s:
                    continue
                v = [x["total_ms"] for x in s[m]]
                ratio = f"{pct(v, 50) / ref:.2f}" if ref else "-"
                p(f"| {r['label']} | {what} | {fmt(pct(v, 50))} | {fmt(pct(v, 90))} | {fmt(pct(v, 99))} | {fmt(max(v))} | {ratio} "
                  f"| {r['system_cores_busy']:.2f} | {r['loadavg'][0]} | {r['compilers']} |")
        p()
        p("Where an import's time goes (medians, ms; from the client's clock and the API's \"import accepted\" /"
          " the worker's \"import succeeded\" log timestamps):")
        p()
        p("| setup | method | POST -> 202 | POST -> accepted (log) | accepted -> succeeded (publish, claim, flow, commit) | succeeded -> seen active (poll lag) | polls/import | PUT /stage |")
        p("|---|---|---:|---:|---:|---:|---:|---:|")
        for r in lat:
            for m in ("glance-direct", "web-download"):
                recs = r["samples"].get(m, [])
                if not recs:
                    continue
                med = lambda k: pct([x[k] for x in recs if k in x], 50) if any(k in x for x in recs) else None
                p(f"| {r['label']} | {m} | {fmt(med('accepted_ms'))} | {fmt(med('to_accepted_log_ms'))} | {fmt(med('worker_ms'))} "
                  f"| {fmt(med('poll_lag_ms'))} | {fmt(med('polls'), 0)} | {fmt(med('stage_ms'))} |")
        p()
        for r in lat:
            for m in ("glance-direct", "web-download"):
                recs = r["samples"].get(m, [])
                w = [x["worker_ms"] for x in recs if "worker_ms" in x]
                if w:
                    worst = max(recs, key=lambda x: x["total_ms"])
                    parts = ", ".join(f"{k} {worst[k]:.1f}" for k in ("accepted_ms", "worker_ms", "poll_lag_ms") if k in worst)
                    p(f"- {r['label']} {m}: accepted -> succeeded p99 {pct(w, 99):.1f} ms, max {max(w):.1f} ms;"
                      f" slowest import {worst['total_ms']:.1f} ms ({parts}; image {worst['image']})")
        p()
    if tput:
        t = tput[0]
        p(f"### Import throughput: {t['count']} web-download imports of {t['size'] // (1 << 20)} MiB submitted at once"
          f" (nginx on loopback -> worker -> filesystem store, fsync)")
        p()
        p("| setup | wall s | MB/s | ratio to first line | first done s | median done s | CPU s by process | workers' CPU s per GB | cores busy (all) | iowait share | load1 after | compiler procs after |")
        p("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
        base = tput[0]["mbps"]
        for r in tput:
            cpu = ", ".join(f"{n} {s:.1f}" for n, s in r["cpu"].items())
            wcpu = sum(s for n, s in r["cpu"].items() if n.startswith("worker")) / (r["count"] * r["size"] / 1e9)
            p(f"| {r['label']} | {r['wall']:.1f} | {r['mbps']:.1f} | {r['mbps'] / base:.2f} | {r['first_s']:.1f} | {r['median_finish_s']:.1f} "
              f"| {cpu} | {wcpu:.2f} | {r['system_cores_busy']:.2f} | {r['iowait_share'] * 100:.0f}% | {r['loadavg'][0]} | {r['compilers']} |")
        p()
    if refs:
        p("References on the same bytes, same run:")
        p()
        p("| reference | wall s | MB/s | its CPU s | its CPU s per GB | cores busy (all) | iowait share |")
        p("|---|---:|---:|---:|---:|---:|---:|")
        for r in refs:
            p(f"| {r['label']} | {r['wall']:.1f} | {r['bytes'] / r['wall'] / 1e6:.1f} | {r['cpu']:.1f} | {r['cpu'] / (r['bytes'] / 1e9):.2f} "
              f"| {r['system_cores_busy']:.2f} | {r['iowait_share'] * 100:.0f}% |")
        p()


def cmd_reference(a):
    """Runs a shell command, timing it and the machine's CPU use, as a reference line."""
    import resource
    import subprocess
    s0 = system_busy()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    subprocess.run(["bash", "-c", a.command], check=True)
    wall = time.time() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    s1 = system_busy()
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    out = {"kind": "reference", "label": a.label, "wall": wall, "bytes": a.bytes, "cpu": cpu,
           "system_cores_busy": (s1[0] - s0[0]) / max(s1[1] - s0[1], 1) * os.cpu_count(),
           "iowait_share": (s1[2] - s0[2]) / max(s1[1] - s0[1], 1)}
    with open(a.out, "w") as f:
        json.dump(out, f)
    log(f"[{a.label}] {a.bytes} bytes in {wall:.1f} s = {a.bytes / wall / 1e6:.1f} MB/s")


def cmd_digest(a):
    md5, sha = hashlib.md5(), hashlib.sha512()
    with open(a.file, "rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
            sha.update(chunk)
    print(md5.hexdigest(), sha.hexdigest())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("latency")
    lp.add_argument("--base", required=True)
    lp.add_argument("--label", required=True)
    lp.add_argument("--file", required=True)
    lp.add_argument("--md5", required=True)
    lp.add_argument("--web-url", required=True)
    lp.add_argument("--n", type=int, default=200)
    lp.add_argument("--warmup", type=int, default=5)
    lp.add_argument("--poll-ms", type=float, default=5)
    lp.add_argument("--timeout", type=float, default=60)
    lp.add_argument("--methods", default="put-file,glance-direct,web-download")
    lp.add_argument("--log", action="append")
    lp.add_argument("--out", required=True)
    tp = sub.add_parser("throughput")
    tp.add_argument("--base", required=True)
    tp.add_argument("--label", required=True)
    tp.add_argument("--file", required=True)
    tp.add_argument("--md5", required=True)
    tp.add_argument("--sha512", required=True)
    tp.add_argument("--web-url", required=True)
    tp.add_argument("--count", type=int, default=50)
    tp.add_argument("--poll-ms", type=float, default=100)
    tp.add_argument("--timeout", type=float, default=900)
    tp.add_argument("--watch", action="append")
    tp.add_argument("--out", required=True)
    rp = sub.add_parser("report")
    rp.add_argument("--dir", required=True)
    rp.add_argument("--order", default="")
    xp = sub.add_parser("reference")
    xp.add_argument("--label", required=True)
    xp.add_argument("--bytes", type=int, required=True)
    xp.add_argument("--command", required=True)
    xp.add_argument("--out", required=True)
    dp = sub.add_parser("digest")
    dp.add_argument("file")
    a = ap.parse_args()
    try:
        {"latency": cmd_latency, "throughput": cmd_throughput, "report": cmd_report,
         "reference": cmd_reference, "digest": cmd_digest}[a.cmd](a)
    except BenchError as e:
        log(f"FAILED: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
