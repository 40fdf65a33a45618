"""Traces (README "Traces: one booking, one trace"): `tracing.otlpEndpoint` reaches every
service as OTEL_EXPORTER_OTLP_ENDPOINT, a setting each binary accepts, and the
NetworkPolicies let the spans out to the collector's port; unset, neither renders. The
schema refuses what is not an OTLP/gRPC URL the binaries can use, and values may not set
the variable (nor the traces-only one, which would win) through `config`. The chart
refuses an endpoint whose port the NetworkPolicies would not open. That the services
really export to the rendered endpoint is shown by the chart-as-cluster run
(test_smoke.py, production values).
"""
from __future__ import annotations

import json

import helm_python as helm
import pytest

from conftest import rendered_scenario
from deploycheck import chart, crossref, schemas
from deploycheck.paths import CHART

ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
COLLECTOR = "http://otel-collector.observability:4317"
SERVICES = {"order", "payment", "reservation", "mypage"}


def render(values=None, api_versions=()):
    return chart.render(chart.with_required(values), api_versions=api_versions)


def traced(endpoint=COLLECTOR, **extra):
    return chart.deep_merge({"tracing": {"otlpEndpoint": endpoint}}, extra)


def component(item):
    return (item.obj["metadata"].get("labels") or {}).get("app.kubernetes.io/component")


def collector_rule(r, service):
    """The egress rule of a service's NetworkPolicy that opens only TCP 4317."""
    (rule,) = otlp_rules(r, [4317])[f"talentshare-{service}"]
    return rule


def service_configmaps(r):
    """The four services' ConfigMaps, by service (not the dashboard's)."""
    cms = {component(cm): cm.obj.get("data") or {} for cm in r.of_kind("ConfigMap") if component(cm) in SERVICES}
    assert set(cms) == SERVICES
    return cms


def egress_ports(rule):
    return {(p.get("protocol", "TCP"), p["port"]) for p in rule.get("ports") or []}


def otlp_rules(r, ports):
    """Per NetworkPolicy, its egress rules that open exactly `ports` (TCP)."""
    want = {("TCP", p) for p in ports}
    return {np.name: [x for x in np.obj["spec"]["egress"] if egress_ports(x) == want] for np in r.of_kind("NetworkPolicy")}


def render_error(values) -> str:
    with pytest.raises(helm.HelmRenderError) as e:
        render(values)
    return str(e.value)


# --- unset: nothing -----------------------------------------------------------------------


@pytest.mark.parametrize("scenario_name", ["default", "mesh"])
def test_no_endpoint_renders_no_variable_and_no_egress_rule(scenario_name):
    r = rendered_scenario(scenario_name)
    assert r.values["tracing"]["otlpEndpoint"] == ""
    for svc, data in service_configmaps(r).items():
        assert ENV not in data, svc
    for name, rules in otlp_rules(r, [4317]).items():
        assert rules == [], f"{name}: an egress rule for the collector without an endpoint"
    assert all(("TCP", 4317) not in egress_ports(x) for np in r.of_kind("NetworkPolicy") for x in np.obj["spec"]["egress"])
    assert crossref.check_tracing(r) == []
    assert "Traces: none exported (tracing.otlpEndpoint is empty)" in r.notes


# --- set: every service, and the egress rule ------------------------------------------------


ENDPOINTS = {
    "service-name": (COLLECTOR, [4317], 4317),
    "fqdn-with-path": ("http://otel-collector.observability.svc.cluster.local:4317/otlp", [4317], 4317),
    "ipv4-other-port": ("http://10.20.1.7:55680", [55680], 55680),
    "ipv6": ("http://[fd00::7]:4317", [4317], 4317),
    "several-ports": ("http://otel-collector.observability:4317", [4317, 14317], 4317),
}


@pytest.mark.parametrize("endpoint,ports,port", list(ENDPOINTS.values()), ids=list(ENDPOINTS))
def test_endpoint_reaches_every_service_and_opens_its_port(endpoint, ports, port):
    r = render(traced(endpoint, networkPolicy={"egress": {"otlp": {"ports": ports, "to": []}}}))
    for svc, data in service_configmaps(r).items():
        assert data[ENV] == endpoint, svc
        assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in data
    assert ENV not in (r.get("ConfigMap", "talentshare-dashboard").obj.get("data") or {})
    # Each workload gets it through its ConfigMap (envFrom), as the binaries read it.
    for w in crossref.workloads(r):
        env, problems = crossref.container_env(r, w)
        assert problems == [] and env[ENV].value == endpoint and env[ENV].kind == "configmap", w.ref
    nps = r.of_kind("NetworkPolicy")
    assert {component(np) for np in nps} == SERVICES
    for name, rules in otlp_rules(r, ports).items():
        assert rules == [{"ports": [{"port": p, "protocol": "TCP"} for p in ports]}], name  # no `to`: any address
    assert crossref.otlp_port(endpoint) == port and port in ports
    assert crossref.check_tracing(r) == []
    assert [f for i in r.items for f in schemas.validate(i)] == []
    assert chart.lint_findings(chart.lint(chart.with_required(traced(endpoint, networkPolicy={"egress": {"otlp": {"ports": ports, "to": []}}})))) == []
    assert f"exports its spans over OTLP/gRPC to {endpoint}" in r.notes
    assert f"the NetworkPolicies open TCP {', '.join(map(str, ports))} for it" in r.notes


def test_the_egress_rule_goes_to_the_configured_peers():
    """production-values.yaml pins the collector's namespace, as it pins the others."""
    r = rendered_scenario("production")
    assert r.values["tracing"]["otlpEndpoint"] == COLLECTOR
    for svc, data in service_configmaps(r).items():
        assert data[ENV] == COLLECTOR, svc
    peer = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}]
    for name, rules in otlp_rules(r, [4317]).items():
        assert rules == [{"ports": [{"port": 4317, "protocol": "TCP"}], "to": peer}], name
    assert crossref.check_tracing(r) == []


def test_env_vars_with_tracing_are_settings_the_binaries_accept(facts):
    """The crossref check (every env var a container gets is a setting its binary lists in
    `--help`) holds with the variable in every ConfigMap."""
    for binary, accepted in facts.accepted_env.items():
        if accepted is not None:
            assert ENV in accepted, f"{binary} --help does not list {ENV}"
    r = render(traced())
    assert crossref.check_env(r, facts.accepted_env) == []
    seeded = r.copy()
    seeded.get("ConfigMap", "talentshare-payment").obj["data"]["OTEL_EXPORTER_OTLP_ENDPOIT"] = COLLECTOR
    assert any("OTEL_EXPORTER_OTLP_ENDPOIT" in f and "not a setting payment-svc accepts" in f for f in crossref.check_env(seeded, facts.accepted_env))


def test_under_istio_only_the_configmaps_and_network_policies_change():
    """The sidecar carries the spans (mTLS to a collector in the mesh): no Istio object,
    nor any other object besides the ConfigMaps and NetworkPolicies (and the Deployments'
    checksum of their ConfigMap, which rolls the pods), changes with an endpoint."""
    apis = chart.ISTIO_APIS + chart.MONITORING_APIS
    without, with_ = render(api_versions=apis), render(traced(), api_versions=apis)
    assert [i.ref for i in without.items] == [i.ref for i in with_.items]
    changed = set()
    for a, b in zip(without.items, with_.items):
        if a.obj != b.obj:
            changed.add(a.kind)
            if a.kind == "Deployment":
                a_meta = a.obj["spec"]["template"]["metadata"]
                b_meta = b.obj["spec"]["template"]["metadata"]
                assert {k for k in a_meta["annotations"] if a_meta["annotations"][k] != b_meta["annotations"].get(k)} == {"checksum/config"}
                assert a.obj["spec"]["template"]["spec"] == b.obj["spec"]["template"]["spec"]
    assert changed == {"ConfigMap", "NetworkPolicy", "Deployment"}
    assert crossref.check_tracing(with_) == [] and crossref.check_metrics_access(with_) == []


def test_without_network_policies_any_port_renders():
    r = render(traced("http://otel-collector.observability:4318", networkPolicy={"enabled": False}))
    assert r.of_kind("NetworkPolicy") == []
    assert {data[ENV] for data in service_configmaps(r).values()} == {"http://otel-collector.observability:4318"}
    assert crossref.check_tracing(r) == []
    assert "NetworkPolicies open" not in r.notes


# --- refused ---------------------------------------------------------------------------------


PORT_MISMATCHES = {
    "otlp-http-port": ("http://otel-collector.observability:4318", None, 4318),
    "ports-without-it": (COLLECTOR, [4318, 55680], 4317),
}


@pytest.mark.parametrize("endpoint,ports,port", list(PORT_MISMATCHES.values()), ids=list(PORT_MISMATCHES))
def test_an_endpoint_port_the_network_policies_do_not_open_is_refused(endpoint, ports, port):
    extra = {"networkPolicy": {"egress": {"otlp": {"ports": ports, "to": []}}}} if ports else {}
    message = render_error(traced(endpoint, **extra))
    assert f"tracing.otlpEndpoint {endpoint} reaches port {port}" in message
    assert f"networkPolicy.egress.otlp.ports {json.dumps(ports or [4317], separators=(',', ':'))} does not open" in message
    assert f"Add {port} to networkPolicy.egress.otlp.ports" in message


BAD_ENDPOINTS = {
    "no scheme": "otel-collector.observability:4317",
    "https (the binaries have no TLS for OTLP)": "https://otel-collector.observability:4317",
    "no port (the binaries would not guess 4317)": "http://otel-collector.observability",
    "grpc scheme": "grpc://otel-collector.observability:4317",
    "OTLP/HTTP traces path with a query": "http://otel-collector:4318/v1/traces?x=1",
    "no host": "http://:4317",
    "user info": "http://user:secret@otel-collector:4317",
    "port not a number": "http://otel-collector:otlp",
    "port too long": "http://otel-collector:431700",
    "fragment": "http://otel-collector:4317#x",
    "leading space": " http://otel-collector:4317",
    "underscore in the host": "http://otel_collector:4317",
    "two endpoints": "http://a:4317,http://b:4317",
}


@pytest.mark.parametrize("endpoint", list(BAD_ENDPOINTS.values()), ids=list(BAD_ENDPOINTS))
def test_the_schema_refuses_a_bad_endpoint(endpoint):
    values = chart.with_required(traced(endpoint, networkPolicy={"enabled": False}))
    with helm.Chart.load(str(CHART)) as c:
        with pytest.raises(helm.HelmValuesError) as e:
            c.validate_schema(values)
        assert "otlpEndpoint" in str(e.value)
        with pytest.raises(helm.HelmValuesError):
            c.render(values, name=chart.RELEASE, namespace=chart.NAMESPACE)


@pytest.mark.parametrize("where", ["config", "services.payment.config"])
@pytest.mark.parametrize("name", [ENV, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
def test_config_may_not_set_the_endpoint(where, name):
    """Chart-owned: only tracing.otlpEndpoint sets it, so the NetworkPolicies follow."""
    values = {"config": {name: COLLECTOR}} if where == "config" else {"services": {"payment": {"config": {name: COLLECTOR}}}}
    with helm.Chart.load(str(CHART)) as c:
        with pytest.raises(helm.HelmValuesError):
            c.validate_schema(chart.with_required(values))


def test_the_schema_accepts_good_endpoints_and_the_otlp_egress_peer():
    with helm.Chart.load(str(CHART)) as c:
        for endpoint in ["", *(e for e, _, _ in ENDPOINTS.values()), "http://otel-collector.observability:4317/"]:
            c.validate_schema(chart.with_required(traced(endpoint)))
        with pytest.raises(helm.HelmValuesError):
            c.validate_schema(chart.with_required({"networkPolicy": {"egress": {"otlp": {"ports": [], "to": []}}}}))
        with pytest.raises(helm.HelmValuesError):
            c.validate_schema(chart.with_required({"networkPolicy": {"egress": {"otlp": {"ports": [70000], "to": []}}}}))


# --- the check can fail ---------------------------------------------------------------------------


SEEDED = {
    "configmap-drops-the-variable": (
        lambda r: r.get("ConfigMap", "talentshare-order").obj["data"].pop(ENV),
        f"{ENV} is not set, though tracing.otlpEndpoint is {COLLECTOR}",
    ),
    "configmap-names-another-collector": (
        lambda r: r.get("ConfigMap", "talentshare-mypage").obj["data"].update({ENV: "http://jaeger.tracing:4317"}),
        f"is 'http://jaeger.tracing:4317' (from ConfigMap/talentshare-mypage key {ENV}), not tracing.otlpEndpoint",
    ),
    "traces-only-variable-wins": (
        lambda r: r.get("ConfigMap", "talentshare-payment").obj["data"].update(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://x:4317"),
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (from ConfigMap/talentshare-payment",
    ),
    "egress-rule-missing": (
        lambda r: r.get("NetworkPolicy", "talentshare-reservation").obj["spec"]["egress"].remove(collector_rule(r, "reservation")),
        f"NetworkPolicy/talentshare-reservation: no egress rule lets TCP 4317 out to the OTLP collector {COLLECTOR}",
    ),
    "egress-rule-on-another-port": (
        lambda r: collector_rule(r, "order")["ports"][0].update(port=4318),
        "NetworkPolicy/talentshare-order: no egress rule lets TCP 4317 out",
    ),
}


@pytest.fixture(scope="module")
def traced_render():
    return render(traced())


@pytest.mark.parametrize("mutate,expected", list(SEEDED.values()), ids=list(SEEDED))
def test_tracing_defects_are_reported(traced_render, mutate, expected):
    assert crossref.check_tracing(traced_render) == []
    r = traced_render.copy()
    mutate(r)
    findings = crossref.check_tracing(r)
    assert any(expected in f for f in findings), "\n".join(findings) or "no findings at all"


def test_a_variable_without_an_endpoint_is_reported():
    r = rendered_scenario("default").copy()
    r.get("ConfigMap", "talentshare-order").obj["data"][ENV] = COLLECTOR
    assert any("tracing.otlpEndpoint is empty, yet" in f for f in crossref.check_tracing(r))
