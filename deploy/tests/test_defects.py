"""Seeded defects: each one, planted in the production-like render (or its values), must
make the checks report it. This is what shows the checks can fail."""
from __future__ import annotations

import copy
from typing import Any, Callable

import pytest

from conftest import SCENARIOS, all_findings, rendered_scenario
from deploycheck import chart


def item(r, kind, service):
    """The rendered object of `kind` for one service (its name ends with -<service>)."""
    found = [i for i in r.of_kind(kind) if i.name.endswith(f"-{service}") and not i.is_hook]
    assert len(found) == 1, (kind, service, [i.name for i in r.of_kind(kind)])
    return found[0].obj


def container(r, service):
    return item(r, "Deployment", service)["spec"]["template"]["spec"]["containers"][0]


def route(r, service, name):
    return next(x for x in item(r, "VirtualService", service)["spec"]["http"] if x["name"] == name)


def payment_rules(r):
    return item(r, "AuthorizationPolicy", "payment")["spec"]["rules"]


def deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# (id, mutation of the rendered release, text the findings must contain)
RENDERED_DEFECTS: list[tuple[str, Callable[[Any], None], str]] = [
    (
        "misspelled-probe-field",
        lambda r: container(r, "payment")["readinessProbe"]["grpc"].update(prot=50052),
        "'prot' was unexpected",
    ),
    (
        "service-port-wrong-type",
        lambda r: item(r, "Service", "order")["spec"]["ports"][0].update(port="50051"),
        "'50051' is not of type 'integer'",
    ),
    (
        "misspelled-destinationrule-field",
        lambda r: item(r, "DestinationRule", "payment")["spec"]["trafficPolicy"]["connectionPool"]["http"].update(
            http2MaxRequest=100
        ),
        "'http2MaxRequest' was unexpected",
    ),
    (
        "virtualservice-attempts-wrong-type",
        lambda r: route(r, "order", "read")["retries"].update(attempts="3"),
        "'3' is not of type 'integer'",
    ),
    (
        "cel-zero-ejection-interval",
        lambda r: item(r, "DestinationRule", "payment")["spec"]["trafficPolicy"]["outlierDetection"].update(interval="0s"),
        "must be a valid duration greater than 1ms",
    ),
    (
        "cel-selector-and-targetref",
        lambda r: item(r, "AuthorizationPolicy", "payment")["spec"].update(targetRef={"kind": "Service", "name": "x"}),
        "only one of targetRefs or selector can be set",
    ),
    (
        "unknown-destinationrule-host",
        lambda r: item(r, "DestinationRule", "payment")["spec"].update(
            host="talentshare-paymnt.talentshare-prod.svc.cluster.local"
        ),
        "is not a rendered Service",
    ),
    (
        "virtualservice-wrong-destination-port",
        lambda r: route(r, "order", "read")["route"][0]["destination"]["port"].update(number=50099),
        "port 50099 is not a port of Service/talentshare-order",
    ),
    (
        "principal-typo",
        lambda r: payment_rules(r)[0]["from"][0]["source"].update(
            principals=["cluster.local/ns/talentshare-prod/sa/talentshare-ordr"]
        ),
        "is not a rendered ServiceAccount",
    ),
    (
        "principal-wrong-namespace",
        lambda r: payment_rules(r)[0]["from"][0]["source"].update(principals=["cluster.local/ns/default/sa/talentshare-order"]),
        "is not in namespace talentshare-prod",
    ),
    (
        "public-caller-allowed-to-payment",
        lambda r: payment_rules(r)[0]["from"][0]["source"]["principals"].append(
            "cluster.local/ns/istio-ingress/sa/istio-ingressgateway"
        ),
        "only order-svc and reservation-svc may",
    ),
    (
        "payment-method-typo",
        lambda r: payment_rules(r)[0]["to"][0]["operation"].update(paths=["/talentshare.payment.v1.PaymentService/Pai"]),
        "PaymentService has no method Pai",
    ),
    (
        "payment-wildcard-path",
        lambda r: payment_rules(r)[0]["to"][0]["operation"].update(paths=["/talentshare.payment.v1.PaymentService/*"]),
        "is a wildcard",
    ),
    (
        "deny-by-default-missing",
        lambda r: r.items.remove(next(i for i in r.items if i.name.endswith("-deny-all"))),
        "no deny-by-default",
    ),
    (
        "probe-port-mismatch",
        lambda r: container(r, "payment")["readinessProbe"]["grpc"].update(port=50099),
        "readinessProbe port 50099 is not the grpc containerPort 50052",
    ),
    (
        "service-targetport-typo",
        lambda r: item(r, "Service", "payment")["spec"]["ports"][0].update(targetPort="grcp"),
        "targetPort 'grcp' resolves to None",
    ),
    (
        "readiness-name-typo",
        lambda r: container(r, "payment")["readinessProbe"]["grpc"].update(service="talentshare.payment.v1.PaymentSvc"),
        "reports readiness as 'talentshare.payment.v1.PaymentService'",
    ),
    (
        "liveness-asks-a-service",
        lambda r: container(r, "payment")["livenessProbe"]["grpc"].update(service="talentshare.payment.v1.PaymentService"),
        "liveness must ask",
    ),
    (
        "unknown-env-var",
        lambda r: item(r, "ConfigMap", "payment")["data"].update(OUTBOX_POLL_INTERVALL="2s"),
        "env OUTBOX_POLL_INTERVALL (from ConfigMap/talentshare-payment key OUTBOX_POLL_INTERVALL) is not a setting payment-svc accepts",
    ),
    (
        "database-url-in-configmap",
        lambda r: (
            item(r, "ConfigMap", "payment")["data"].update(DATABASE_URL="postgres://u:p@db/x"),
            container(r, "payment").update(env=[e for e in container(r, "payment")["env"] if e["name"] != "DATABASE_URL"]),
        ),
        "DATABASE_URL comes from ConfigMap/talentshare-payment key DATABASE_URL, not from a Secret",
    ),
    (
        "grace-period-shorter-than-drain",
        lambda r: item(r, "Deployment", "payment")["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=20),
        "terminationGracePeriodSeconds 20 does not exceed",
    ),
    (
        "payment-url-to-wrong-service",
        lambda r: item(r, "ConfigMap", "order")["data"].update(
            PAYMENT_URL="http://talentshare-mypage.talentshare-prod.svc.cluster.local:50054"
        ),
        "PAYMENT_URL reaches ['mypage-svc'], not payment-svc",
    ),
    (
        "helm-test-wrong-service-name",
        lambda r: next(i for i in r.items if i.name == "talentshare-payment-test").obj["spec"]["containers"][0]["args"].__setitem__(
            4, "talentshare.payment.v1.Payment"
        ),
        "is not payment-svc's readiness name",
    ),
    (
        "writable-root-filesystem",
        lambda r: container(r, "order")["securityContext"].update(readOnlyRootFilesystem=False),
        "readOnlyRootFilesystem is not true",
    ),
    (
        "retries-on-catch-all-route",
        lambda r: route(r, "order", "other").update(retries={"attempts": 2, "retryOn": "unavailable"}),
        "retries 2x on a route that matches every method",
    ),
    (
        "retries-on-stream",
        lambda r: route(r, "mypage", "stream").update(retries={"attempts": 2, "retryOn": "unavailable"}),
        "WatchMyPage which is not safe to retry",
    ),
    (
        "retryon-typo",
        lambda r: route(r, "payment", "idempotent")["retries"].update(retryOn="unavailble,cancelled"),
        "'unavailble' is not a valid retryOn policy",
    ),
    (
        "disabled-retries-with-policy",
        lambda r: route(r, "order", "other")["retries"].update(retryOn="unavailable"),
        "http retry policy configured when attempts are set to 0",
    ),
    (
        "one-request-per-connection",
        lambda r: item(r, "DestinationRule", "order")["spec"]["trafficPolicy"]["connectionPool"]["http"].update(
            maxRequestsPerConnection=1
        ),
        "maxRequestsPerConnection: 1 defeats HTTP/2 multiplexing",
    ),
    (
        "payment-not-the-tightest",
        lambda r: item(r, "DestinationRule", "payment")["spec"]["trafficPolicy"]["outlierDetection"].update(
            consecutiveGatewayErrors=50
        ),
        "DestinationRule in front of payment is looser",
    ),
    (
        "public-rule-without-request-principal",
        lambda r: item(r, "AuthorizationPolicy", "order")["spec"]["rules"][0]["from"][0]["source"].pop("requestPrincipals"),
        "allowed without an end-user JWT",
    ),
    (
        "manager-methods-without-the-claim",
        lambda r: next(x for x in item(r, "AuthorizationPolicy", "reservation")["spec"]["rules"] if x.get("when")).pop("when"),
        "allowed without the manager role claim",
    ),
    (
        "request-principal-of-another-issuer",
        lambda r: item(r, "AuthorizationPolicy", "mypage")["spec"]["rules"][0]["from"][0]["source"].update(
            requestPrincipals=["https://evil.example/*"]
        ),
        "is not one of auth.issuer",
    ),
    (
        "retry-on-resource-exhausted",
        lambda r: route(r, "payment", "read")["retries"].update(retryOn="unavailable,resource-exhausted"),
        "retryOn has resource-exhausted",
    ),
    (
        "service-connects-as-admin",
        lambda r: next(e for e in container(r, "order")["env"] if e["name"] == "AMQP_URL")["valueFrom"]["secretKeyRef"].update(
            key="admin-amqp-url"
        ),
        "not its own broker user's order-amqp-url",
    ),
    (
        "ingress-routes-payment",
        lambda r: next(i for i in r.of_kind("VirtualService") if i.name.endswith("-ingress")).obj["spec"]["http"][0]["match"].append(
            {"uri": {"exact": "/talentshare.payment.v1.PaymentService/Pay"}}
        ),
        "exposes /talentshare.payment.v1.PaymentService/Pay",
    ),
    (
        "metrics-addr-off-the-metrics-port",
        lambda r: item(r, "ConfigMap", "order")["data"].update(METRICS_ADDR="0.0.0.0:9465"),
        "is not 0.0.0.0:<the http-metrics containerPort 9464>",
    ),
    (
        "service-monitor-scrapes-another-port",
        lambda r: r.of_kind("ServiceMonitor")[0].obj["spec"]["endpoints"][0].update(port="metrics"),
        "endpoints scrape ports ['metrics']",
    ),
    (
        "service-monitor-plaintext-under-strict-mtls",
        lambda r: r.of_kind("ServiceMonitor")[0].obj["spec"]["endpoints"][0].update(scheme="http"),
        "under STRICT mTLS",
    ),
    (
        "service-monitor-misspelled-field",
        lambda r: r.of_kind("ServiceMonitor")[0].obj["spec"]["endpoints"][0].update(scrapeTimout="10s"),
        "scrapeTimout: unknown field",
    ),
    (
        "metrics-port-open-to-the-gateway",
        lambda r: r.items.remove(r.get("AuthorizationPolicy", "talentshare-metrics")),
        "on the metrics port from cluster.local/ns/istio-ingress/sa/istio-ingressgateway",
    ),
    (
        "metrics-port-open-to-a-namespace",
        lambda r: item(r, "NetworkPolicy", "payment")["spec"]["ingress"][1]["from"][0].pop("podSelector"),
        "to the metrics port; only",
    ),
    (
        "alert-reads-every-namespace",
        lambda r: r.of_kind("PrometheusRule")[0].obj["spec"]["groups"][0]["rules"][0].update(
            expr="max by (namespace, job) (outbox_oldest_event_age_seconds) > 120"
        ),
        "is not scoped to namespace talentshare-prod",
    ),
    (
        "alert-without-runbook",
        lambda r: r.of_kind("PrometheusRule")[0].obj["spec"]["groups"][0]["rules"][2]["annotations"].pop("runbook"),
        "no runbook annotation",
    ),
    (
        "alert-for-not-a-duration",
        lambda r: r.of_kind("PrometheusRule")[0].obj["spec"]["groups"][0]["rules"][1].update({"for": "10 minutes"}),
        "should match pattern",
    ),
    (
        "configmap-drops-otlp-endpoint",
        lambda r: item(r, "ConfigMap", "reservation")["data"].pop("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "OTEL_EXPORTER_OTLP_ENDPOINT is not set, though tracing.otlpEndpoint is http://otel-collector.observability:4317",
    ),
    (
        "egress-to-the-collector-missing",
        lambda r: item(r, "NetworkPolicy", "payment")["spec"].update(
            egress=[x for x in item(r, "NetworkPolicy", "payment")["spec"]["egress"] if x["ports"] != [{"port": 4317, "protocol": "TCP"}]]
        ),
        "NetworkPolicy/talentshare-payment: no egress rule lets TCP 4317 out to the OTLP collector",
    ),
    (
        "hpa-targets-missing-deployment",
        lambda r: item(r, "HorizontalPodAutoscaler", "mypage")["spec"]["scaleTargetRef"].update(name="talentshare-mypag"),
        "is not a rendered Deployment",
    ),
]

# (id, values merged over the production-like values, text the findings must contain):
# mistakes the values schema lets through and the rendered checks catch.
VALUES_DEFECTS = [
    ("values-unknown-setting", {"services": {"payment": {"config": {"OUTBOX_POLL_INTERVALL": "2s"}}}}, "OUTBOX_POLL_INTERVALL"),
    (
        "values-misspelled-pool-field",
        {"istio": {"trafficPolicy": {"default": {"connectionPool": {"http": {"http2MaxRequest": 10}}}}}},
        "'http2MaxRequest' was unexpected",
    ),
    (
        "values-one-request-per-connection",
        {"istio": {"trafficPolicy": {"default": {"connectionPool": {"http": {"maxRequestsPerConnection": 1}}}}}},
        "maxRequestsPerConnection: 1",
    ),
    ("values-retries-on-everything", {"istio": {"routes": {"other": {"retries": {"attempts": 2, "retryOn": "unavailable"}}}}}, "matches every method"),
    ("values-bad-retryon", {"istio": {"routes": {"read": {"retries": {"retryOn": "unavailable,on-error"}}}}}, "'on-error' is not a valid retryOn policy"),
    ("values-zero-timeout", {"istio": {"routes": {"read": {"timeout": "0s"}}}}, "must be a valid duration greater than 1ms"),
    ("values-no-shutdown-delay", {"shutdown": {"delaySeconds": 0}}, "SHUTDOWN_DELAY is 0"),
    ("values-hpa-min-over-max", {"services": {"payment": {"autoscaling": {"minReplicas": 40}}}}, "minReplicas 40 exceeds maxReplicas 30"),
    (
        "values-ingress-rule-for-every-port",
        {"networkPolicy": {"extraIngress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "tools"}}}]}]}},
        "admits every port, the metrics port included",
    ),
]


@pytest.fixture(scope="module")
def production():
    return rendered_scenario("production")


def test_production_baseline_is_clean(production, facts):
    assert all_findings(production, facts) == []


@pytest.mark.parametrize("mutate,expected", [d[1:] for d in RENDERED_DEFECTS], ids=[d[0] for d in RENDERED_DEFECTS])
def test_seeded_defect_in_rendered_output_is_reported(production, facts, mutate, expected):
    r = production.copy()
    mutate(r)
    findings = all_findings(r, facts)
    assert any(expected in f for f in findings), "\n".join(findings) or "no findings at all"


@pytest.mark.parametrize("values,expected", [d[1:] for d in VALUES_DEFECTS], ids=[d[0] for d in VALUES_DEFECTS])
def test_seeded_defect_in_values_is_reported(facts, values, expected):
    base = chart.load_values(SCENARIOS["production"][0])
    r = chart.render(deep_merge(base, values), namespace=SCENARIOS["production"][1])
    findings = all_findings(r, facts)
    assert any(expected in f for f in findings), "\n".join(findings) or "no findings at all"


def test_there_are_at_least_eight_seeded_defects():
    assert len(RENDERED_DEFECTS) + len(VALUES_DEFECTS) >= 8
