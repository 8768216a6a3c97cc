#!/usr/bin/env python3
"""Renders the README's dashboard picture (docs/dashboard.png) from real data.

Grafana is not available here, so this plots the same panels with the same PromQL
(charts/tether/files/dashboard.json) with matplotlib, over the HTTP API of a real Prometheus
that scraped a real tether under load. Everything runs on 127.0.0.1 and stops by itself:

  1. builds tether (debug by default, like the tests; --release for release numbers);
  2. starts `tether serve --standalone --rbac-file examples/rbac.yaml` on free ports;
  3. starts Prometheus (the binary of Debian's package `prometheus`) on a free
     loopback port with a temporary config and data directory, scraping tether every 2 s;
  4. sends a bounded load for --duration seconds (default 120): valid reviews from
     bench/fixtures at --rate requests/s from a few threads, plus a trickle of malformed
     requests (404, 405, 415, bad JSON) and TLS handshakes with an untrusted CA;
  5. queries every panel's expressions over the load window and draws them into a grid;
  6. stops Prometheus and tether and deletes the temporary directories.

    pip install -r scripts/requirements.txt
    python3 scripts/render_dashboard.py [--duration 120] [--rate 40] [--release] [--out docs/dashboard.png]

Not run in CI (it takes a few minutes and needs the prometheus binary).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "charts" / "tether" / "files" / "dashboard.json"
FIXTURES = ROOT / "bench" / "fixtures"
MIX = [
    ("/validate", "attached-create.json"),
    ("/mutate", "attached-create.json"),
    ("/mutate", "hpa-mutate.json"),
    ("/validate", "attached-invalid.json"),
]
RATE_WINDOW = "30s"  # what $__rate_interval becomes (4 scrapes at 2 s, plus margin)
JOB = "tether"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready within {limit} s")


def stop(proc: subprocess.Popen | None) -> None:
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Load:
    """Bounded load: stops at `until` (monotonic time) whatever happens."""

    def __init__(self, port: int, ca: Path, other_ca: Path, rate: float, until: float):
        self.port, self.rate, self.until = port, rate, until
        self.ctx = ssl.create_default_context(cafile=str(ca))
        self.bad_ctx = ssl.create_default_context(cafile=str(other_ca))
        self.bodies = [(p, (FIXTURES / f).read_bytes()) for p, f in MIX]
        self.sent = 0
        self.errors = 0
        self.lock = threading.Lock()

    def request(self, method: str, path: str, ctype: str | None, body: bytes) -> int:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
            with self.ctx.wrap_socket(raw, server_hostname="localhost") as s:
                head = f"{method} {path}?timeout=10s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                if ctype:
                    head += f"Content-Type: {ctype}\r\n"
                head += f"Content-Length: {len(body)}\r\n\r\n"
                s.sendall(head.encode() + body)
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0

    def untrusted_handshake(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
                with self.bad_ctx.wrap_socket(raw, server_hostname="localhost"):
                    pass
        except (ssl.SSLError, OSError):
            pass

    def worker(self, share: float, seed: int) -> None:
        rng = random.Random(seed)
        interval = 1.0 / share
        next_at = time.monotonic()
        while time.monotonic() < self.until:
            r = rng.random()
            try:
                if r < 0.01:
                    self.request("GET", "/wp-login.php", None, b"")
                elif r < 0.015:
                    self.request("GET", "/validate", None, b"")
                elif r < 0.02:
                    self.request("POST", "/validate", "text/plain", b"hello")
                elif r < 0.025:
                    self.request("POST", "/mutate", "application/json", b"{not json")
                elif r < 0.028:
                    self.untrusted_handshake()
                else:
                    path, body = rng.choice(self.bodies)
                    if self.request("POST", path, "application/json", body) != 200:
                        with self.lock:
                            self.errors += 1
            except OSError:
                with self.lock:
                    self.errors += 1
            with self.lock:
                self.sent += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def run(self, threads: int) -> None:
        ts = [threading.Thread(target=self.worker, args=(self.rate / threads, i), daemon=True)
              for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=max(0.0, self.until - time.monotonic()) + 30)


def prom_query_range(base: str, expr: str, start: float, end: float, step: float) -> list[dict]:
    qs = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{qs}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise SystemExit(f"query failed: {expr}: {body}")
    return body["data"]["result"]


def legend(fmt: str, labels: dict) -> str:
    out = fmt
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    while "{{" in out:
        a = out.index("{{")
        b = out.index("}}", a)
        out = out[:a] + out[b + 2:]
    return " ".join(out.split()) or "value"


def concrete(expr: str) -> str:
    return (expr.replace("$__rate_interval", RATE_WINDOW)
            .replace("$timeout", "10")
            .replace("$job", JOB))


UNIT_SCALE = {
    "s": (1.0, "s"), "bytes": (1 / (1024 * 1024), "MiB"), "reqps": (1.0, "req/s"),
    "ops": (1.0, "/s"), "percentunit": (100.0, "%"), "short": (1.0, ""),
}


def render(base: str, start: float, end: float, out: Path, subtitle: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from datetime import datetime

    dash = json.loads(DASHBOARD.read_text())
    panels = [p for p in dash["panels"] if p.get("type") != "row"]
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 6.2, rows * 3.1), squeeze=False)
    fig.suptitle(f"tether dashboard (charts/tether/files/dashboard.json) - {subtitle}",
                 fontsize=13, x=0.01, ha="left")
    step = 2.0
    for ax, panel in zip(axes.flat, panels):
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        scale, suffix = UNIT_SCALE.get(unit, (1.0, unit))
        ax.set_title(panel["title"], fontsize=10, loc="left")
        if panel["type"] == "stat":
            t = panel["targets"][0]
            res = prom_query_range(base, concrete(t["expr"]), end - 60, end, step)
            v = float(res[0]["values"][-1][1]) if res else float("nan")
            ax.axis("off")
            ax.text(0.5, 0.5, f"{v / 86400:.0f} days", fontsize=28, ha="center", va="center",
                    color="#2e7d32" if v > 30 * 86400 else "#c62828")
            ax.text(0.5, 0.18, legend(t.get("legendFormat", ""), {}), ha="center", fontsize=9)
            continue
        drawn = zero = 0
        for t in panel["targets"]:
            for series in prom_query_range(base, concrete(t["expr"]), start, end, step):
                xs = [datetime.fromtimestamp(float(ts)) for ts, _ in series["values"]]
                ys = [float(v) * scale for _, v in series["values"]]
                # Series that stay 0 (pre-created counters of events that did not happen)
                # would only crowd the legend.
                if all(y == 0 for y in ys):
                    zero += 1
                    continue
                style = "--" if "timeout" in t.get("legendFormat", "") or "cap" in t.get("legendFormat", "") else "-"
                ax.plot(xs, ys, style, linewidth=1.2, label=legend(t.get("legendFormat", ""), series["metric"]))
                drawn += 1
        if drawn == 0:
            what = f"{zero} series, all 0 over the run" if zero else "no data"
            ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", color="grey")
            ax.set_xticks([])
        ax.set_ylabel(suffix, fontsize=8)
        if unit == "s" and drawn:
            ax.set_yscale("log")
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=6.5, loc="upper left", ncol=2 if drawn > 4 else 1)
            if zero:
                ax.text(0.99, 0.02, f"+{zero} series at 0", transform=ax.transAxes,
                        ha="right", fontsize=6.5, color="grey")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    log(f"wrote {out}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of load (max 600)")
    ap.add_argument("--rate", type=float, default=40.0, help="valid reviews per second (max 500)")
    ap.add_argument("--release", action="store_true", help="build and run the release binary")
    ap.add_argument("--out", default=str(ROOT / "docs" / "dashboard.png"))
    args = ap.parse_args()
    duration = min(max(args.duration, 20.0), 600.0)
    rate = min(max(args.rate, 1.0), 500.0)
    # Installing Debian's package would also start a Prometheus service on port 9090; its
    # binary alone, unpacked next to promtool (scripts/fetch-promtool.sh), is enough.
    prometheus = shutil.which("prometheus") or str(ROOT / "target" / "tools" / "bin" / "prometheus")
    if not os.path.exists(prometheus):
        raise SystemExit(
            "needs the prometheus binary on PATH or in target/tools/bin: e.g.\n"
            "  apt-get download prometheus && dpkg-deb -x prometheus_*.deb /tmp/p && "
            "install -D /tmp/p/usr/bin/prometheus target/tools/bin/prometheus")

    profile = ["--release"] if args.release else []
    subprocess.run(["cargo", "build", "--locked", "--bin", "tether", *profile], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    tether = target / ("release" if args.release else "debug") / "tether"

    work = Path(tempfile.mkdtemp(prefix="tether-dashboard-"))
    tproc = pproc = None
    try:
        certs, other = work / "certs", work / "other"
        for d in (certs, other):
            subprocess.run([str(tether), "certs", "--out", str(d), "--dns", "localhost"],
                           check=True, capture_output=True)
        port, mport, pport = free_port(), free_port(), free_port()
        tlog = open(work / "tether.log", "w")
        tproc = subprocess.Popen(
            [str(tether), "serve", "--standalone", "--dev-certs-dir", str(certs),
             "--rbac-file", str(ROOT / "examples" / "rbac.yaml"),
             "--listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{mport}",
             "--domain-root", "apps.example.com", "--log-format", "json"],
            stdout=tlog, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn"})
        wait_http(f"http://127.0.0.1:{mport}/readyz", 30)

        (work / "prometheus.yml").write_text(
            "global: {scrape_interval: 2s, evaluation_interval: 2s}\n"
            f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{mport}']\n")
        plog = open(work / "prometheus.log", "w")
        pproc = subprocess.Popen(
            [prometheus, f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{pport}",
             "--storage.tsdb.retention.time=1h"],
            stdout=plog, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{pport}"
        wait_http(f"{base}/-/ready", 60)

        time.sleep(6)  # a few idle scrapes before the load starts
        start = time.time()
        log(f"load: {rate:.0f} reviews/s for {duration:.0f} s")
        load = Load(port, certs / "ca.crt", other / "ca.crt", rate, time.monotonic() + duration)
        load.run(threads=4)
        log(f"sent {load.sent} requests, {load.errors} valid reviews not answered 200")
        time.sleep(6)  # the last scrapes
        end = time.time()
        build = "release" if args.release else "debug"
        render(base, start - 5, end, Path(args.out),
               f"{duration:.0f} s at ~{rate:.0f} reviews/s, tether {build} build, standalone, Prometheus 2 s scrapes")
        return 0
    finally:
        stop(tproc)
        stop(pproc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
