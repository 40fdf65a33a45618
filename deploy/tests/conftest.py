"""Shared fixtures: rendered scenarios, the chart-as-cluster runs, what the binaries say."""
from __future__ import annotations

import dataclasses

import pytest

from deploycheck import binaries, chart, crossref
from deploycheck.cluster import Cluster

# Scenario -> (values, namespace). The production-like one uses another namespace, so
# principals and hosts are checked with a namespace other than the release name.
# "mesh": the default values in a cluster that serves Istio's and the Prometheus Operator's
# APIs (istio.enabled, metrics.serviceMonitor/prometheusRule.enabled: auto).
SCENARIOS = {
    "default": ("default", "talentshare"),
    "production": ("production", "talentshare-prod"),
    "mesh": ("default", "talentshare"),
}
API_VERSIONS = {"mesh": chart.ISTIO_APIS + chart.MONITORING_APIS}
SERVICE_BINARIES = ["order-svc", "payment-svc", "reservation-svc", "mypage-svc"]

_rendered: dict[str, chart.Rendered] = {}


def rendered_scenario(name: str) -> chart.Rendered:
    """The chart rendered for a scenario (cached; callers must not mutate it: `.copy()`)."""
    if name not in _rendered:
        values, namespace = SCENARIOS[name]
        _rendered[name] = chart.render(chart.load_values(values), namespace=namespace, api_versions=API_VERSIONS.get(name, ()))
    return _rendered[name]


@pytest.fixture(params=list(SCENARIOS), scope="session")
def scenario(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def rendered(scenario) -> chart.Rendered:
    return rendered_scenario(scenario)


class Clusters:
    """One chart-as-cluster run per scenario, started on first use, stopped at the end."""

    def __init__(self):
        self._runs: dict[str, Cluster | BaseException] = {}

    def get(self, scenario: str) -> Cluster:
        if scenario not in self._runs:
            run = Cluster(rendered_scenario(scenario), scenario)
            try:
                run.start()
                self._runs[scenario] = run
            except BaseException as e:  # remember: every test using it fails the same way
                run.cleanup()
                self._runs[scenario] = e
        run = self._runs[scenario]
        if isinstance(run, BaseException):
            raise RuntimeError(f"the {scenario} chart-as-cluster run did not start") from run
        return run

    def cleanup(self):
        for run in self._runs.values():
            if isinstance(run, Cluster):
                run.cleanup()


@pytest.fixture(scope="session")
def clusters():
    c = Clusters()
    yield c
    c.cleanup()


@dataclasses.dataclass
class Facts:
    """What the binaries say about themselves (None: the binary cannot be asked yet)."""

    accepted_env: dict[str, set[str] | None]
    readiness: dict[str, str | None]  # binary -> the one application service it serves
    methods: dict[str, set[str] | None]  # gRPC service -> methods it serves
    grpc_service_of: dict[str, str | None]
    not_ready: dict[str, str]  # binary -> why it could not be asked


@pytest.fixture(scope="session")
def facts(clusters) -> Facts:
    """Asked from the binaries themselves: `--help` for the settings, and, from the running
    production-like cluster, reflection for the served service (= readiness name, checked
    to be SERVING by the smoke test) and its methods."""
    run = clusters.get("production")
    accepted = {b: binaries.accepted_env(b) for b in SERVICE_BINARIES}
    readiness: dict[str, str | None] = {b: None for b in SERVICE_BINARIES}
    methods: dict[str, set[str] | None] = {}
    not_ready = {b: r for b in SERVICE_BINARIES if (r := binaries.not_ready_reason(b))}
    for proc in run.processes.values():
        app = sorted(binaries.served_services(proc.addr) - binaries.INFRA_SERVICES)
        if len(app) != 1:
            raise AssertionError(f"{proc.binary} serves {app}; expected exactly one application service")
        readiness[proc.binary] = app[0]
        methods[app[0]] = binaries.served_methods(proc.addr, app[0])
    # Binaries that cannot be asked yet: their paths stay unverified, under the name the
    # chart claims for them, so a path to any other service still fails.
    for w in crossref.workloads(run.rendered):
        claimed = ((w.container.get("readinessProbe") or {}).get("grpc") or {}).get("service")
        if readiness.get(w.binary) is None and claimed:
            methods.setdefault(claimed, None)
    return Facts(accepted, readiness, methods, dict(readiness), not_ready)


def all_findings(r: chart.Rendered, f: Facts) -> list[str]:
    """Every check over one rendered release: schemas, CEL, cross-references."""
    from deploycheck import schemas

    out: list[str] = []
    for item in r.items:
        out += schemas.validate(item)
    out += crossref.check_env(r, f.accepted_env)
    out += crossref.check_ports(r)
    out += crossref.check_probes(r, f.readiness)
    out += crossref.check_shutdown(r)
    out += crossref.check_security(r)
    out += crossref.check_workload_refs(r)
    out += crossref.check_payment_url(r)
    out += crossref.check_test_hooks(r, f.readiness)
    out += crossref.check_istio_hosts(r)
    out += crossref.check_principals(r)
    out += crossref.check_authorization(r, f.grpc_service_of)
    out += crossref.check_method_paths(r, f.methods)
    out += crossref.check_traffic_policy(r)
    out += crossref.check_retries(r)
    out += crossref.check_broker_users(r)
    out += crossref.check_ingress(r)
    out += crossref.check_metrics(r)
    out += crossref.check_metrics_network(r)
    out += crossref.check_metrics_access(r)
    out += crossref.check_alert_rules(r)
    out += crossref.check_tracing(r)
    out += crossref.check_grpc_web(r)
    return out
