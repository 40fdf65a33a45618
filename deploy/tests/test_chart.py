"""The chart renders, lints clean (strict), and its values schema rejects bad values."""
import subprocess
import sys

import helm_python as helm
import pytest

from conftest import rendered_scenario
from deploycheck import chart
from deploycheck.paths import CHART, ROOT

PER_SERVICE = ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "NetworkPolicy"]
# AuthorizationPolicies: deny-all, the metrics port's DENY, one ALLOW per service.
ISTIO = {"DestinationRule": 4, "VirtualService": 4, "PeerAuthentication": 1, "AuthorizationPolicy": 6, "RequestAuthentication": 3}
MONITORING = {"ServiceMonitor": 1, "PrometheusRule": 1}


def count(r, kind, hooks=False):
    """Objects of `kind` (hooks or not); the Grafana dashboard's ConfigMap is no service's."""
    return len([i for i in r.of_kind(kind) if i.is_hook == hooks and not i.name.endswith("-dashboard")])


def test_default_render_has_the_core_objects():
    r = rendered_scenario("default")
    for kind in PER_SERVICE:
        assert count(r, kind) == 4, kind
    assert count(r, "ServiceAccount") == 5  # one per service, one for the helm test Pods
    assert count(r, "Secret") == 1  # DATABASE_URL and AMQP_URL per service, from values
    assert count(r, "Secret", hooks=True) == 1  # the admin broker URL, for the topology Job only
    assert count(r, "Job", hooks=True) == 1  # talentshare topology
    assert count(r, "Pod", hooks=True) == 4  # helm test: talentshare probe per service
    for kind in ISTIO:
        assert count(r, kind) == 0, "no Istio resources where the cluster does not serve Istio's APIs"
    for kind in MONITORING:
        assert count(r, kind) == 0, "no ServiceMonitor/PrometheusRule where the cluster does not serve them"
    assert [i.name for i in r.of_kind("ConfigMap") if i.name.endswith("-dashboard")] == ["talentshare-dashboard"]
    hpa = r.of_kind("HorizontalPodAutoscaler")[0].obj
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 50


def test_production_render_has_the_mesh_policy():
    r = rendered_scenario("production")
    for kind in PER_SERVICE + ["NetworkPolicy"]:
        assert count(r, kind) == 4, kind
    # Plus the ingress (Istio Gateway: `helm template` reports no Gateway API): its
    # VirtualService and the RequestAuthentication at the gateway.
    for kind, n in (ISTIO | MONITORING | {"VirtualService": 5, "RequestAuthentication": 4, "Gateway": 1}).items():
        assert count(r, kind) == n, kind
    assert count(r, "ServiceAccount") == 5
    assert count(r, "Secret") == 0, "production uses connections.existingSecret"
    assert count(r, "Secret", hooks=True) == 0, "the topology Job reads the existing Secret"
    pa = r.of_kind("PeerAuthentication")[0].obj
    assert pa["spec"] == {"mtls": {"mode": "STRICT"}} and "selector" not in pa["spec"]


@pytest.mark.parametrize("values", ["default", "production"])
def test_helm_lint_strict_is_clean(values):
    report = chart.lint(chart.load_values(values))
    assert report["total_charts_linted"] == 1
    assert chart.lint_findings(report) == []


def test_helm_lint_strict_reports_a_broken_template(tmp_path):
    """The lint check can fail: a copy of the chart with a template error."""
    broken = tmp_path / "talentshare"
    subprocess.run(["cp", "-r", str(CHART), str(broken)], check=True)
    (broken / "templates" / "broken.yaml").write_text("kind: ConfigMap\n{{ .Values.nope.deeper }}\n")
    report = helm.lint(str(broken), None, strict=True, kube_version=chart.KUBE_VERSION)
    assert any("nil pointer" in f or "nope" in f for f in chart.lint_findings(report))


@pytest.mark.parametrize("scenario_name", ["default", "production"])
def test_notes_explain_grpcurl(scenario_name):
    r = rendered_scenario(scenario_name)
    assert "grpcurl -plaintext" in r.notes and "grpc.health.v1.Health/Check" in r.notes
    for svc in r.of_kind("Service"):
        assert f"{svc.name}.{r.namespace}.svc.cluster.local:" in r.notes


def test_values_schema_is_generated_from_its_source():
    done = subprocess.run([sys.executable, str(ROOT / "deploy" / "gen_values_schema.py"), "--check"])
    assert done.returncode == 0, "values.schema.json is stale: run .venv/bin/python deploy/gen_values_schema.py"


BAD_VALUES = {
    "unknown top-level key": {"replicas": 3},
    "port out of range": {"services": {"payment": {"port": 70000}}},
    "port as a string": {"services": {"order": {"port": "50051"}}},
    "root user": {"podSecurityContext": {"runAsUser": 0}},
    "secret setting in config": {"config": {"DATABASE_URL": "postgres://x@y/z"}},
    "chart-owned setting in a service config": {"services": {"order": {"config": {"PAYMENT_URL": "http://x:1"}}}},
    "lower-case env name": {"config": {"rust_log": "debug"}},
    "database URL not postgres": {"connections": {"databaseUrls": {"order": "mysql://x@y/z"}}},
    "one broker URL for all (the old key)": {"connections": {"amqpUrl": "amqp://u:p@rabbitmq:5672/%2f"}},
    "broker URL not amqp": {"connections": {"amqpUrls": {"admin": "http://rabbitmq:15672"}}},
    "auth setting in config": {"config": {"AUTH_ISSUER": "https://x"}},
    "topology declaration in a service config": {"services": {"order": {"config": {"AMQP_DECLARE_TOPOLOGY": "true"}}}},
    "jwksUri not a URL": {"auth": {"jwksUri": "/etc/jwks.json"}},
    "istio.enabled neither auto nor a bool": {"istio": {"enabled": "yes"}},
    "unknown ingress API": {"ingress": {"api": "nginx"}},
    "egress port out of range": {"networkPolicy": {"egress": {"postgresql": {"ports": [0]}}}},
    "missing database URL without existingSecret": {"connections": {"databaseUrls": {"mypage": ""}}},
    "HPA CPU target over 100": {"autoscaling": {"targetCPUUtilizationPercentage": 150}},
    "unknown payment method for a caller": {"istio": {"authorization": {"paymentCallers": {"order": ["Pay", "Charge"]}}}},
    "unknown payment caller": {"istio": {"authorization": {"paymentCallers": {"mypage": ["Pay"]}}}},
    "malformed route timeout": {"istio": {"routes": {"read": {"timeout": "5 seconds"}}}},
    "negative retry attempts": {"istio": {"routes": {"read": {"retries": {"attempts": -1}}}}},
    "malformed ingress principal": {"istio": {"authorization": {"ingressPrincipals": ["istio-ingressgateway"]}}},
    "bad image pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "metrics port one of Istio's": {"metrics": {"port": 15020}},
    "serviceMonitor.enabled neither auto nor a bool": {"metrics": {"serviceMonitor": {"enabled": "yes"}}},
    "scrape interval not a Prometheus duration": {"metrics": {"serviceMonitor": {"interval": "30 seconds"}}},
    "error ratio over 1": {"metrics": {"prometheusRule": {"alerts": {"errorRatio": {"ratio": 5}}}}},
    "unknown alert": {"metrics": {"prometheusRule": {"alerts": {"diskFull": {"enabled": True}}}}},
    "alert label overriding severity": {"metrics": {"prometheusRule": {"alertLabels": {"severity": "page"}}}},
    "METRICS_ADDR in config": {"config": {"METRICS_ADDR": "0.0.0.0:9000"}},
    "Prometheus namespace not a DNS label": {"metrics": {"prometheus": {"namespace": "Monitoring"}}},
}


@pytest.mark.parametrize("values", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_values_schema_rejects(values):
    with helm.Chart.load(str(CHART)) as c:
        with pytest.raises(helm.HelmValuesError):
            c.validate_schema(values)
        with pytest.raises(helm.HelmValuesError):
            c.render(values, name=chart.RELEASE, namespace=chart.NAMESPACE)


@pytest.mark.parametrize("values", ["default", "production"])
def test_values_schema_accepts(values):
    with helm.Chart.load(str(CHART)) as c:
        c.validate_schema(chart.load_values(values))


TOGGLES = {
    "no-autoscaling": {"autoscaling": {"enabled": False}, "services": {"payment": {"replicaCount": 3}}},
    "no-pdb-no-tests": {"podDisruptionBudget": {"enabled": False}, "tests": {"enabled": False}},
    "min-available-percent": {"podDisruptionBudget": {"minAvailable": "50%"}},
    "no-network-policies": {"networkPolicy": {"enabled": False}},
    "one-replica": {"autoscaling": {"enabled": False}, "replicaCount": 1},
    "jwks-configmap": {"auth": {"jwksUri": "", "jwksConfigMap": "talentshare-jwks"}, "istio": {"enabled": False}},
    "existing-secret": {"connections": {"existingSecret": "talentshare-connections"}},
    "ingress-gateway-api-forced": {
        "ingress": {"enabled": True, "api": "gateway-api", "host": "api.talentshare.example", "tlsSecretName": "api-tls"}
    },
    "ingress-istio-forced": {
        "istio": {"enabled": True},
        "ingress": {"enabled": True, "api": "istio", "host": "api.talentshare.example", "tlsSecretName": "api-tls"},
    },
    "istio-without-authz": {"istio": {"enabled": True, "authorization": {"enabled": False}, "peerAuthentication": {"enabled": False}}},
    "metrics-off": {"metrics": {"enabled": False}},
    "monitoring-forced-on-another-port": {
        "metrics": {
            "port": 9100,
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True, "alerts": {"scrapeFailing": {"enabled": False}}},
            "dashboard": {"namespace": "monitoring"},
        },
        "istio": {"enabled": True},
    },
    "tracing-to-a-pinned-collector": {
        "tracing": {"otlpEndpoint": "http://10.20.1.7:55680"},
        "networkPolicy": {"egress": {"otlp": {"ports": [55680], "to": [{"ipBlock": {"cidr": "10.20.1.7/32"}}]}}},
        "istio": {"enabled": True},
    },
    "image-digest-and-names": {
        "image": {"digest": "sha256:" + "a" * 64},
        "fullnameOverride": "ts",
        "clusterDomain": "corp.internal",
        "istio": {"enabled": True, "trustDomain": "corp.internal"},
    },
}


@pytest.mark.parametrize("values", list(TOGGLES.values()), ids=list(TOGGLES))
def test_toggles_render_valid_consistent_objects(values):
    """Each toggle renders, lints clean, and passes the schema and static cross-checks."""
    from deploycheck import crossref, schemas

    values = chart.with_required(values)
    r = chart.render(values)
    findings = [f for i in r.items for f in schemas.validate(i)]
    for check in (
        crossref.check_ports,
        crossref.check_shutdown,
        crossref.check_security,
        crossref.check_workload_refs,
        crossref.check_payment_url,
        crossref.check_istio_hosts,
        crossref.check_principals,
        crossref.check_traffic_policy,
        crossref.check_retries,
        crossref.check_broker_users,
        crossref.check_ingress,
        crossref.check_metrics,
        crossref.check_metrics_network,
        crossref.check_metrics_access,
        crossref.check_alert_rules,
        crossref.check_tracing,
    ):
        findings += check(r)
    findings += crossref.check_env(r, {})
    findings += crossref.check_test_hooks(r, {})
    assert findings == []
    assert chart.lint_findings(chart.lint(values)) == []
