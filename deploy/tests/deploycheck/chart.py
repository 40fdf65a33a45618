"""Renders and lints the chart with the real Helm v4 engine (helm-python-sdk)."""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Iterable

import helm_python as helm
import yaml

from .paths import CHART, PRODUCTION_VALUES

RELEASE = "talentshare"
NAMESPACE = "talentshare"
KUBE_VERSION = "v1.33.0"

ISTIO_API_GROUPS = ("networking.istio.io/", "security.istio.io/")


def load_values(name: str) -> dict[str, Any]:
    """The values of a named scenario: `default` (the chart's own) or `production`."""
    if name == "default":
        return {}
    if name == "production":
        return yaml.safe_load(PRODUCTION_VALUES.read_text())
    raise KeyError(name)


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


def render(values: dict[str, Any] | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE) -> Rendered:
    """Renders the chart as `helm install` would (schema-validated values, hooks included)."""
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values or {}, name=release, namespace=namespace, is_install=True)
        merged = chart.merge_values(values or {})
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
