"""Browsers (chart README "Browsers (gRPC-Web)"): `grpcWeb.corsAllowedOrigins` reaches
order, reservation and mypage (never payment) as CORS_ALLOWED_ORIGINS, a setting each
binary accepts; under Istio a non-empty list adds one narrow ALLOW rule per public
service: OPTIONS (the CORS preflight, which carries no token) from the ingress gateway on
that service's method paths. Empty (the default), neither renders. The chart refuses `*`
and what is not an origin, naming the value, as the binaries refuse them at start
(test_smoke.py shows that, and that the running services answer preflights for the
rendered origins).
"""
from __future__ import annotations

import helm_python as helm
import pytest
import yaml

from conftest import rendered_scenario
from deploycheck import chart, crossref, istio, schemas
from deploycheck.paths import CHART, ISTIO_GENERATED

ENV = "CORS_ALLOWED_ORIGINS"
ORIGINS = ["https://app.talentshare.example", "http://localhost:8080"]
PUBLIC = {"order", "reservation", "mypage"}
SERVICES = PUBLIC | {"payment"}
GATEWAY = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
ISSUER = chart.REQUIRED_VALUES["auth"]["issuer"]
MESH = chart.ISTIO_APIS + chart.MONITORING_APIS
GRPC_SERVICE = {
    "order": "talentshare.order.v1.OrderService",
    "reservation": "talentshare.reservation.v1.ReservationService",
    "mypage": "talentshare.mypage.v1.MyPageService",
    "payment": "talentshare.payment.v1.PaymentService",
}
GRPC_OF = {f"{svc}-svc": name for svc, name in GRPC_SERVICE.items()}  # binary -> gRPC service
METHODS = {
    "order": {"PlaceOrder", "CancelOrder", "GetOrder", "ListOrders"},
    "reservation": {"ConfirmReservation", "RejectReservation", "GetReservation", "ListReservations"},
    "mypage": {"GetMyPage", "GetMyPageEntry", "WatchMyPage"},
}


def with_origins(origins=ORIGINS, **extra):
    return chart.deep_merge({"grpcWeb": {"corsAllowedOrigins": origins}}, extra)


def render(values=None, api_versions=()):
    return chart.render(chart.with_required(values), api_versions=api_versions)


def component(item):
    return (item.obj["metadata"].get("labels") or {}).get("app.kubernetes.io/component")


def service_configmaps(r):
    cms = {component(cm): cm.obj.get("data") or {} for cm in r.of_kind("ConfigMap") if component(cm) in SERVICES}
    assert set(cms) == SERVICES
    return cms


def options_rules(r):
    """Per service, the rules of its AuthorizationPolicies that allow OPTIONS."""
    out = {}
    for ap in r.of_kind("AuthorizationPolicy"):
        for rule in ap.obj["spec"].get("rules") or []:
            if any("OPTIONS" in ((t.get("operation") or {}).get("methods") or []) for t in rule.get("to") or []):
                out.setdefault(component(ap) or ap.name, []).append(rule)
    return out


def workload(r, svc):
    (w,) = [w for w in crossref.workloads(r) if w.item.name == f"talentshare-{svc}"]
    return w


@pytest.fixture(scope="module")
def mesh_with_origins():
    return render(with_origins(), api_versions=MESH)


# --- empty (the default): nothing ------------------------------------------------------------


@pytest.mark.parametrize("scenario_name", ["default", "mesh"])
def test_default_renders_no_variable_and_no_options_rule(scenario_name):
    r = rendered_scenario(scenario_name)
    assert r.values["grpcWeb"]["corsAllowedOrigins"] == []
    for svc, data in service_configmaps(r).items():
        assert ENV not in data, svc
    for w in crossref.workloads(r):
        assert ENV not in crossref.container_env(r, w)[0], w.ref
    assert options_rules(r) == {}
    assert crossref.check_grpc_web(r) == []
    assert "grant CORS to no other origin (grpcWeb.corsAllowedOrigins is empty)" in r.notes


def test_the_generated_istio_policy_has_no_options_rule():
    """istio/talentshare.yaml is the default render (test_istio_sync.py): no preflight rule."""
    docs = [d for d in yaml.safe_load_all(ISTIO_GENERATED.read_text()) if d]
    assert [d for d in docs if d["kind"] == "AuthorizationPolicy"]
    assert "OPTIONS" not in ISTIO_GENERATED.read_text()


# --- set: the public services, and the preflight rule ---------------------------------------


@pytest.mark.parametrize("api_versions", [(), MESH], ids=["plain", "mesh"])
def test_origins_reach_the_public_services_only(api_versions):
    r = render(with_origins(), api_versions=api_versions)
    cms = service_configmaps(r)
    for svc in PUBLIC:
        assert cms[svc][ENV] == "https://app.talentshare.example,http://localhost:8080", svc
    assert ENV not in cms["payment"]
    for w in crossref.workloads(r):
        env, problems = crossref.container_env(r, w)
        assert problems == []
        if w.binary == "payment-svc":
            assert ENV not in env
        else:
            assert env[ENV].kind == "configmap" and env[ENV].value == ",".join(ORIGINS), w.ref
    assert crossref.check_grpc_web(r) == []
    assert [f for i in r.items for f in schemas.validate(i)] == []
    assert "answer gRPC-Web calls from https://app.talentshare.example, http://localhost:8080 with CORS" in r.notes


def test_env_with_origins_is_a_setting_the_binaries_accept(facts):
    for binary, accepted in facts.accepted_env.items():
        if accepted is not None:
            assert ENV in accepted, f"{binary} --help does not list {ENV}"
    assert crossref.check_env(render(with_origins()), facts.accepted_env) == []


def test_the_options_rule_is_scoped_to_the_gateway_and_the_method_paths(mesh_with_origins):
    r = mesh_with_origins
    rules = options_rules(r)
    assert set(rules) == PUBLIC, "one preflight rule per public service, none for payment"
    for svc in PUBLIC:
        (rule,) = rules[svc]
        assert rule["from"] == [{"source": {"principals": [GATEWAY]}}], "the ingress gateway, no request principal"
        (to,) = rule["to"]
        assert set(to["operation"]) == {"methods", "paths"} and to["operation"]["methods"] == ["OPTIONS"]
        assert sorted(to["operation"]["paths"]) == sorted(f"/{GRPC_SERVICE[svc]}/{m}" for m in METHODS[svc])
        assert "when" not in rule
    # Valid against Istio 1.30's AuthorizationPolicy CRD (unknown fields rejected, CEL rules).
    for ap in r.of_kind("AuthorizationPolicy"):
        assert istio.validate(ap.obj) == [], ap.ref
    assert crossref.check_authorization(r, GRPC_OF) == []
    assert crossref.check_grpc_web(r) == [] and crossref.check_principals(r) == []
    assert crossref.check_metrics_access(r) == []
    assert "the mesh lets the ingress gateway bring them the CORS preflights" in r.notes


def test_the_crd_schema_check_sees_a_broken_options_rule(mesh_with_origins):
    """Positive control: the CRD validation above rejects a malformed preflight rule."""
    r = mesh_with_origins.copy()
    preflight_rule(r, "order")["to"][0]["operation"]["methods"] = "OPTIONS"  # a string, not a list
    assert any("CRD schema" in f for f in istio.validate(r.get("AuthorizationPolicy", "talentshare-order").obj))


def test_istio_decides_preflights_and_nothing_else_changes(mesh_with_origins):
    """Istio's evaluation of the rendered policies: the gateway's OPTIONS without a token
    reaches each public method path; OPTIONS from anyone else, on health or reflection, or
    to payment is refused; and every other decision (POST and GET, with and without a
    token, every caller, both ports) is the same as without origins."""
    with_, without = mesh_with_origins, render(api_versions=MESH)
    order, payment = workload(with_, "order"), workload(with_, "payment")
    allow = crossref.Authorizer(with_, order)
    port = order.grpc_port()
    assert allow(crossref.Request(GATEWAY, port, "OPTIONS", "/talentshare.order.v1.OrderService/PlaceOrder"))
    assert not allow(crossref.Request(GATEWAY, port, "OPTIONS", "/grpc.health.v1.Health/Check"))
    assert not allow(crossref.Request(GATEWAY, port, "OPTIONS", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"))
    assert not allow(crossref.Request(None, port, "OPTIONS", "/talentshare.order.v1.OrderService/PlaceOrder"))
    assert not allow(crossref.Request(crossref.principal_of(with_, payment), port, "OPTIONS", "/talentshare.order.v1.OrderService/PlaceOrder"))
    assert not allow(crossref.Request(GATEWAY, port, "POST", "/talentshare.order.v1.OrderService/PlaceOrder"))
    assert not allow(crossref.Request(GATEWAY, order.metrics_port(), "OPTIONS", "/metrics"))
    assert allow(crossref.Request(GATEWAY, port, "POST", "/talentshare.order.v1.OrderService/PlaceOrder", f"{ISSUER}/alice"))
    assert not crossref.Authorizer(with_, payment)(crossref.Request(GATEWAY, payment.grpc_port(), "OPTIONS", "/talentshare.payment.v1.PaymentService/Pay"))
    for w in crossref.workloads(with_):
        a, b = crossref.Authorizer(with_, w), crossref.Authorizer(without, workload(without, component(w.item)))
        for req in crossref.probe_requests(with_, w):  # GET and POST
            assert a(req) == b(req), (w.ref, req)


def test_under_istio_only_configmaps_policies_and_the_checksum_change(mesh_with_origins):
    without = render(api_versions=MESH)
    assert [i.ref for i in without.items] == [i.ref for i in mesh_with_origins.items]
    changed = set()
    for a, b in zip(without.items, mesh_with_origins.items):
        if a.obj != b.obj:
            changed.add(a.ref if a.kind == "AuthorizationPolicy" else a.kind)
            if a.kind == "Deployment":
                assert a.obj["spec"]["template"]["spec"] == b.obj["spec"]["template"]["spec"]
    assert changed == {"ConfigMap", "Deployment", *(f"AuthorizationPolicy/talentshare-{s}" for s in PUBLIC)}


def test_the_gateway_api_gateway_may_send_preflights_too():
    ingress = {"enabled": True, "host": "api.talentshare.example", "tlsSecretName": "api-tls"}
    r = render(with_origins(ingress=ingress), api_versions=MESH + chart.GATEWAY_APIS)
    own = "cluster.local/ns/talentshare/sa/talentshare-ingress-istio"
    for svc, (rule,) in options_rules(r).items():
        assert rule["from"][0]["source"]["principals"] == [GATEWAY, own], svc
    assert crossref.check_grpc_web(r) == [] and crossref.check_authorization(r, GRPC_OF) == []
    assert [f for i in r.items for f in schemas.validate(i)] == []


def test_without_authorization_policies_no_rule_renders():
    r = render(with_origins(istio={"authorization": {"enabled": False}}), api_versions=MESH)
    assert r.of_kind("AuthorizationPolicy") == [] and options_rules(r) == {}
    assert service_configmaps(r)["order"][ENV] == ",".join(ORIGINS)


def test_origins_render_lint_clean_and_production_sets_one():
    assert chart.lint_findings(chart.lint(chart.with_required(with_origins()))) == []
    r = rendered_scenario("production")
    assert r.values["grpcWeb"]["corsAllowedOrigins"] == ["https://app.talentshare.example"]
    assert set(options_rules(r)) == PUBLIC
    assert crossref.check_grpc_web(r) == []


GOOD = ["https://app.example.com", "http://localhost:8080", "http://127.0.0.1:5173", "http://[::1]:3000", "https://APP.Example.com:443"]


def test_good_origins_render():
    r = render(with_origins(GOOD))
    assert service_configmaps(r)["mypage"][ENV] == ",".join(GOOD)


# --- refused -----------------------------------------------------------------------------


BAD = {
    "any origin": ("*", "`*` is not allowed: list each browser origin"),
    "a path": ("https://x/path", '"https://x/path" is not a browser origin'),
    "a trailing slash": ("https://app.example.com/", '"https://app.example.com/" is not a browser origin'),
    "no scheme": ("app.example.com", '"app.example.com" is not a browser origin'),
    "another scheme": ("ftp://app.example.com", '"ftp://app.example.com" is not a browser origin'),
    "a query": ("https://app.example.com?x=1", "is not a browser origin"),
    "user info": ("https://me@app.example.com", "is not a browser origin"),
    "a wildcard host": ("https://*.example.com", "is not a browser origin"),
    "two in one": ("https://a.example,https://b.example", "is not a browser origin"),
    "port out of range": ("https://app.example.com:70000", "is not a browser origin"),
}


@pytest.mark.parametrize("origin,message", list(BAD.values()), ids=list(BAD))
def test_a_bad_origin_fails_rendering_with_the_message(origin, message):
    with pytest.raises(helm.HelmRenderError) as e:
        render(with_origins(["https://app.example.com", origin]))
    assert "grpcWeb.corsAllowedOrigins: " in str(e.value)
    assert message in str(e.value)
    if origin != "*":
        assert "expected http(s)://host[:port] with nothing after it" in str(e.value)


def test_the_schema_wants_a_list_and_keeps_the_variable_chart_owned():
    with helm.Chart.load(str(CHART)) as c:
        c.validate_schema(chart.with_required(with_origins()))
        for bad in ["https://app.example.com", [""], [1]]:
            with pytest.raises(helm.HelmValuesError):
                c.validate_schema(chart.with_required(with_origins(bad)))
        for values in ({"config": {ENV: "*"}}, {"services": {"payment": {"config": {ENV: "https://a.example"}}}}):
            with pytest.raises(helm.HelmValuesError):
                c.validate_schema(chart.with_required(values))


# --- the checks can fail ---------------------------------------------------------------------


def cm(r, svc):
    return r.get("ConfigMap", f"talentshare-{svc}").obj["data"]


def preflight_rule(r, svc):
    ap = r.get("AuthorizationPolicy", f"talentshare-{svc}")
    return next(rule for rule in ap.obj["spec"]["rules"] if rule["to"][0]["operation"].get("methods") == ["OPTIONS"])


SEEDED = {
    "payment-gets-the-variable": (lambda r: cm(r, "payment").update({ENV: ORIGINS[0]}), "payment-svc never speaks gRPC-Web"),
    "order-loses-the-variable": (lambda r: cm(r, "order").pop(ENV), f"{ENV} is not set, though grpcWeb.corsAllowedOrigins"),
    "mypage-gets-another-origin": (lambda r: cm(r, "mypage").update({ENV: "https://evil.example"}), "not grpcWeb.corsAllowedOrigins"),
    "rule-on-every-path": (
        lambda r: preflight_rule(r, "order")["to"][0]["operation"].update(paths=["*"]),
        "OPTIONS on '*', which is not an exact method path",
    ),
    "rule-from-a-service": (
        lambda r: preflight_rule(r, "reservation")["from"][0]["source"]["principals"].append("cluster.local/ns/talentshare/sa/talentshare-payment"),
        "may send OPTIONS to a public service; only the ingress gateway may",
    ),
    "rule-on-payment": (
        lambda r: r.get("AuthorizationPolicy", "talentshare-payment").obj["spec"]["rules"].append(preflight_rule(r, "order")),
        "allows OPTIONS to payment-svc",
    ),
    "rule-allows-post": (
        lambda r: preflight_rule(r, "mypage")["to"][0]["operation"].update(methods=["OPTIONS", "POST"]),
        f"allows POST /talentshare.mypage.v1.MyPageService/GetMyPage from {GATEWAY} without a token",
    ),
    "rule-on-health": (
        lambda r: preflight_rule(r, "order")["to"][0]["operation"]["paths"].append("/grpc.health.v1.Health/Check"),
        "allows OPTIONS /grpc.health.v1.Health/Check",
    ),
}


@pytest.mark.parametrize("mutate,expected", list(SEEDED.values()), ids=list(SEEDED))
def test_grpc_web_defects_are_reported(mesh_with_origins, mutate, expected):
    r = mesh_with_origins.copy()
    mutate(r)
    findings = crossref.check_grpc_web(r) + crossref.check_authorization(r, GRPC_OF)
    assert any(expected in f for f in findings), "\n".join(findings) or "no findings at all"


def test_an_options_rule_without_origins_is_reported(mesh_with_origins):
    r = rendered_scenario("mesh").copy()
    ap = r.get("AuthorizationPolicy", "talentshare-order")
    ap.obj["spec"]["rules"].append(preflight_rule(mesh_with_origins, "order"))
    findings = crossref.check_grpc_web(r) + crossref.check_authorization(r, GRPC_OF)
    assert any("though grpcWeb.corsAllowedOrigins is empty" in f for f in findings), findings
