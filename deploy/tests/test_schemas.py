"""Every rendered object is valid: core objects against the Kubernetes 1.33 schemas in
strict mode, Istio objects against their Istio 1.30 CRD schemas (unknown fields rejected)
plus their CEL rules and the istiod webhook rules the checks know, ServiceMonitor and
PrometheusRule against the Prometheus Operator's API types (test_observability.py)."""
import pytest

from conftest import rendered_scenario
from deploycheck import chart, istio, k8s, monitoring

KINDS = {"DestinationRule", "VirtualService", "PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication"}
INGRESS_KINDS = {"Gateway", "GRPCRoute"}  # Istio's Gateway and the Gateway API's Gateway/GRPCRoute


def test_core_objects_are_valid_kubernetes_1_33(rendered):
    findings = []
    checked = 0
    for item in rendered.items:
        if not (item.is_crd_kind or item.is_monitoring):
            findings += k8s.validate_core(item.obj)
            checked += 1
    assert checked >= 25
    assert findings == []


@pytest.mark.parametrize("values", ["production", "mesh", "mesh+gateway-api"])
def test_istio_objects_are_valid_istio_1_30(values):
    if values == "mesh+gateway-api":
        r = chart.render(
            chart.with_required({"ingress": {"enabled": True, "host": "api.talentshare.example", "tlsSecretName": "api-tls"}}),
            api_versions=chart.ISTIO_APIS + chart.GATEWAY_APIS,
        )
    else:  # production; the default values where Istio's APIs are served (= istio/talentshare.yaml)
        r = rendered_scenario(values)
    items = [i for i in r.items if i.is_crd_kind]
    want = KINDS | ({"Gateway"} if values == "production" else INGRESS_KINDS if values != "mesh" else set())
    assert {i.kind for i in items} == want
    findings = [f for i in items for f in istio.validate(i.obj)]
    assert findings == []


def test_every_rendered_object_has_a_schema(rendered):
    for item in rendered.items:
        if item.is_crd_kind:
            assert istio.is_istio_kind(item.obj["apiVersion"], item.kind), item.ref
        elif item.is_monitoring:
            assert monitoring.has_schema(item.obj["apiVersion"], item.kind), item.ref
        else:
            assert not any("no Kubernetes" in f for f in k8s.validate_core(item.obj)), item.ref


def test_cel_rules_of_the_rendered_kinds_all_compile():
    """Coverage: cel-python compiles every x-kubernetes-validations rule of the CRDs the
    chart renders (transition rules with oldSelf excepted; the Istio CRDs have none)."""
    rules = istio.all_rules(KINDS)
    assert len(rules) > 100
    assert not any("oldSelf" in r for r in rules)
    assert istio.uncovered_rules(KINDS | INGRESS_KINDS) == []


def test_cel_rules_are_evaluated_on_the_rendered_objects(rendered):
    """The CEL pass is not vacuous: rules sit on paths the chart fills (durations,
    selectors), and each of those evaluations passes."""
    evaluated = 0
    for item in rendered.items:
        if not item.is_crd_kind:
            continue
        schema = istio.crds()[(item.obj["apiVersion"], item.kind)]
        for path, node, value in istio._walk(schema, item.obj, ""):
            evaluated += len(node.get("x-kubernetes-validations") or [])
        assert istio.failed_cel_rules(schema, item.obj) == []
    if rendered.of_kind("DestinationRule"):
        assert evaluated >= 20
