"""Kubernetes 1.33 schema validation (kubernetes-validate, strict: unknown fields fail),
plus the object-name rules the API server applies and the JSON schemas do not."""
from __future__ import annotations

import functools
import re
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils as kv_utils

K8S_VERSION = "1.33"

# kubernetes-validate re-reads its schema files (megabytes of JSON) on every call; read each
# once. Same files, same validation: this only caches the file contents.
if not hasattr(kv_utils.schema_contents, "cache_info"):
    kv_utils.schema_contents = functools.lru_cache(maxsize=None)(kv_utils.schema_contents)

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# Kinds whose names must be DNS-1123 labels (at most 63 characters); others are subdomains.
LABEL_NAMED = {"Service", "Namespace"}


def validate_core(obj: dict[str, Any]) -> list[str]:
    """Findings for one non-Istio object; [] when it is valid for Kubernetes 1.33."""
    ref = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
    findings: list[str] = []
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        findings.append(f"{ref}: schema (Kubernetes {e.version} strict): {path}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError as e:
        findings.append(f"{ref}: no Kubernetes {K8S_VERSION} schema: {e.message}")
    findings += validate_names(obj)
    return findings


def validate_names(obj: dict[str, Any]) -> list[str]:
    """The name and label rules of the API server (not in the OpenAPI schemas)."""
    meta = obj.get("metadata") or {}
    kind = obj.get("kind", "")
    ref = f"{kind}/{meta.get('name')}"
    out = []
    name = meta.get("name", "")
    if kind in LABEL_NAMED:
        if len(name) > 63 or not DNS1123_LABEL.match(name):
            out.append(f"{ref}: metadata.name is not a DNS-1123 label (a-z0-9-, at most 63)")
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        out.append(f"{ref}: metadata.name is not a DNS-1123 subdomain")
    ns = meta.get("namespace")
    if ns is not None and (len(ns) > 63 or not DNS1123_LABEL.match(ns)):
        out.append(f"{ref}: metadata.namespace {ns!r} is not a DNS-1123 label")
    for where, labels in _label_maps(obj):
        for key, value in (labels or {}).items():
            if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
                out.append(f"{ref}: {where} label {key}={value!r} is not a valid label value")
    return out


def _label_maps(obj):
    yield "metadata.labels", (obj.get("metadata") or {}).get("labels")
    template = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
    yield "spec.template.metadata.labels", template.get("labels")
    selector = (obj.get("spec") or {}).get("selector")
    if isinstance(selector, dict):
        yield "spec.selector.matchLabels", selector.get("matchLabels", selector if obj.get("kind") == "Service" else None)
