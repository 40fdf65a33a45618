"""Renders and lints the chart with the real Helm v4 engine (helm-python-sdk)."""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Iterable

import json

import helm_python as helm
import yaml
from helm_python import _native

from .paths import CHART, PRODUCTION_VALUES

RELEASE = "talentshare"
NAMESPACE = "talentshare"
KUBE_VERSION = "v1.33.0"

ISTIO_API_GROUPS = ("networking.istio.io/", "security.istio.io/")
# Kinds validated against a CRD in deploy/schemas (Istio, Gateway API).
CRD_API_GROUPS = ISTIO_API_GROUPS + ("gateway.networking.k8s.io/",)

# What a cluster's discovery reports (Helm's .Capabilities.APIVersions): "group/version" and
# "group/version/Kind" for each served kind. Without these, Helm knows only the built-ins.
ISTIO_APIS = tuple(
    f"{gv}{suffix}"
    for gv, kinds in {
        "security.istio.io/v1": ("AuthorizationPolicy", "PeerAuthentication", "RequestAuthentication"),
        "networking.istio.io/v1": ("DestinationRule", "VirtualService", "Gateway"),
    }.items()
    for suffix in ("", *(f"/{k}" for k in kinds))
)
GATEWAY_APIS = ("gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1/Gateway", "gateway.networking.k8s.io/v1/GRPCRoute")
# The Prometheus Operator's kinds the chart renders (metrics.serviceMonitor/prometheusRule: auto).
MONITORING_APIS = ("monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule")
MONITORING_API_GROUP = "monitoring.coreos.com/"

# The values every install must give: the chart refuses to render without the auth settings
# and with the placeholder (`change-me`) passwords. Real-looking, not real.
REQUIRED_VALUES: dict[str, Any] = {
    "auth": {
        "issuer": "https://auth.talentshare.example",
        "audience": "talentshare-api",
        "jwksUri": "https://auth.talentshare.example/.well-known/jwks.json",
    },
    "connections": {
        "amqpUrls": {
            u: f"amqp://talentshare-{u}:s3cr3t-{u}-7Hq2@rabbitmq.messaging:5672/%2f"
            for u in ("order", "payment", "reservation", "mypage", "admin")
        },
        "databaseUrls": {
            s: f"postgres://{s}:s3cr3t-{s}-9Kd4@postgresql.db:5432/talentshare_{s}"
            for s in ("order", "payment", "reservation", "mypage")
        },
    },
}


def deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def load_values(name: str) -> dict[str, Any]:
    """The values of a named scenario: `default` (the chart's own plus REQUIRED_VALUES) or
    `production` (ci/production-values.yaml)."""
    if name == "default":
        return copy.deepcopy(REQUIRED_VALUES)
    if name == "production":
        return yaml.safe_load(PRODUCTION_VALUES.read_text())
    raise KeyError(name)


def with_required(values: dict[str, Any] | None) -> dict[str, Any]:
    """`values` over REQUIRED_VALUES (for renders of one toggle over the defaults)."""
    return deep_merge(REQUIRED_VALUES, values or {})


@dataclasses.dataclass
class Item:
    """One rendered object and the template it came from."""

    source: str
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.obj.get("kind", "")

    @property
    def name(self) -> str:
        return (self.obj.get("metadata") or {}).get("name", "")

    @property
    def namespace(self) -> str:
        return (self.obj.get("metadata") or {}).get("namespace", "")

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def is_istio(self) -> bool:
        return str(self.obj.get("apiVersion", "")).startswith(ISTIO_API_GROUPS)

    @property
    def is_crd_kind(self) -> bool:
        """Istio or Gateway API: validated against deploy/schemas, not Kubernetes'."""
        return str(self.obj.get("apiVersion", "")).startswith(CRD_API_GROUPS)

    @property
    def is_monitoring(self) -> bool:
        """A Prometheus Operator kind: validated by deploycheck.monitoring."""
        return str(self.obj.get("apiVersion", "")).startswith(MONITORING_API_GROUP)

    @property
    def is_hook(self) -> bool:
        return "helm.sh/hook" in ((self.obj.get("metadata") or {}).get("annotations") or {})


@dataclasses.dataclass
class Rendered:
    """A rendered release: its objects, NOTES.txt, and the values it was rendered with."""

    items: list[Item]
    notes: str
    values: dict[str, Any]
    namespace: str = NAMESPACE
    release: str = RELEASE

    def of_kind(self, *kinds: str) -> list[Item]:
        return [i for i in self.items if i.kind in kinds]

    def get(self, kind: str, name: str) -> Item | None:
        for i in self.items:
            if i.kind == kind and i.name == name:
                return i
        return None

    def copy(self) -> "Rendered":
        return copy.deepcopy(self)

    def to_yaml(self, items: Iterable[Item] | None = None) -> str:
        docs = []
        for i in items if items is not None else self.items:
            docs.append(f"# Source: {i.source}\n" + yaml.safe_dump(i.obj, sort_keys=False, width=1000))
        return "---\n" + "---\n".join(docs)


def render_manifests(
    values: dict[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    api_versions: Iterable[str] = (),
) -> tuple[dict[str, str], dict[str, Any]]:
    """(template -> manifest, merged values), as `helm install` renders them, with the
    cluster serving `api_versions` besides the built-ins (`helm template --api-versions`).
    helm-python-sdk's Chart.render does not expose the option; its native render does."""
    with helm.Chart.load(str(CHART)) as chart:
        if api_versions:
            opts = {"name": release, "namespace": namespace, "is_install": True, "api_versions": list(api_versions)}
            manifests = json.loads(_native.call_string("helm_render", chart._raw(), json.dumps(values or {}), json.dumps(opts)))
        else:
            manifests = chart.render(values or {}, name=release, namespace=namespace, is_install=True)
        merged = chart.merge_values(values or {})
    return manifests, merged


def render(
    values: dict[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    api_versions: Iterable[str] = (),
) -> Rendered:
    """Renders the chart as `helm install` would (schema-validated values, hooks included)."""
    manifests, merged = render_manifests(values, release=release, namespace=namespace, api_versions=api_versions)
    items: list[Item] = []
    notes = ""
    for source in sorted(manifests):
        text = manifests[source]
        if source.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                items.append(Item(source, doc))
    return Rendered(items, notes, merged, namespace, release)


def lint(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """`helm lint --strict` against Kubernetes 1.33; returns the report."""
    return helm.lint(str(CHART), values or None, strict=True, namespace=NAMESPACE, kube_version=KUBE_VERSION)


def lint_findings(report: dict[str, Any]) -> list[str]:
    """Errors and warnings of a lint report (strict mode fails on both)."""
    return [f"{m['path']}: {m['error'].strip()}" for m in report.get("messages", []) if m.get("severity", 0) >= 2] + [
        e.strip() for e in report.get("errors", []) if e.strip()
    ]
