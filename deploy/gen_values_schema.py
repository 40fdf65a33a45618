"""Writes helm/talentshare/values.schema.json (run after changing this file).

The schema is kept as Python so it can share definitions; the generated JSON is what
Helm reads. `deploy/tests/test_chart.py` checks that the file is up to date.
"""
import json
import pathlib
import sys

SERVICES = ["order", "payment", "reservation", "mypage"]
PAYMENT_METHODS = ["Pay", "Void", "Refund", "GetPayment", "ListPayments"]
# Settings the chart computes itself; values may not set them.
CHART_OWNED_ENV = [
    "GRPC_ADDR", "PAYMENT_URL", "SHUTDOWN_DELAY", "SHUTDOWN_GRACE", "DATABASE_URL", "AMQP_URL",
    # The pool: from `database`, so the connection budget counts the real sizes.
    "DATABASE_MAX_CONNECTIONS", "DATABASE_IDLE_TIMEOUT", "DATABASE_MAX_LIFETIME",
    "AMQP_DECLARE_TOPOLOGY", "AUTH_JWKS", "AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_JWKS_REFRESH", "AUTH_LEEWAY",
    # From metrics.enabled and metrics.port, so the ports and the scrape config agree.
    "METRICS_ADDR",
    # From tracing.otlpEndpoint, so the NetworkPolicies open the collector's port. The
    # traces-only variable would win over it, so it may not come from `config` either.
    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    # From grpcWeb.corsAllowedOrigins: checked by the chart, public services only, and
    # under Istio it opens the preflights' rule.
    "CORS_ALLOWED_ORIGINS",
]
BROKER_USERS = SERVICES + ["admin"]

DURATION = {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h|d))+$"}
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Prometheus' duration syntax (the Prometheus Operator's CRDs use this pattern).
PROM_DURATION = {"type": "string", "minLength": 1, "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
# Ports Istio's sidecar takes for itself in every pod (Istio 1.30 "Ports used by Istio").
ISTIO_PORTS = [15000, 15001, 15004, 15006, 15008, 15009, 15020, 15021, 15053, 15090]


def obj(properties, required=(), **extra):
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema


string_map = {"type": "object", "additionalProperties": {"type": "string"}}
quantity = {"type": ["string", "number"], "pattern": r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"}
resources = obj(
    {
        "requests": obj({"cpu": quantity, "memory": quantity}),
        "limits": obj({"cpu": quantity, "memory": quantity}),
    }
)
env_config = {
    "type": "object",
    "description": "Environment variables for the binaries (names as in `<binary> --help`).",
    "propertyNames": {"pattern": "^[A-Z][A-Z0-9_]*$", "not": {"enum": CHART_OWNED_ENV}},
    "additionalProperties": {"type": ["string", "integer", "boolean"]},
}
# The binaries accept 1..=1000 (DATABASE_MAX_CONNECTIONS).
pool_fields = {
    "poolSize": {"type": "integer", "minimum": 1, "maximum": 1000},
    "idleTimeout": DURATION,
    "maxLifetime": DURATION,
}
autoscaling_fields = {
    "enabled": {"type": "boolean"},
    "minReplicas": {"type": "integer", "minimum": 1},
    "maxReplicas": {"type": "integer", "minimum": 1},
    "targetCPUUtilizationPercentage": {"type": "integer", "minimum": 1, "maximum": 100},
}
probe = obj(
    {
        "periodSeconds": {"type": "integer", "minimum": 1},
        "failureThreshold": {"type": "integer", "minimum": 1},
        "timeoutSeconds": {"type": "integer", "minimum": 1},
    },
    required=["periodSeconds", "failureThreshold", "timeoutSeconds"],
)
service = obj(
    {
        "port": {"type": "integer", "minimum": 1024, "maximum": 65535},
        "config": env_config,
        "replicaCount": {"type": "integer", "minimum": 1},
        "resources": resources,
        "autoscaling": obj(autoscaling_fields),
        "database": obj(pool_fields),
        "podAnnotations": string_map,
    },
    required=["port"],
)
route = obj(
    {
        "timeout": DURATION,
        "retries": obj(
            {
                "attempts": {"type": "integer", "minimum": 0, "maximum": 10},
                "perTryTimeout": DURATION,
                "retryOn": {"type": "string", "pattern": "^[a-z0-9-]+(,[a-z0-9-]+)*$"},
            },
            required=["attempts"],
        ),
    },
    required=["retries"],
)
route_override = obj(
    {
        "timeout": DURATION,
        "retries": obj(
            {
                "attempts": {"type": "integer", "minimum": 0, "maximum": 10},
                "perTryTimeout": DURATION,
                "retryOn": {"type": "string", "pattern": "^[a-z0-9-]+(,[a-z0-9-]+)*$"},
            },
        ),
    },
)
egress_peer = obj(
    {
        "ports": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1, "maximum": 65535}},
        "to": {"type": "array", "items": {"type": "object"}, "description": "NetworkPolicyPeer list; empty: any destination"},
    },
    required=["ports", "to"],
)
# Kubernetes label keys (optional DNS-subdomain prefix) and values.
k8s_labels = {
    "type": "object",
    "propertyNames": {"pattern": r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"},
    "additionalProperties": {"type": "string", "maxLength": 63, "pattern": r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"},
}
SEVERITY = {"type": "string", "pattern": r"^[A-Za-z0-9_-]+$"}


def alert(**thresholds):
    """One alert's values: enabled, severity, for, and its own thresholds."""
    fields = {"enabled": {"type": "boolean"}, "severity": SEVERITY, "for": PROM_DURATION, **thresholds}
    return obj(fields, required=list(fields))


auto_toggle = {"enum": ["auto", True, False], "description": "auto: when the cluster serves the kind"}
metrics = obj(
    {
        "enabled": {"type": "boolean"},
        "port": {"type": "integer", "minimum": 1024, "maximum": 65535, "not": {"enum": ISTIO_PORTS}},
        "prometheus": obj(
            {
                "namespace": {"type": "string", "pattern": DNS_LABEL},
                "serviceAccount": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
                "podLabels": {**k8s_labels, "minProperties": 1},
                "istioCertsDir": {"type": "string", "pattern": r"^/[^\s]*[^/\s]$"},
            },
            required=["namespace", "serviceAccount", "podLabels", "istioCertsDir"],
        ),
        "serviceMonitor": obj(
            {"enabled": auto_toggle, "labels": k8s_labels, "interval": PROM_DURATION, "scrapeTimeout": PROM_DURATION},
            required=["enabled", "labels", "interval", "scrapeTimeout"],
        ),
        "prometheusRule": obj(
            {
                "enabled": auto_toggle,
                "labels": k8s_labels,
                "alertLabels": {
                    "type": "object",
                    "propertyNames": {"pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$", "not": {"enum": ["severity", "alertname"]}},
                    "additionalProperties": {"type": "string"},
                },
                "runbookUrl": {"type": "string", "pattern": "^$|^https?://"},
                "alerts": obj(
                    {
                        "outboxStale": alert(maxAgeSeconds={"type": "integer", "minimum": 1}),
                        "consumerLag": alert(p99Seconds={"type": "number", "exclusiveMinimum": 0}, window=PROM_DURATION),
                        "consumerStalled": alert(window=PROM_DURATION),
                        "consumerStuck": alert(heldSeconds={"type": "integer", "minimum": 1}),
                        "queueBacklog": alert(maxMessages={"type": "integer", "minimum": 1}),
                        "deadLetters": alert(),
                        "paymentBreakerOpen": alert(),
                        "errorRatio": alert(
                            ratio={"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                            minRequestsPerSecond={"type": "number", "minimum": 0},
                            window=PROM_DURATION,
                        ),
                        "readinessFlapping": alert(maxChanges={"type": "integer", "minimum": 1}, window=PROM_DURATION),
                        "scrapeFailing": alert(),
                    },
                    required=["outboxStale", "consumerLag", "consumerStalled", "consumerStuck", "queueBacklog", "deadLetters", "paymentBreakerOpen", "errorRatio", "readinessFlapping", "scrapeFailing"],
                ),
            },
            required=["enabled", "labels", "alertLabels", "runbookUrl", "alerts"],
        ),
        "dashboard": obj(
            {
                "enabled": {"type": "boolean"},
                "labels": {**k8s_labels, "minProperties": 1},
                "annotations": string_map,
                "namespace": {"type": "string", "pattern": f"^$|{DNS_LABEL}"},
            },
            required=["enabled", "labels", "annotations", "namespace"],
        ),
    },
    required=["enabled", "port", "prometheus", "serviceMonitor", "prometheusRule", "dashboard"],
)
# An OTLP/gRPC collector URL: http://host:port[/path], the host a DNS name, an IPv4
# address or a bracketed IPv6 address. No https: the binaries carry no TLS for OTLP and
# refuse to start with it; nor without a port (they would not guess 4317). No user,
# query or fragment.
OTLP_ENDPOINT = (
    r"^http://([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])"
    r"(:[0-9]{1,5})(/[^\s?#]*)?$"
)
tracing = obj(
    {
        "otlpEndpoint": {
            "type": "string",
            "pattern": f"^$|{OTLP_ENDPOINT}",
            "description": "OTLP/gRPC collector (OTEL_EXPORTER_OTLP_ENDPOINT), http://host:port; empty: no spans are exported",
        },
    },
    required=["otlpEndpoint"],
)
# The origins themselves are checked by the chart (templates/_helpers.tpl
# talentshare.validate), which names the value and what is wrong with it; the schema only
# wants a list of strings (so `--set grpcWeb.corsAllowedOrigins=a,b` is refused: use {a,b}).
grpc_web = obj(
    {
        "corsAllowedOrigins": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "description": "Browser origins (http(s)://host[:port]) that may call order, reservation and mypage over gRPC-Web (CORS_ALLOWED_ORIGINS); never *",
        },
    },
    required=["corsAllowedOrigins"],
)
traffic_policy = obj(
    {
        "connectionPool": {"type": "object", "description": "Istio DestinationRule connectionPool"},
        "outlierDetection": {"type": "object", "description": "Istio DestinationRule outlierDetection"},
    }
)

SCHEMA = obj(
    {
        "nameOverride": {"type": "string", "maxLength": 50, "pattern": f"^$|{DNS_LABEL}"},
        "fullnameOverride": {"type": "string", "maxLength": 50, "pattern": f"^$|{DNS_LABEL}"},
        "clusterDomain": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"},
        "image": obj(
            {
                "repository": {"type": "string", "minLength": 1},
                "tag": {"type": "string"},
                "digest": {"type": "string", "pattern": "^$|^sha256:[a-f0-9]{64}$"},
                "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
            },
            required=["repository", "pullPolicy"],
        ),
        "imagePullSecrets": {"type": "array", "items": obj({"name": {"type": "string", "minLength": 1}}, required=["name"])},
        "connections": obj(
            {
                "existingSecret": {"type": "string"},
                "amqpUrls": obj({u: {"type": "string", "pattern": "^$|^amqps?://"} for u in BROKER_USERS}),
                "databaseUrls": obj(
                    {s: {"type": "string", "pattern": "^$|^postgres(ql)?://"} for s in SERVICES},
                ),
            },
            required=["existingSecret"],
            # Without an existing Secret, every URL must be given.
            **{
                "if": {"properties": {"existingSecret": {"const": ""}}},
                "then": {
                    "required": ["amqpUrls", "databaseUrls"],
                    "properties": {
                        "amqpUrls": {
                            "required": BROKER_USERS,
                            "properties": {u: {"minLength": 1} for u in BROKER_USERS},
                        },
                        "databaseUrls": {
                            "required": SERVICES,
                            "properties": {s: {"minLength": 1} for s in SERVICES},
                        },
                    },
                },
            },
        ),
        "auth": obj(
            {
                "issuer": {"type": "string"},
                "audience": {"type": "string"},
                "jwksUri": {"type": "string", "pattern": "^$|^https?://"},
                "jwksConfigMap": {"type": "string", "pattern": f"^$|{DNS_SUBDOMAIN}"},
                "jwksConfigMapKey": {"type": "string", "minLength": 1, "pattern": r"^[-._a-zA-Z0-9]+$"},
                "jwksCaConfigMap": {"type": "string", "pattern": f"^$|{DNS_SUBDOMAIN}"},
                "jwksCaConfigMapKey": {"type": "string", "minLength": 1, "pattern": r"^[-._a-zA-Z0-9]+$"},
                "rolesClaim": {"type": "string", "pattern": r"^[A-Za-z0-9_:/-]+(\.[A-Za-z0-9_:/-]+)*$"},
                "talentsClaim": {"type": "string", "pattern": r"^[A-Za-z0-9_:/-]+(\.[A-Za-z0-9_:/-]+)*$"},
                "jwksRefresh": DURATION,
                "leeway": DURATION,
            },
            required=["issuer", "audience", "jwksUri", "jwksConfigMap", "jwksConfigMapKey", "jwksCaConfigMap", "jwksCaConfigMapKey", "rolesClaim", "talentsClaim", "jwksRefresh", "leeway"],
        ),
        "config": env_config,
        "database": obj(
            {"maxConnections": {"type": "integer", "minimum": 1}, **pool_fields},
            required=["maxConnections", *pool_fields],
        ),
        "shutdown": obj(
            {
                "delaySeconds": {"type": "integer", "minimum": 0, "maximum": 120},
                "graceSeconds": {"type": "integer", "minimum": 1, "maximum": 600},
                "marginSeconds": {"type": "integer", "minimum": 1, "maximum": 60},
            },
            required=["delaySeconds", "graceSeconds", "marginSeconds"],
        ),
        "replicaCount": {"type": "integer", "minimum": 1},
        "resources": resources,
        "autoscaling": obj(autoscaling_fields, required=list(autoscaling_fields)),
        "podDisruptionBudget": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
                "maxUnavailable": {"type": ["integer", "string"], "minimum": 0, "pattern": "^[0-9]+%$"},
                "minAvailable": {"type": ["integer", "string", "null"], "minimum": 1, "pattern": "^[0-9]+%$"},
            },
            "required": ["enabled", "maxUnavailable"],
        },
        "probes": obj({"startup": probe, "readiness": probe, "liveness": probe}, required=["startup", "readiness", "liveness"]),
        "podSecurityContext": obj(
            {
                "runAsUser": {"type": "integer", "minimum": 1, "description": "non-root: 0 is refused"},
                "runAsGroup": {"type": "integer", "minimum": 0},
            },
            required=["runAsUser", "runAsGroup"],
        ),
        "podAnnotations": string_map,
        "podLabels": string_map,
        "nodeSelector": string_map,
        "tolerations": {"type": "array", "items": {"type": "object"}},
        "affinity": {"type": "object"},
        "topologySpread": {"type": "boolean"},
        "priorityClassName": {"type": "string"},
        "services": obj({s: service for s in SERVICES}, required=SERVICES),
        "serviceAccount": obj({"annotations": string_map}),
        "networkPolicy": obj(
            {
                "enabled": {"type": "boolean"},
                "ingressNamespaces": {"type": "array", "items": {"type": "string", "pattern": DNS_LABEL}},
                "extraIngress": {"type": "array", "items": {"type": "object"}},
                "egress": obj(
                    {
                        "dnsNamespace": {"type": "string", "pattern": DNS_LABEL},
                        "postgresql": egress_peer,
                        "rabbitmq": egress_peer,
                        "jwks": egress_peer,
                        "otlp": egress_peer,
                        "istiodNamespace": {"type": "string", "pattern": DNS_LABEL},
                    },
                    required=["dnsNamespace", "postgresql", "rabbitmq", "jwks", "otlp", "istiodNamespace"],
                ),
                "extraEgress": {"type": "array", "items": {"type": "object"}},
            },
            required=["enabled", "egress"],
        ),
        "tests": obj({"enabled": {"type": "boolean"}}, required=["enabled"]),
        "metrics": metrics,
        "tracing": tracing,
        "grpcWeb": grpc_web,
        "ingress": obj(
            {
                "enabled": {"type": "boolean"},
                "api": {"enum": ["auto", "gateway-api", "istio"]},
                "host": {"type": "string", "pattern": f"^$|{DNS_SUBDOMAIN}"},
                "tlsSecretName": {"type": "string", "pattern": f"^$|{DNS_SUBDOMAIN}"},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "gatewayApi": obj({"gatewayClassName": {"type": "string", "minLength": 1}}, required=["gatewayClassName"]),
                "istio": obj(
                    {
                        "selector": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}},
                        "gatewayNamespace": {"type": "string", "pattern": DNS_LABEL},
                    },
                    required=["selector", "gatewayNamespace"],
                ),
            },
            required=["enabled", "api", "host", "tlsSecretName", "port", "gatewayApi", "istio"],
        ),
        "istio": obj(
            {
                "enabled": {
                    "enum": ["auto", True, False],
                    "description": "auto: on when the cluster serves security.istio.io/v1",
                },
                "trustDomain": {"type": "string", "minLength": 1, "pattern": r"^[a-z0-9.-]+$"},
                "nativeSidecar": {"type": "boolean"},
                "peerAuthentication": obj({"enabled": {"type": "boolean"}}, required=["enabled"]),
                "authorization": obj(
                    {
                        "enabled": {"type": "boolean"},
                        "ingressPrincipals": {
                            "type": "array",
                            "items": {"type": "string", "pattern": r"^[a-z0-9.-]+/ns/[a-z0-9-]+/sa/[a-z0-9.-]+$"},
                        },
                        "paymentCallers": obj(
                            {
                                caller: {
                                    "type": "array",
                                    "uniqueItems": True,
                                    "items": {"enum": PAYMENT_METHODS},
                                }
                                for caller in ["order", "reservation"]
                            }
                        ),
                    },
                    required=["enabled", "ingressPrincipals", "paymentCallers"],
                ),
                "trafficPolicy": obj(
                    {
                        "default": traffic_policy,
                        "services": obj({s: traffic_policy for s in SERVICES}),
                    },
                    required=["default"],
                ),
                "routes": obj(
                    {"read": route, "idempotent": route, "stream": route, "other": route},
                    required=["read", "idempotent", "stream", "other"],
                ),
                "serviceRoutes": obj(
                    {
                        s: obj({c: route_override for c in ["read", "idempotent", "stream", "other"]})
                        for s in SERVICES
                    }
                ),
            },
            required=["enabled", "trustDomain"],
        ),
    },
    required=["image", "connections", "auth", "database", "config", "shutdown", "services", "probes", "podSecurityContext", "metrics", "tracing", "istio"],
)
SCHEMA = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "talentshare chart values", **SCHEMA}

TARGET = pathlib.Path(__file__).resolve().parent.parent / "helm" / "talentshare" / "values.schema.json"


def render() -> str:
    return json.dumps(SCHEMA, indent=2) + "\n"


if __name__ == "__main__":
    if "--check" in sys.argv:
        sys.exit(0 if TARGET.read_text() == render() else 1)
    TARGET.write_text(render())
    print(f"wrote {TARGET}")
