"""Secure by default (issue 8 point 4): end-user JWTs and the mesh policy render where the
cluster serves Istio's APIs, the broker users are least-privilege, placeholders are
refused, NetworkPolicies restrict egress too, and the optional ingress exposes only the
public services' methods. Renders use the real Helm engine with the API versions a
cluster would report (chart.ISTIO_APIS, chart.GATEWAY_APIS)."""
from __future__ import annotations

import re

import helm_python as helm
import pytest
import yaml

from conftest import rendered_scenario
from deploycheck import chart, crossref, istio, schemas
from deploycheck.paths import CHART

PUBLIC = {"order", "reservation", "mypage"}
ISSUER = chart.REQUIRED_VALUES["auth"]["issuer"]
ISSUER_JWKS = chart.REQUIRED_VALUES["auth"]["jwksUri"]
INGRESS = {"enabled": True, "host": "api.talentshare.example", "tlsSecretName": "api-tls"}
PROMETHEUS = "cluster.local/ns/monitoring/sa/prometheus-kube-prometheus-prometheus"


def component(item):
    return (item.obj["metadata"].get("labels") or {}).get("app.kubernetes.io/component")


def crd_and_core_findings(r):
    return [f for i in r.items for f in schemas.validate(i)]


def render_error(values, api_versions=()) -> str:
    with pytest.raises(helm.HelmRenderError) as e:
        chart.render(values, api_versions=api_versions)
    return str(e.value)


# --- Istio on by default where Istio is -------------------------------------------------


def test_istio_apis_served_renders_jwt_authentication_and_authorization():
    r = rendered_scenario("mesh")  # default values, the cluster serves security.istio.io/v1
    ras = r.of_kind("RequestAuthentication")
    assert {component(ra) for ra in ras} == PUBLIC, "one per public workload, none for payment"
    for ra in ras:
        assert ra.obj["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == component(ra)
        (rule,) = ra.obj["spec"]["jwtRules"]
        assert rule == {
            "issuer": ISSUER,
            "audiences": [chart.REQUIRED_VALUES["auth"]["audience"]],
            "jwksUri": chart.REQUIRED_VALUES["auth"]["jwksUri"],
            "forwardOriginalToken": True,  # the service verifies the token again
        }
    policies = {component(ap): ap.obj["spec"] for ap in r.of_kind("AuthorizationPolicy")}
    for svc in PUBLIC:
        for rule in policies[svc]["rules"]:
            source = rule["from"][0]["source"]
            if rule["to"][0]["operation"]["paths"] == ["/grpc.health.v1.Health/Check"]:
                continue  # the helm test identity
            if rule["to"][0]["operation"]["paths"] == ["/metrics"]:
                assert source == {"principals": [PROMETHEUS]}, "GET /metrics: Prometheus only"
                continue
            assert source["requestPrincipals"] == [f"{ISSUER}/*"], (svc, rule)
            assert source["principals"] == ["cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]
    manager_rules = [rule for rule in policies["reservation"]["rules"] if rule.get("when")]
    assert len(manager_rules) == 1
    assert manager_rules[0]["when"] == [{"key": "request.auth.claims[roles]", "values": ["manager"]}]
    assert {p.rsplit("/", 1)[1] for p in manager_rules[0]["to"][0]["operation"]["paths"]} == {
        "ConfirmReservation", "RejectReservation", "ListReservations",
    }
    other = [p for rule in policies["reservation"]["rules"] if not rule.get("when") for p in rule["to"][0]["operation"]["paths"]]
    assert not any(m in p for p in other for m in ("Confirm", "Reject", "ListReservations")), other
    for rule in policies["payment"]["rules"]:
        assert "requestPrincipals" not in rule["from"][0]["source"]
        assert not any("istio-system" in p for p in rule["from"][0]["source"]["principals"]), "never the gateway"
    for w in list(crossref.workloads(r)) + [w for w in crossref.workloads(r, hooks=True) if w.item.kind == "Pod"]:
        assert w.labels.get("sidecar.istio.io/inject") == "true", w.ref
    assert crd_and_core_findings(r) == []


def test_no_istio_apis_renders_nothing_of_istio():
    r = rendered_scenario("default")  # istio.enabled: auto, no Istio APIs served
    assert [i.ref for i in r.items if i.is_crd_kind] == []
    for w in crossref.workloads(r):
        assert "sidecar.istio.io/inject" not in w.labels
        assert not any(k.startswith(("sidecar.istio.io/", "proxy.istio.io/")) for k in w.item.obj["spec"]["template"]["metadata"]["annotations"])
    assert "Istio policy is off" in r.notes


@pytest.mark.parametrize("forced,apis,expect", [(False, chart.ISTIO_APIS, False), (True, (), True)], ids=["off-in-mesh", "on-without-apis"])
def test_istio_can_be_forced(forced, apis, expect):
    r = chart.render(chart.with_required({"istio": {"enabled": forced}}), api_versions=apis)
    assert bool(r.of_kind("AuthorizationPolicy")) is expect
    assert bool(r.of_kind("RequestAuthentication")) is expect


# --- required settings and placeholders ------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [f"connections.amqpUrls.{u}" for u in ("order", "payment", "reservation", "mypage", "admin")]
    + [f"connections.databaseUrls.{s}" for s in ("order", "payment", "reservation", "mypage")],
)
def test_placeholder_password_refuses_to_render(where):
    _, group, key = where.split(".")
    values = chart.with_required({"connections": {group: {key: f"amqp://x:change-me@rabbitmq:5672/%2f" if group == "amqpUrls" else "postgres://x:change-me@db:5432/x"}}})
    message = render_error(values)
    assert where in message and "change-me" in message and "connections.existingSecret" in message


def test_chart_defaults_alone_refuse_to_render():
    """The shipped defaults are not deployable: the auth settings are missing (first),
    and with them the placeholder passwords are refused."""
    assert "auth.issuer is required" in render_error({})
    assert "connections.amqpUrls" in render_error({"auth": chart.REQUIRED_VALUES["auth"]})


def test_existing_secret_skips_the_placeholder_check():
    r = chart.render({"auth": chart.REQUIRED_VALUES["auth"], "connections": {"existingSecret": "mine"}})
    assert r.of_kind("Secret") == []
    job = r.of_kind("Job")[0].obj
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AMQP_URL"]["valueFrom"]["secretKeyRef"] == {"name": "mine", "key": "admin-amqp-url"}


@pytest.mark.parametrize(
    "auth,named",
    [({"issuer": ""}, "auth.issuer"), ({"audience": ""}, "auth.audience"), ({"jwksUri": ""}, "auth.jwksUri")],
)
def test_missing_auth_setting_refuses_to_render(auth, named):
    assert named in render_error(chart.deep_merge(chart.REQUIRED_VALUES, {"auth": auth}))


def test_jwks_configmap_is_mounted_and_istio_needs_a_uri():
    values = chart.deep_merge(chart.REQUIRED_VALUES, {"auth": {"jwksUri": "", "jwksConfigMap": "idp-jwks"}})
    r = chart.render(values)
    for d in r.of_kind("Deployment"):
        pod = d.obj["spec"]["template"]["spec"]
        cm = r.get("ConfigMap", d.name).obj["data"]
        if component(d) in PUBLIC:
            assert cm["AUTH_JWKS"] == "/etc/talentshare/jwks/jwks.json"
            assert pod["volumes"][0]["configMap"]["name"] == "idp-jwks"
            assert pod["containers"][0]["volumeMounts"][0]["readOnly"] is True
        else:
            assert "volumes" not in pod and not any(k.startswith("AUTH_") for k in cm)
    assert "auth.jwksUri is required when Istio is on" in render_error(values, chart.ISTIO_APIS)


def test_a_private_ca_for_the_jwks_uri_is_mounted_for_the_public_services():
    values = chart.deep_merge(chart.REQUIRED_VALUES, {"auth": {"jwksCaConfigMap": "idp-ca"}})
    r = chart.render(values)
    assert not crd_and_core_findings(r)
    for d in r.of_kind("Deployment"):
        pod = d.obj["spec"]["template"]["spec"]
        cm = r.get("ConfigMap", d.name).obj["data"]
        if component(d) in PUBLIC:
            assert cm["AUTH_JWKS"] == ISSUER_JWKS, "still fetched from the URL"
            assert cm["AUTH_JWKS_CA"] == "/etc/talentshare/jwks-ca/ca.pem"
            (volume,) = pod["volumes"]
            assert volume["configMap"] == {"name": "idp-ca", "items": [{"key": "ca.crt", "path": "ca.pem"}]}
            (mount,) = pod["containers"][0]["volumeMounts"]
            assert mount == {"name": "jwks-ca", "mountPath": "/etc/talentshare/jwks-ca", "readOnly": True}
        else:
            assert "volumes" not in pod and "AUTH_JWKS_CA" not in cm


def test_nested_role_claims_reach_the_services_and_the_manager_rule():
    values = chart.deep_merge(
        chart.REQUIRED_VALUES,
        {"auth": {"rolesClaim": "realm_access.roles", "talentsClaim": "talentshare.talents"}},
    )
    r = chart.render(values, api_versions=chart.ISTIO_APIS)
    assert not crd_and_core_findings(r)
    for svc in PUBLIC:
        cm = r.get("ConfigMap", f"talentshare-{svc}").obj["data"]
        assert (cm["AUTH_ROLES_CLAIM"], cm["AUTH_TALENTS_CLAIM"]) == ("realm_access.roles", "talentshare.talents")
    rules = r.get("AuthorizationPolicy", "talentshare-reservation").obj["spec"]["rules"]
    whens = [w for rule in rules for w in rule.get("when", [])]
    assert whens == [{"key": "request.auth.claims[realm_access][roles]", "values": ["manager"]}]
    with pytest.raises(helm.HelmValuesError, match="rolesClaim"):
        chart.render(chart.deep_merge(values, {"auth": {"rolesClaim": "a..b"}}))


def test_services_get_their_settings():
    r = rendered_scenario("default")
    for cm in r.of_kind("ConfigMap"):
        if cm.name.endswith("-dashboard"):
            continue  # Grafana's
        data = cm.obj["data"]
        assert data["AMQP_DECLARE_TOPOLOGY"] == "false"
        if component(cm) in PUBLIC:
            assert data["AUTH_ISSUER"] == ISSUER and data["AUTH_JWKS"].startswith("https://")
            assert (data["AUTH_JWKS_REFRESH"], data["AUTH_LEEWAY"]) == ("5m", "30s")
        else:
            assert not any(k.startswith("AUTH_") for k in data), "payment-svc is internal: no end-user auth"


# --- broker users ------------------------------------------------------------------------


def test_each_service_has_its_own_broker_user_and_a_hook_job_declares_the_topology():
    r = rendered_scenario("default")
    assert crossref.check_broker_users(r) == []
    secret = next(i for i in r.of_kind("Secret") if not i.is_hook).obj["stringData"]
    assert set(secret) == {f"{s}-{k}" for s in ("order", "payment", "reservation", "mypage") for k in ("amqp-url", "database-url")}
    hook_secret = next(i for i in r.of_kind("Secret") if i.is_hook).obj
    job = r.of_kind("Job")[0].obj
    assert set(hook_secret["stringData"]) == {"admin-amqp-url"}
    for obj in (hook_secret, job):
        ann = obj["metadata"]["annotations"]
        assert ann["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert ann["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert (c["command"], c["args"]) == (["/usr/local/bin/talentshare"], ["topology"])
    assert {e["name"]: e.get("value") for e in c["env"]}["EVENTS_EXCHANGE"] == "talentshare.events"


def test_broker_user_defects_are_reported():
    r = rendered_scenario("default").copy()
    c = next(i for i in r.of_kind("Deployment") if i.name.endswith("-mypage")).obj["spec"]["template"]["spec"]["containers"][0]
    next(e for e in c["env"] if e["name"] == "AMQP_URL")["valueFrom"]["secretKeyRef"]["key"] = "order-amqp-url"
    r.get("ConfigMap", "talentshare-payment").obj["data"]["AMQP_DECLARE_TOPOLOGY"] = "true"
    next(i for i in r.of_kind("Secret") if not i.is_hook).obj["stringData"]["admin-amqp-url"] = "amqp://a:b@c/%2f"
    findings = "\n".join(crossref.check_broker_users(r))
    assert "not its own broker user's mypage-amqp-url" in findings
    assert "AMQP_DECLARE_TOPOLOGY is 'true'" in findings
    assert "holds the admin broker URL" in findings


# --- fixes -----------------------------------------------------------------------------


class _DuplicateKeyLoader(yaml.SafeLoader):
    pass


def _no_duplicates(loader, node, deep=False):
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise AssertionError(f"duplicate keys {dupes} at line {node.start_mark.line + 1}")
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_DuplicateKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def test_pod_labels_repeating_a_chart_label_render_once():
    values = chart.with_required(
        {"podLabels": {"app.kubernetes.io/component": "mine", "app.kubernetes.io/part-of": "x", "sidecar.istio.io/inject": "false", "team": "booking"}}
    )
    manifests, _ = chart.render_manifests(values, api_versions=chart.ISTIO_APIS)
    text = manifests["talentshare/templates/deployment.yaml"]
    docs = [d for d in yaml.load_all(text, Loader=_DuplicateKeyLoader) if d]  # raises on a duplicate key
    for d in docs:
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert labels["team"] == "booking"
        assert labels["app.kubernetes.io/component"] == d["metadata"]["labels"]["app.kubernetes.io/component"] != "mine"
        assert labels["sidecar.istio.io/inject"] == "true"
    assert crossref.check_workload_refs(chart.render(values)) == []


@pytest.mark.parametrize(
    "values",
    [
        {"autoscaling": {"enabled": False}, "replicaCount": 1},
        {"autoscaling": {"minReplicas": 1}},
        {"services": {"payment": {"autoscaling": {"minReplicas": 1}}}, "podDisruptionBudget": {"minAvailable": 1}},
    ],
    ids=["replicaCount-1", "minReplicas-1", "one-service-at-1-minAvailable"],
)
def test_no_pdb_blocks_drains_at_one_replica(values):
    r = chart.render(chart.with_required(values))
    at_one = {d.name for d in r.of_kind("Deployment") if d.obj["spec"].get("replicas") == 1} | {
        h.obj["spec"]["scaleTargetRef"]["name"] for h in r.of_kind("HorizontalPodAutoscaler") if h.obj["spec"]["minReplicas"] == 1
    }
    assert at_one
    assert not {p.name for p in r.of_kind("PodDisruptionBudget")} & at_one
    assert crossref.check_workload_refs(r) == []


def test_a_pdb_that_blocks_drains_is_reported():
    r = chart.render(chart.with_required({"autoscaling": {"enabled": False}, "replicaCount": 2, "podDisruptionBudget": {"minAvailable": 2}}))
    assert any("node drains would block" in f for f in crossref.check_workload_refs(r))


def test_no_route_retries_resource_exhausted():
    assert "resource-exhausted" not in (CHART / "values.yaml").read_text()
    for name in ("mesh", "production"):
        r = rendered_scenario(name)
        for vs in r.of_kind("VirtualService"):
            for route in vs.obj["spec"]["http"]:
                assert "resource-exhausted" not in route["retries"].get("retryOn", ""), (vs.ref, route["name"])
    r = rendered_scenario("mesh").copy()
    r.of_kind("VirtualService")[0].obj["spec"]["http"][0]["retries"]["retryOn"] += ",resource-exhausted"
    assert any("retryOn has resource-exhausted" in f for f in crossref.check_retries(r))


# --- NetworkPolicy ----------------------------------------------------------------------


def _egress_ports(rule):
    return {(p.get("protocol", "TCP"), p["port"]) for p in rule.get("ports") or []}


@pytest.mark.parametrize("scenario_name", ["default", "mesh"])
def test_network_policies_restrict_egress_by_default(scenario_name):
    r = rendered_scenario(scenario_name)
    nps = {component(np): np.obj["spec"] for np in r.of_kind("NetworkPolicy")}
    assert set(nps) == PUBLIC | {"payment"}
    for svc, spec in nps.items():
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        rules = spec["egress"]
        dns = rules[0]
        assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}]
        assert _egress_ports(dns) == {("UDP", 53), ("TCP", 53)}
        all_ports = set().union(*(_egress_ports(x) for x in rules))
        assert {("TCP", 5432), ("TCP", 5672)} <= all_ports
        to_payment = [x for x in rules if any((p.get("podSelector") or {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "payment" for p in x.get("to") or [])]
        assert bool(to_payment) is (svc in ("order", "reservation")), svc
        istiod = [x for x in rules if ("TCP", 15012) in _egress_ports(x)]
        assert bool(istiod) is (scenario_name == "mesh")
        assert (("TCP", 443) in all_ports) is (svc in PUBLIC), "the JWKS host, for the public services only"
    callers = [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in nps["payment"]["ingress"][0]["from"]]
    assert sorted(callers) == ["order", "reservation", "test"]


# --- ingress ----------------------------------------------------------------------------


def test_ingress_is_off_by_default():
    for name in ("default", "mesh"):
        r = rendered_scenario(name)
        assert not r.of_kind("Gateway") and not r.of_kind("GRPCRoute")


def _routed_services(r):
    out = set()
    for route in r.of_kind("GRPCRoute"):
        out |= {m["method"]["service"] for rule in route.obj["spec"]["rules"] for m in rule["matches"]}
    for vs in r.of_kind("VirtualService"):
        if "mesh" not in (vs.obj["spec"].get("gateways") or ["mesh"]):
            out |= {m["uri"]["exact"].split("/")[1] for h in vs.obj["spec"]["http"] for m in h["match"]}
    return out


PUBLIC_GRPC = {"talentshare.order.v1.OrderService", "talentshare.reservation.v1.ReservationService", "talentshare.mypage.v1.MyPageService"}


def test_ingress_with_gateway_api_renders_a_grpcroute():
    r = chart.render(chart.with_required({"ingress": INGRESS}), api_versions=chart.ISTIO_APIS + chart.GATEWAY_APIS)
    (gw,) = r.of_kind("Gateway")
    assert gw.obj["apiVersion"] == "gateway.networking.k8s.io/v1"
    (listener,) = gw.obj["spec"]["listeners"]
    assert listener["hostname"] == INGRESS["host"] and listener["tls"]["certificateRefs"][0]["name"] == "api-tls"
    assert len(r.of_kind("GRPCRoute")) == 1
    assert _routed_services(r) == PUBLIC_GRPC  # never PaymentService, reflection or health
    ra = next(ra for ra in r.of_kind("RequestAuthentication") if ra.obj["spec"].get("targetRefs"))
    assert ra.obj["spec"]["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gw.name}]
    gateway_principal = f"cluster.local/ns/{r.namespace}/sa/{gw.name}-istio"
    order_ap = r.get("AuthorizationPolicy", "talentshare-order").obj
    assert gateway_principal in order_ap["spec"]["rules"][0]["from"][0]["source"]["principals"]
    assert not any(gateway_principal in str(rule) for rule in r.get("AuthorizationPolicy", "talentshare-payment").obj["spec"]["rules"])
    assert crossref.check_ingress(r) == [] and crossref.check_principals(r) == []
    assert crd_and_core_findings(r) == []  # Gateway API 1.5.1 CRD schemas and CEL rules


def test_ingress_without_gateway_api_renders_an_istio_gateway():
    r = chart.render(chart.with_required({"ingress": INGRESS}), api_versions=chart.ISTIO_APIS)
    (gw,) = r.of_kind("Gateway")
    assert gw.obj["apiVersion"] == "networking.istio.io/v1"
    assert gw.obj["spec"]["servers"][0]["tls"] == {"mode": "SIMPLE", "credentialName": "api-tls"}
    assert not r.of_kind("GRPCRoute")
    vs = r.get("VirtualService", gw.name).obj
    assert vs["spec"]["gateways"] == [gw.name] and vs["spec"]["hosts"] == [INGRESS["host"]]
    assert _routed_services(r) == PUBLIC_GRPC
    ra = next(ra for ra in r.of_kind("RequestAuthentication") if ra.namespace == "istio-system")
    assert ra.obj["spec"]["selector"]["matchLabels"] == {"istio": "ingressgateway"}
    assert crossref.check_ingress(r) == [] and crossref.check_retries(r) == []
    assert crd_and_core_findings(r) == []


def test_ingress_defects_are_reported():
    r = chart.render(chart.with_required({"ingress": INGRESS}), api_versions=chart.ISTIO_APIS + chart.GATEWAY_APIS)
    route = r.of_kind("GRPCRoute")[0].obj
    route["spec"]["rules"][0]["matches"].append({"method": {"type": "Exact", "service": "talentshare.payment.v1.PaymentService", "method": "Pay"}})
    route["spec"]["rules"][1]["matches"].append({"method": {"type": "Exact", "service": "grpc.reflection.v1.ServerReflection", "method": "ServerReflectionInfo"}})
    findings = "\n".join(crossref.check_ingress(r))
    assert "exposes /talentshare.payment.v1.PaymentService/Pay" in findings
    assert "exposes /grpc.reflection.v1.ServerReflection/ServerReflectionInfo" in findings


def test_ingress_needs_a_host_and_tls():
    assert "ingress.host is required" in render_error(chart.with_required({"ingress": {"enabled": True}}))
    assert "ingress.tlsSecretName is required" in render_error(chart.with_required({"ingress": {"enabled": True, "host": "a.example"}}))


def test_jwks_uri_cel_rule_is_evaluated():
    """The RequestAuthentication CRD's `url(self).getScheme()` rule runs (Kubernetes' CEL URL
    library, provided to cel-python), so a non-http(s) jwksUri is refused."""
    ra = rendered_scenario("mesh").of_kind("RequestAuthentication")[0].obj
    bad = yaml.safe_load(yaml.safe_dump(ra))
    bad["spec"]["jwtRules"][0]["jwksUri"] = "ftp://auth.talentshare.example/jwks"
    assert any("scheme" in f for f in istio.validate(bad))
    assert istio.validate(ra) == []


def test_chart_broker_users_are_the_ones_talentshare_topology_grants():
    """The example URLs name exactly the users whose permissions
    `talentshare topology --print-permissions` prints, so an operator who follows the
    tool and the chart gets pods whose users hold those permissions."""
    import subprocess
    from urllib.parse import urlsplit

    from deploycheck import binaries

    talentshare = binaries.path("talentshare")
    if not talentshare.exists():
        pytest.skip(f"{talentshare} is not built")
    printed = subprocess.run(
        [str(talentshare), "topology", "--print-permissions", "/"],
        capture_output=True, text=True, check=True,
    ).stdout
    granted = set(re.findall(r"^rabbitmqctl set_permissions -p / (\S+) ", printed, re.M))
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    urls = values["connections"]["amqpUrls"]
    users = {svc: urlsplit(url).username for svc, url in urls.items() if svc != "admin"}
    assert set(users) == PUBLIC | {"payment"}
    assert set(users.values()) == granted, (users, granted)
    for svc, user in users.items():
        assert user == f"{svc}-svc", f"{svc} connects as {user}"


# --- the metrics port under Istio ---------------------------------------------------------


METRICS_PORT = 9464


@pytest.mark.parametrize("scenario_name", ["mesh", "production"])
def test_only_prometheus_reaches_the_metrics_port(scenario_name):
    """Every kind of caller (the gateway, each service, the helm test identity, another
    account in Prometheus' namespace, a Prometheus-named account elsewhere, plaintext),
    every method and path, against Istio's evaluation of the rendered policies: on the
    metrics port only Prometheus' identity, and only GET /metrics, gets through; on the
    gRPC port Prometheus gets nothing."""
    r = rendered_scenario(scenario_name)
    assert crossref.check_metrics_access(r) == []
    probed = 0
    for w in crossref.workloads(r):
        decide = crossref.Authorizer(r, w)
        for req in crossref.probe_requests(r, w):
            allowed = decide(req)
            if req.port == METRICS_PORT:
                assert allowed == (req.principal == PROMETHEUS and req.method == "GET" and req.path == "/metrics"), (w.ref, req)
            elif req.principal == PROMETHEUS:
                assert not allowed, (w.ref, req)
            probed += 1
    assert probed > 1000


def test_metrics_do_not_widen_the_grpc_port():
    """The gRPC port decides every probe request exactly as it did before the metrics
    port existed (the same render with metrics.enabled=false)."""
    on = rendered_scenario("mesh")
    off = chart.render(chart.with_required({"metrics": {"enabled": False}}), api_versions=chart.ISTIO_APIS)
    assert len(off.of_kind("AuthorizationPolicy")) == len(on.of_kind("AuthorizationPolicy")) - 1
    for w_on in crossref.workloads(on):
        (w_off,) = [w for w in crossref.workloads(off) if w.item.name == w_on.item.name]
        decide_on, decide_off = crossref.Authorizer(on, w_on), crossref.Authorizer(off, w_off)
        for req in crossref.probe_requests(on, w_on):
            if req.port == w_on.grpc_port():
                assert decide_on(req) == decide_off(req), (w_on.ref, req)
    # And the gRPC rules themselves are the same rules.
    for ap_off in off.of_kind("AuthorizationPolicy"):
        rules_on = [rule for rule in on.get("AuthorizationPolicy", ap_off.name).obj["spec"].get("rules") or [] if not crossref.is_metrics_rule(on, rule)]
        assert rules_on == (ap_off.obj["spec"].get("rules") or []), ap_off.ref


@pytest.mark.parametrize(
    "widen,expected",
    [
        (lambda r: r.items.remove(r.get("AuthorizationPolicy", "talentshare-metrics")), "on the metrics port from cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"),
        (
            lambda r: (
                r.items.remove(r.get("AuthorizationPolicy", "talentshare-metrics")),
                _metrics_rule(r, "order")["from"][0]["source"].update(principals=[PROMETHEUS, "cluster.local/ns/monitoring/sa/grafana"]),
            ),
            "allows GET /metrics on the metrics port from cluster.local/ns/monitoring/sa/grafana",
        ),
        (
            lambda r: r.get("AuthorizationPolicy", "talentshare-metrics").obj["spec"]["rules"][0]["from"][0]["source"].update(notPrincipals=["cluster.local/ns/monitoring/sa/*"]),
            "",  # the ALLOW rule still admits Prometheus alone: no access widened, but ...
        ),
        (lambda r: _metrics_rule(r, "payment")["to"][0]["operation"].pop("ports"), "allows GET /metrics on the gRPC port from Prometheus"),
        (
            lambda r: (
                r.get("AuthorizationPolicy", "talentshare-metrics").obj["spec"]["rules"].pop(2),
                _metrics_rule(r, "reservation")["to"][0]["operation"].update(paths=["*"]),
            ),
            f"allows GET /debug on the metrics port from {PROMETHEUS}",
        ),
    ],
    ids=["no-deny-policy", "grafana-too-without-deny", "deny-for-a-whole-namespace", "metrics-rule-without-port", "any-path-without-deny"],
)
def test_widening_the_metrics_port_is_reported(widen, expected):
    r = rendered_scenario("mesh").copy()
    widen(r)
    findings = crossref.check_metrics_access(r)
    if expected:
        assert any(expected in f for f in findings), "\n".join(findings) or "no findings"
    else:
        # Defence in depth holds: the ALLOW side still admits only Prometheus.
        assert findings == []


def _metrics_rule(r, service):
    ap = r.get("AuthorizationPolicy", f"talentshare-{service}").obj
    return next(rule for rule in ap["spec"]["rules"] if crossref.is_metrics_rule(r, rule))


def test_network_policies_admit_only_prometheus_to_the_metrics_port():
    for name in ("default", "mesh", "production"):
        r = rendered_scenario(name)
        assert crossref.check_metrics_network(r) == [], name
        for np in r.of_kind("NetworkPolicy"):
            (rule,) = [x for x in np.obj["spec"]["ingress"] if any(p["port"] == "http-metrics" for p in x["ports"])]
            assert rule["from"] == [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                }
            ]
    r = rendered_scenario("default").copy()
    rule = next(x for x in r.of_kind("NetworkPolicy")[0].obj["spec"]["ingress"] if x["ports"][0]["port"] == "http-metrics")
    del rule["from"][0]["podSelector"]  # the whole monitoring namespace
    r.of_kind("NetworkPolicy")[1].obj["spec"]["ingress"].append({"from": [{"namespaceSelector": {}}]})  # every port from anywhere
    findings = "\n".join(crossref.check_metrics_network(r))
    assert "to the metrics port; only" in findings and "admits every port, the metrics port included" in findings


def test_prometheus_identity_and_selectors_come_from_values():
    values = {
        "istio": {"enabled": True, "trustDomain": "corp.internal"},
        "metrics": {"port": 9100, "prometheus": {"namespace": "observability", "serviceAccount": "prom", "podLabels": {"app": "prom"}}},
    }
    r = chart.render(chart.with_required(values))
    assert crossref.check_metrics_access(r) == [] and crossref.check_metrics_network(r) == [] and crossref.check_principals(r) == []
    rule = _metrics_rule(r, "mypage")
    assert rule["from"] == [{"source": {"principals": ["corp.internal/ns/observability/sa/prom"]}}]
    assert rule["to"] == [{"operation": {"ports": ["9100"], "methods": ["GET"], "paths": ["/metrics"]}}]
    deny = r.get("AuthorizationPolicy", "talentshare-metrics").obj["spec"]
    assert deny["action"] == "DENY" and deny["rules"][0]["from"][0]["source"]["notPrincipals"] == ["corp.internal/ns/observability/sa/prom"]
    assert crd_and_core_findings(r) == []
