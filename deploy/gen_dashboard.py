"""Writes helm/talentshare/dashboards/talentshare.json: the Grafana dashboard of the
services' Prometheus metrics (README.md "Observability").

The dashboard is kept as Python so its panels share one layout and one selector; the
generated JSON is what the chart ships (templates/monitoring/dashboard.yaml puts it in a
ConfigMap for Grafana's dashboard sidecar, with a uid, title and default namespace of the
release). `deploy/tests/test_observability.py` checks that the file is up to date, and
sends every expression in it to a real Prometheus scraping the real services. Refresh with

    .venv/bin/python deploy/gen_dashboard.py

No datasource is named: every panel uses the `datasource` template variable, and the
`namespace` and `job` variables (from talentshare_build_info, which only these services
export) scope every expression to one release.
"""
from __future__ import annotations

import json
import pathlib
import sys

TARGET = pathlib.Path(__file__).resolve().parent.parent / "helm" / "talentshare" / "dashboards" / "talentshare.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# This release's scrape targets: the ServiceMonitor sets namespace and job (= Service name).
SEL = 'namespace="$namespace",job=~"$job"'
# Application calls only: health checks (kubelet probes) and reflection would swamp them.
APP = SEL + ',grpc_service=~"talentshare[.].+"'
SERVER_FAULT = 'grpc_code=~"Internal|Unavailable|DeadlineExceeded|Unknown|DataLoss"'
RATE = "[$__rate_interval]"


class Layout:
    """Places panels left to right on Grafana's 24-column grid, row by row."""

    def __init__(self):
        self.panels: list[dict] = []
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"type": "row", "id": self._id(), "title": title, "collapsed": False, "panels": [], "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}})
        self.y += 1

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_height
        self.x = 0
        self.row_height = 0

    def add(self, panel: dict, w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)


def target(expr: str, legend: str = "", ref: str = "A", **extra) -> dict:
    return {"datasource": DATASOURCE, "refId": ref, "expr": expr, "legendFormat": legend or "__auto", "range": True, **extra}


def timeseries(title: str, description: str, targets: list[dict], unit: str = "short", stack: bool = False, step: bool = False) -> dict:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "custom": {
                    "drawStyle": "line",
                    "lineInterpolation": "stepAfter" if step else "linear",
                    "fillOpacity": 10,
                    "showPoints": "never",
                    "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                },
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}, "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def stat(title: str, description: str, expr: str, unit: str = "short", thresholds: list[tuple[str, float | None]] | None = None) -> dict:
    steps = [{"color": color, "value": value} for color, value in (thresholds or [("green", None)])]
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target(expr, ref="A", instant=True, range=False)],
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "background", "graphMode": "none", "textMode": "auto"},
    }


def quantile(q: float, metric: str, by: str, sel: str = SEL) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{sel}}}{RATE})))"


def panels() -> list[dict]:
    lay = Layout()

    lay.row("Overview")
    lay.add(stat("Ready pods", "Pods whose readiness is SERVING (service_ready), out of the pods scraped.", f"sum(service_ready{{{SEL}}})"), 3, 4)
    lay.add(stat("Calls/s", "Application calls answered per second (health checks and reflection excluded).", f"sum(rate(grpc_server_handled_total{{{APP}}}{RATE}))", "reqps"), 4, 4)
    lay.add(
        stat(
            "Server faults",
            "Share of application calls answered Internal, Unavailable, DeadlineExceeded, Unknown or DataLoss.",
            f"sum(rate(grpc_server_handled_total{{{APP},{SERVER_FAULT}}}{RATE})) / sum(rate(grpc_server_handled_total{{{APP}}}{RATE}))",
            "percentunit",
            [("green", None), ("orange", 0.01), ("red", 0.05)],
        ),
        3,
        4,
    )
    lay.add(
        stat(
            "Events waiting in queues",
            "Messages ready in the consumers' own queues (event_queue_messages): 0 while they keep up; the TalentshareConsumerStalled and TalentshareQueueBacklog alerts watch it.",
            f"sum(max by (queue) (event_queue_messages{{{SEL}}}))",
            thresholds=[("green", None), ("orange", 100), ("red", 1000)],
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Dead-lettered events",
            "Messages resting in the consumers' dead-letter queues (talentshare dlq list).",
            f"sum(max by (queue) (dead_letter_queue_messages{{{SEL}}}))",
            thresholds=[("green", None), ("red", 1)],
        ),
        3,
        4,
    )
    lay.add(
        stat(
            "Outbox backlog",
            "Events waiting in the services' outboxes.",
            f"sum(max by (job) (outbox_backlog_rows{{{SEL}}}))",
            thresholds=[("green", None), ("orange", 100), ("red", 1000)],
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Payment breakers not closed",
            "Pods whose payment client's circuit breaker is open or half-open (calls to payment-svc fail fast).",
            f'sum(payment_client_breaker_state{{{SEL},state!="closed"}})',
            thresholds=[("green", None), ("red", 1)],
        ),
        3,
        4,
    )

    lay.row("Requests, errors and latency")
    lay.add(timeseries("Calls/s by service", "Application calls answered per second.", [target(f"sum by (job) (rate(grpc_server_handled_total{{{APP}}}{RATE}))", "{{job}}")], "reqps"), 12, 8)
    lay.add(
        timeseries(
            "Calls/s by method",
            "Application calls answered per second, by method.",
            [target(f"sum by (job, grpc_method) (rate(grpc_server_handled_total{{{APP}}}{RATE}))", "{{job}} {{grpc_method}}")],
            "reqps",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Calls/s by code",
            "Answers by gRPC status code (OK, InvalidArgument, PermissionDenied, Unavailable, ...).",
            [target(f"sum by (job, grpc_code) (rate(grpc_server_handled_total{{{APP}}}{RATE}))", "{{job}} {{grpc_code}}")],
            "reqps",
            stack=True,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Server-fault ratio by service",
            "Share of application calls answered with a server-fault code; the TalentshareErrorRatioHigh alert watches this.",
            [target(f"sum by (job) (rate(grpc_server_handled_total{{{APP},{SERVER_FAULT}}}{RATE})) / sum by (job) (rate(grpc_server_handled_total{{{APP}}}{RATE}))", "{{job}}")],
            "percentunit",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Latency p50 and p99 by service",
            "Time from a call's arrival until its status was sent (grpc_server_handling_seconds).",
            [
                target(quantile(0.5, "grpc_server_handling_seconds", "job", APP), "p50 {{job}}"),
                target(quantile(0.99, "grpc_server_handling_seconds", "job", APP), "p99 {{job}}"),
            ],
            "s",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Latency p99 by method",
            "99th percentile of the handling time, by method.",
            [target(quantile(0.99, "grpc_server_handling_seconds", "job, grpc_method", APP), "{{job}} {{grpc_method}}")],
            "s",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Latency p50 by method",
            "Median handling time, by method.",
            [target(quantile(0.5, "grpc_server_handling_seconds", "job, grpc_method", APP), "{{job}} {{grpc_method}}")],
            "s",
        ),
        12,
        8,
    )

    lay.row("Event pipeline")
    lay.add(
        timeseries(
            "Outbox: events published and confirmed/s",
            "Events each relay sent to RabbitMQ, and those RabbitMQ confirmed (the relay deletes a row only then).",
            [
                target(f"sum by (job, event_type) (rate(outbox_events_published_total{{{SEL}}}{RATE}))", "published {{event_type}}"),
                target(f"sum by (job, event_type) (rate(outbox_events_confirmed_total{{{SEL}}}{RATE}))", "confirmed {{event_type}}"),
            ],
            "ops",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Events consumed/s by queue and outcome",
            "Deliveries settled: applied, duplicate (already in the inbox), retried, dead_lettered.",
            [target(f"sum by (queue, outcome) (rate(events_consumed_total{{{SEL}}}{RATE}))", "{{queue}} {{outcome}}")],
            "ops",
            stack=True,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Event lag p50 and p99 by queue",
            "Time from an event's occurred_at in its publisher until the consumer applied it; the TalentshareConsumerLagHigh alert watches the p99.",
            [
                target(quantile(0.5, "event_lag_seconds", "queue"), "p50 {{queue}}"),
                target(quantile(0.99, "event_lag_seconds", "queue"), "p99 {{queue}}"),
            ],
            "s",
        ),
        6,
        8,
    )
    lay.add(
        timeseries(
            "Event handling time p99 by queue",
            "Time from taking a delivery until it was settled (a batch's events share its time).",
            [target(quantile(0.99, "event_handling_seconds", "queue"), "{{queue}}")],
            "s",
        ),
        6,
        8,
    )
    lay.add(
        timeseries(
            "Queue messages ready",
            "Messages ready in each consumer's own queue (sampled every 5 s by the consumer): growing while the consumer settles nothing means it is stuck (TalentshareConsumerStalled), above the backlog threshold it falls behind (TalentshareQueueBacklog).",
            [target(f"max by (queue) (event_queue_messages{{{SEL}}})", "{{queue}}")],
        ),
        6,
        8,
    )
    lay.add(
        timeseries(
            "Deliveries held unsettled",
            "How long each consumer has held the deliveries it is handling now without settling them (event_in_hand_seconds, sampled every 5 s; 0 when idle). Rising while the queue shows nothing ready means the consumer is blocked (its database unreachable, a handler stuck): its prefetched deliveries wait unacknowledged (TalentshareConsumerStuck).",
            [target(f"max by (queue) (event_in_hand_seconds{{{SEL}}})", "{{queue}}")],
            "s",
        ),
        6,
        8,
    )
    lay.add(
        timeseries(
            "Dead-letter queue messages",
            "Messages resting in each consumer's dead-letter queue: talentshare dlq list --consumer <queue>, then replay once the cause is fixed (what replay skips as undecodable stays until purged: the TalentshareDeadLetters runbook).",
            [target(f"max by (queue) (dead_letter_queue_messages{{{SEL}}})", "{{queue}}")],
            step=True,
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Outbox backlog rows",
            "Events waiting in each service's outbox (counted every 5 s; all replicas share the table).",
            [target(f"max by (job) (outbox_backlog_rows{{{SEL}}})", "{{job}}")],
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Oldest outbox event age",
            "Age of the oldest event waiting in each outbox (0 when empty); the TalentshareOutboxStale alert watches it.",
            [target(f"max by (job) (outbox_oldest_event_age_seconds{{{SEL}}})", "{{job}}")],
            "s",
        ),
        8,
        8,
    )

    lay.row("Payment client")
    lay.add(
        timeseries(
            "Attempts/s by method and code",
            "Each attempt of a call to payment-svc by order-svc and reservation-svc (Unavailable when payment-svc was not reached).",
            [target(f"sum by (job, grpc_method, grpc_code) (rate(payment_client_attempts_total{{{SEL}}}{RATE}))", "{{job}} {{grpc_method}} {{grpc_code}}")],
            "ops",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Retries/s",
            "Attempts after the first (the retry budget bounds them).",
            [target(f'sum by (job, grpc_method) (rate(payment_client_attempts_total{{{SEL},attempt!="1"}}{RATE}))', "{{job}} {{grpc_method}}")],
            "ops",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Breaker state (pods)",
            "Pods in each state of the payment client's circuit breaker; open means calls fail fast.",
            [target(f"sum by (job, state) (payment_client_breaker_state{{{SEL}}})", "{{job}} {{state}}")],
            step=True,
        ),
        8,
        8,
    )

    lay.row("Database pools")
    lay.add(
        timeseries(
            "Pool connections by service",
            "Connections in use and idle, and the most the pools may open (summed over the pods).",
            [
                target(f"sum by (job, state) (db_pool_connections{{{SEL}}})", "{{job}} {{state}}"),
                target(f"sum by (job) (db_pool_max_connections{{{SEL}}})", "{{job}} max"),
            ],
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Pool in use / max by pod",
            "In use at the maximum means calls wait for a connection.",
            [target(f'db_pool_connections{{{SEL},state="in_use"}} / ignoring(state) db_pool_max_connections{{{SEL}}}', "{{pod}}")],
            "percentunit",
        ),
        12,
        8,
    )

    lay.row("Readiness and build")
    lay.add(
        timeseries(
            "Readiness by pod",
            "1 while the pod's readiness is SERVING (database reachable and migrated, not shutting down).",
            [target(f"service_ready{{{SEL}}}", "{{pod}}")],
            step=True,
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Scrapes by pod",
            "1 when Prometheus scraped the pod's metrics (up); 0 when the scrape failed.",
            [target(f"up{{{SEL}}}", "{{pod}}")],
            step=True,
        ),
        8,
        8,
    )
    build = {
        "type": "table",
        "title": "Builds",
        "description": "The version each pod runs (talentshare_build_info; its service label becomes exported_service next to the scrape's own).",
        "datasource": DATASOURCE,
        "targets": [target(f"talentshare_build_info{{{SEL}}}", ref="A", instant=True, range=False, format="table")],
        "transformations": [
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True, "Value": True, "__name__": True, "container": True, "endpoint": True, "instance": True, "service": True, "namespace": True},
                    "renameByName": {"exported_service": "service"},
                },
            }
        ],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True},
    }
    lay.add(build, 8, 8)
    return lay.panels


def templating() -> list[dict]:
    return [
        {"type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "options": []},
        {
            "type": "query",
            "name": "namespace",
            "label": "Namespace",
            "datasource": DATASOURCE,
            "query": {"query": "label_values(talentshare_build_info, namespace)", "refId": "namespace"},
            "definition": "label_values(talentshare_build_info, namespace)",
            "refresh": 2,
            "sort": 1,
            "multi": False,
            "includeAll": False,
            "current": {},
            "options": [],
        },
        {
            "type": "query",
            "name": "job",
            "label": "Service",
            "datasource": DATASOURCE,
            "query": {"query": 'label_values(talentshare_build_info{namespace="$namespace"}, job)', "refId": "job"},
            "definition": 'label_values(talentshare_build_info{namespace="$namespace"}, job)',
            # The chart narrows this to its release's four Services.
            "regex": "",
            "refresh": 2,
            "sort": 1,
            "multi": True,
            "includeAll": True,
            "current": {"text": ["All"], "value": ["$__all"]},
            "options": [],
        },
    ]


def dashboard() -> dict:
    return {
        "title": "talentshare",
        "uid": "talentshare",
        "description": "talentshare's four gRPC services: calls, errors and latency; the event pipeline (outbox, consumers, queues, lag, dead letters); the payment client; database pools; readiness and builds.",
        "tags": ["talentshare", "grpc", "rabbitmq"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "time": {"from": "now-3h", "to": "now"},
        "timezone": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": templating()},
        "panels": panels(),
        "links": [],
        "version": 1,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    if "--check" in sys.argv:
        sys.exit(0 if TARGET.exists() and TARGET.read_text() == render() else 1)
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(render())
    print(f"wrote {TARGET}")
