#!/usr/bin/env python3
"""Generates tether's Grafana dashboard, charts/tether/files/dashboard.json.

Built with Grafana's own typed builder (PyPI grafana-foundation-sdk, pinned in
scripts/requirements.txt), not hand-written JSON. The chart ships the output as a ConfigMap
for the Grafana sidecar (grafanaDashboard.enabled); scripts/render_dashboard.py plots the
same queries from a real Prometheus for the README picture.

    pip install -r scripts/requirements.txt
    python3 scripts/dashboard.py            # rewrite the JSON
    python3 scripts/dashboard.py --check    # exit 1 if the committed JSON is stale

`cargo test --test observability` checks that every expression in the JSON parses
(promtool) and names only metrics tether exports (a live scrape).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as pb
from grafana_foundation_sdk.builders import stat as statb
from grafana_foundation_sdk.builders import timeseries as tsb
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "charts" / "tether" / "files" / "dashboard.json"

DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'job=~"$job"'
RATE = "$__rate_interval"


def q(expr: str, legend: str, ref: str) -> pb.Dataquery:
    return pb.Dataquery().expr(expr).legend_format(legend).ref_id(ref).range()


def series(title: str, description: str, unit: str, queries: list[tuple[str, str]], w: int = 12) -> tsb.Panel:
    p = (
        tsb.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .height(8)
        .span(w)
        .fill_opacity(10)
        .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST).placement(cm.LegendPlacement.BOTTOM).show_legend(True))
    )
    for i, (expr, legend) in enumerate(queries):
        p = p.with_target(q(expr, legend, chr(ord("A") + i)))
    return p


def quantile(qv: str, metric: str, by: str, extra: str = "") -> str:
    sel = f"{SEL},{extra}" if extra else SEL
    return f"histogram_quantile({qv}, sum by ({by}le) (rate({metric}_bucket{{{sel}}}[{RATE}])))"


def build() -> dict:
    dash = (
        db.Dashboard("tether")
        .uid("tether-overview")
        .description("tether admission webhook and controller: decisions, latency, access reviews, transport, TLS, leader election, process.")
        .tags(["tether", "kubernetes", "admission"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            db.QueryVariable("job")
            .label("Job")
            .datasource(DS)
            .query("label_values(tether_build_info, job)")
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .include_all(True)
            .all_value(".*")
            .multi(True)
        )
        .with_variable(
            db.ConstantVariable("timeout")
            .label("Webhook timeoutSeconds")
            .description("The webhook configurations' timeoutSeconds (chart value timeoutSeconds).")
            .value("10")
        )
    )

    dash = dash.with_row(db.Row("Admission"))
    dash = dash.with_panel(series(
        "Decisions per second", "Answered AdmissionReviews by webhook and decision (error: tether could not decide and denied with code 500).",
        "reqps",
        [(f"sum by (webhook, decision) (rate(tether_admission_requests_total{{{SEL}}}[{RATE}]))", "{{webhook}} {{decision}}")],
    ))
    dash = dash.with_panel(series(
        "Deny reasons", "Denials and errors per second by reason.", "reqps",
        [(f'sum by (reason) (rate(tether_admission_requests_total{{{SEL},decision!="allowed"}}[{RATE}]))', "{{reason}}")],
    ))
    dash = dash.with_panel(series(
        "Admission latency", "p50, p99 and p99.9 of the time from a parsed review to its answer, against the API server's timeout.", "s",
        [
            (quantile("0.5", "tether_admission_duration_seconds", ""), "p50"),
            (quantile("0.99", "tether_admission_duration_seconds", ""), "p99"),
            (quantile("0.999", "tether_admission_duration_seconds", ""), "p99.9"),
            ("vector($timeout)", "API server timeout"),
        ],
    ))
    dash = dash.with_panel(series(
        "Access review latency", "p50 and p99 of access reviews as tether's handlers wait for them, by cache outcome.", "s",
        [
            (quantile("0.5", "tether_access_review_duration_seconds", "cache, "), "p50 {{cache}}"),
            (quantile("0.99", "tether_access_review_duration_seconds", "cache, "), "p99 {{cache}}"),
        ],
        w=8,
    ))
    dash = dash.with_panel(series(
        "Access review cache hit ratio", "Share of access reviews answered from the cache (or shared with an identical one in flight).", "percentunit",
        [(
            # `or vector(0)`: no hit yet is a ratio of 0, not "no data".
            f'(sum(rate(tether_access_reviews_total{{{SEL},cache=~"hit|shared"}}[{RATE}])) or vector(0))'
            f" / sum(rate(tether_access_reviews_total{{{SEL}}}[{RATE}]))",
            "hit ratio",
        )],
        w=8,
    ))
    dash = dash.with_panel(series(
        "Access review results", "Access reviews per second by identity and result; errors deny with code 500.", "reqps",
        [(f"sum by (identity, result) (rate(tether_access_reviews_total{{{SEL}}}[{RATE}]))", "{{identity}} {{result}}")],
        w=8,
    ))

    dash = dash.with_row(db.Row("Transport and TLS"))
    dash = dash.with_panel(series(
        "Transport rejections", "Requests refused before a decision, by reason (404, 405, 415, 413, bad JSON, timeouts, budgets, malformed HTTP).", "reqps",
        [
            (f"sum by (listener, reason) (rate(tether_transport_rejections_total{{{SEL}}}[{RATE}]))", "{{listener}} {{reason}}"),
            (f"sum by (reason) (rate(tether_requests_rejected_total{{{SEL}}}[{RATE}]))", "budget {{reason}}"),
        ],
        w=8,
    ))
    dash = dash.with_panel(series(
        "TLS handshake failures", "Failed handshakes on the admission port; peer_rejected_certificate is typically a wrong caBundle.", "ops",
        [(f"sum by (reason) (rate(tether_tls_handshake_failures_total{{{SEL}}}[{RATE}]))", "{{reason}}")],
        w=8,
    ))
    dash = dash.with_panel(
        statb.Panel()
        .title("TLS certificate expiry")
        .description("Time left on the serving certificate that expires first.")
        .datasource(DS)
        .unit("s")
        .height(8)
        .span(8)
        .with_target(q(f"min(tether_tls_certificate_expiry_timestamp_seconds{{{SEL}}}) - time()", "expires in", "A"))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .thresholds(
            db.ThresholdsConfig()
            .mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([
                dm.Threshold(value=None, color="red"),
                dm.Threshold(value=7 * 86400, color="orange"),
                dm.Threshold(value=30 * 86400, color="green"),
            ])
        )
    )

    dash = dash.with_row(db.Row("Controller"))
    dash = dash.with_panel(series(
        "Leader and reconcile errors", "Whether a replica holds the Lease, reconcile errors per second, objects waiting for a retry, leader changes.", "short",
        [
            (f"max(tether_leader{{{SEL}}})", "leader held"),
            (f'sum by (controller) (rate(tether_reconcile_total{{{SEL},result="error"}}[{RATE}]))', "errors/s {{controller}}"),
            (f"sum by (controller) (tether_reconcile_queue_depth{{{SEL}}})", "waiting for retry {{controller}}"),
            (f"sum(increase(tether_leader_transitions_total{{{SEL}}}[{RATE}]))", "leader changes"),
        ],
    ))
    dash = dash.with_panel(series(
        "Discovery calls", "API discovery calls per second by result.", "reqps",
        [(f"sum by (result) (rate(tether_discovery_requests_total{{{SEL}}}[{RATE}]))", "{{result}}")],
    ))

    dash = dash.with_row(db.Row("Process"))
    dash = dash.with_panel(series(
        "Memory (RSS)", "Resident memory per replica.", "bytes",
        [(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")],
        w=8,
    ))
    dash = dash.with_panel(series(
        "Connections and in-flight requests", "Open connections against each listener's cap, and admission requests in flight.", "short",
        [
            (f"sum by (listener) (tether_connections_open{{{SEL}}})", "open {{listener}}"),
            (f"max by (listener) (tether_connections_max{{{SEL}}})", "cap {{listener}}"),
            (f"sum(tether_requests_in_flight{{{SEL}}})", "requests in flight"),
        ],
        w=8,
    ))
    dash = dash.with_panel(series(
        "CPU and file descriptors", "CPU cores used and open file descriptors per replica.", "short",
        [
            (f"rate(process_cpu_seconds_total{{{SEL}}}[{RATE}])", "cpu {{instance}}"),
            (f"process_open_fds{{{SEL}}}", "fds {{instance}}"),
        ],
        w=8,
    ))
    return json.loads(json.dumps(dash.build(), cls=JSONEncoder))


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run python3 scripts/dashboard.py", file=sys.stderr)
            return 1
        print(f"{OUT.relative_to(ROOT)} is up to date")
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
