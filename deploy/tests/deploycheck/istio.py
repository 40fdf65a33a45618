"""Istio 1.30 (and Gateway API 1.5) validation of the rendered custom resources.

1. Structural schema: each object against its CRD's `openAPIV3Schema` (deploy/schemas,
   copied from Istio 1.30.3), turned into a strict JSON Schema: every object schema that
   lists `properties` rejects other fields (the API server would silently prune them;
   `kubectl apply --validate=strict` rejects them), `nullable` allows null, int32/int64
   formats are range-checked. `metadata` is checked against Kubernetes 1.33's ObjectMeta.
2. CEL: every `x-kubernetes-validations` rule on the path of a present value is compiled
   and evaluated with cel-python (`self` = the value). Transition rules (`oldSelf`) do not
   apply to a create and are skipped; a rule cel-python cannot compile is reported by
   `uncovered_rules()` (the tests require that list to be empty for the kinds we render).
3. A subset of istiod's validating webhook (pkg/config/validation) that the CRD schema does
   not express, for the fields the chart uses: retry policies (attempts >= 0, nothing but
   `attempts` when attempts is 0, known `retryOn` tokens), outlier-detection percentages,
   AuthorizationPolicy principals and paths.
"""
from __future__ import annotations

import copy
import functools
import http
import re
from typing import Any, Iterator

import celpy
import jsonschema
import referencing
import yaml
from referencing import Registry, Resource

import kubernetes_validate.utils as kv_utils

from .paths import GATEWAY_API_CRDS, ISTIO_CRDS

INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

# istiod's supportedRetryOnPolicies (pilot/pkg/... validation.go, Istio 1.30).
RETRY_ON = {
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "retriable-4xx",
    "refused-stream", "retriable-status-codes", "retriable-headers", "envoy-ratelimited",
    "http3-post-connect-failure",
    # gRPC (x-envoy-retry-grpc-on)
    "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
}
GRPC_RETRY_ON = {"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}


@functools.lru_cache(maxsize=None)
def crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema, for every served version of the copied CRDs
    (Istio's, and the Gateway API's Gateway and GRPCRoute)."""
    out = {}
    for path in sorted(ISTIO_CRDS.glob("*.yaml")) + sorted(GATEWAY_API_CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                out[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return out


def _strict(schema: Any) -> Any:
    """OpenAPI v3 structural schema -> strict JSON Schema (see the module doc)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: _strict(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _strict(value)
        elif key in ("anyOf", "oneOf", "allOf"):
            out[key] = _strict(value)
        elif key.startswith("x-kubernetes-") or key in ("description", "nullable", "format"):
            continue
        else:
            out[key] = value
    if "properties" in schema and "additionalProperties" not in schema and not schema.get(
        "x-kubernetes-preserve-unknown-fields"
    ):
        out["additionalProperties"] = False
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
    fmt = schema.get("format")
    if fmt in INT_RANGES:
        out["minimum"], out["maximum"] = max(out.get("minimum", INT_RANGES[fmt][0]), INT_RANGES[fmt][0]), min(
            out.get("maximum", INT_RANGES[fmt][1]), INT_RANGES[fmt][1]
        )
    return out


@functools.lru_cache(maxsize=None)
def _validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    schema = copy.deepcopy(crds()[(api_version, kind)])
    strict = _strict(schema)
    strict["properties"]["apiVersion"] = {"const": api_version}
    strict["properties"]["kind"] = {"const": kind}
    strict["properties"]["metadata"] = {"$ref": "https://kubernetes.io/api/objectmeta-meta-v1.json"}
    strict["required"] = sorted(set(strict.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    strict["additionalProperties"] = False
    k8s = "kubernetes-json-schema/v1.33.0-local-strict"
    objectmeta = kv_utils.schema_contents(f"{k8s}/objectmeta-meta-v1.json", "1.33")
    definitions = kv_utils.schema_contents(f"{k8s}/_definitions.json", "1.33")
    registry = Registry().with_resources(
        [
            ("https://kubernetes.io/api/objectmeta-meta-v1.json", Resource.from_contents(objectmeta)),
            ("https://kubernetes.io/api/_definitions.json", Resource.from_contents(definitions)),
        ]
    )
    return jsonschema.Draft202012Validator(strict, registry=registry)


def is_istio_kind(api_version: str, kind: str) -> bool:
    return (api_version, kind) in crds()


def validate(obj: dict[str, Any]) -> list[str]:
    """All findings for one Istio object ([] when valid)."""
    ref = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key not in crds():
        return [f"{ref}: no CRD in deploy/schemas (Istio 1.30, Gateway API 1.5) serves {key[0]} {key[1]}"]
    findings = []
    for error in sorted(_validator(*key).iter_errors(obj), key=lambda e: list(map(str, e.path))):
        path = ".".join(str(p) for p in error.path)
        findings.append(f"{ref}: CRD schema: {path or '(root)'}: {error.message}")
    if findings:
        return findings  # CEL rules assume a structurally valid object
    schema = crds()[key]
    # The API server applies the schema's defaults before it evaluates the CEL rules (the
    # Gateway API's rules rely on them: parentRefs' group/kind, backendRefs' kind).
    for path, rule, message in failed_cel_rules(schema, with_defaults(schema, obj)):
        findings.append(f"{ref}: CEL rule at {path}: {message} ({rule})")
    findings += webhook_findings(obj)
    return findings


def with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """A copy of `value` with the structural schema's `default`s filled in, as the API
    server does (for absent object properties, recursively)."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        out = {}
        for k, v in value.items():
            sub = props.get(k) if k in props else schema.get("additionalProperties")
            out[k] = with_defaults(sub, v) if isinstance(sub, dict) else copy.deepcopy(v)
        for k, sub in props.items():
            if k not in out and "default" in sub:
                out[k] = with_defaults(sub, copy.deepcopy(sub["default"]))
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [with_defaults(schema["items"], v) for v in value]
    return copy.deepcopy(value)


# --- CEL ---------------------------------------------------------------------------

_CEL = celpy.Environment()


class _URL(celpy.celtypes.StringType):
    """Kubernetes' CEL URL library value (`url(s)`), enough for the rules the CRDs use."""


def _url(value):
    import urllib.parse

    text = str(value)
    parts = urllib.parse.urlsplit(text)
    if not parts.scheme and not text.startswith("/"):
        return celpy.CELEvalError(f"url: {text!r} is not an absolute URI or absolute path", ValueError, None)
    return _URL(text)


def _url_part(part):
    import urllib.parse

    def get(u):
        parts = urllib.parse.urlsplit(str(u))
        return celpy.celtypes.StringType(
            {"scheme": parts.scheme, "host": parts.netloc.rsplit("@", 1)[-1], "hostname": parts.hostname or "",
             "port": str(parts.port or ""), "path": parts.path}[part]
        )

    return get


# Kubernetes' CEL extension functions the rendered kinds' rules call (k8s.io/apiserver
# pkg/cel/library/urls.go); cel-python knows only standard CEL.
_K8S_FUNCTIONS = {
    "url": _url,
    "isURL": lambda v: celpy.celtypes.BoolType(not isinstance(_url(v), celpy.CELEvalError)),
    "getScheme": _url_part("scheme"),
    "getHost": _url_part("host"),
    "getHostname": _url_part("hostname"),
    "getPort": _url_part("port"),
    "getEscapedPath": _url_part("path"),
}


@functools.lru_cache(maxsize=None)
def _program(rule: str):
    return _CEL.program(_CEL.compile(rule), functions=_K8S_FUNCTIONS)


def _walk(schema: dict[str, Any], value: Any, path: str) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(path, schema node, value) for every present value, following the schema."""
    yield path, schema, value
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for k, v in value.items():
            if k in props:
                yield from _walk(props[k], v, f"{path}.{k}")
            elif isinstance(schema.get("additionalProperties"), dict):
                yield from _walk(schema["additionalProperties"], v, f"{path}[{k}]")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            yield from _walk(schema["items"], v, f"{path}[{i}]")


def failed_cel_rules(schema: dict[str, Any], obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    failed = []
    for path, node, value in _walk(schema, obj, ""):
        for rule in node.get("x-kubernetes-validations") or []:
            expr = rule["rule"]
            if "oldSelf" in expr:
                continue
            try:
                result = _program(expr).evaluate({"self": celpy.json_to_cel(value)})
            except Exception as e:  # an evaluation error rejects the object, as in Kubernetes
                failed.append((path or ".", expr, f"{rule.get('message', 'rule failed')} [{e}]"))
                continue
            if isinstance(result, Exception) or result is not True and not (
                isinstance(result, celpy.celtypes.BoolType) and bool(result)
            ):
                failed.append((path or ".", expr, rule.get("message", "rule failed")))
    return failed


def all_rules(kinds: set[str]) -> list[str]:
    """Every CEL rule in the CRD versions of `kinds`."""
    rules = []

    def collect(s):
        if isinstance(s, dict):
            rules.extend(r["rule"] for r in s.get("x-kubernetes-validations") or [])
            for v in s.values():
                collect(v)
        elif isinstance(s, list):
            for v in s:
                collect(v)

    for (api_version, kind), schema in crds().items():
        if kind in kinds:
            collect(schema)
    return rules


def uncovered_rules(kinds: set[str]) -> list[str]:
    """CEL rules cel-python cannot compile (so the checks could not evaluate them)."""
    bad = []
    for rule in sorted(set(all_rules(kinds))):
        if "oldSelf" in rule:
            continue
        try:
            _program(rule)
        except Exception as e:
            bad.append(f"{rule}: {e}")
    return bad


# --- istiod webhook subset -------------------------------------------------------------

PRINCIPAL = re.compile(r"^[^/\s]+/ns/[a-z0-9]([-a-z0-9]*[a-z0-9])?/sa/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def webhook_findings(obj: dict[str, Any]) -> list[str]:
    ref = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
    spec = obj.get("spec") or {}
    out = []
    if obj.get("kind") == "VirtualService":
        for route in spec.get("http") or []:
            name = route.get("name", "?")
            retries = route.get("retries")
            if retries is None:
                continue
            attempts = retries.get("attempts", 0)
            if attempts < 0:
                out.append(f"{ref}: route {name}: retries.attempts cannot be negative")
            if attempts == 0 and any(k in retries for k in ("perTryTimeout", "retryOn", "retryRemoteLocalities")):
                out.append(f"{ref}: route {name}: http retry policy configured when attempts are set to 0 (disabled)")
            for token in filter(None, retries.get("retryOn", "").split(",")):
                if token not in RETRY_ON and not (token.isdigit() and _is_http_status(int(token))):
                    out.append(f"{ref}: route {name}: {token!r} is not a valid retryOn policy")
    if obj.get("kind") == "DestinationRule":
        policies = [spec.get("trafficPolicy") or {}] + [
            p for p in ((spec.get("trafficPolicy") or {}).get("portLevelSettings") or [])
        ]
        for policy in policies:
            od = policy.get("outlierDetection") or {}
            for field in ("maxEjectionPercent", "minHealthPercent"):
                if field in od and not 0 <= od[field] <= 100:
                    out.append(f"{ref}: outlierDetection.{field} must be in 0..100")
    if obj.get("kind") == "AuthorizationPolicy":
        for i, rule in enumerate(spec.get("rules") or []):
            for source in rule.get("from") or []:
                for p in (source.get("source") or {}).get("principals") or []:
                    if not p:
                        out.append(f"{ref}: rules[{i}]: empty principal")
            for to in rule.get("to") or []:
                for p in (to.get("operation") or {}).get("paths") or []:
                    if not p.startswith("/") and p != "*":
                        out.append(f"{ref}: rules[{i}]: path {p!r} must start with /")
    return out


def _is_http_status(code: int) -> bool:
    try:
        http.HTTPStatus(code)
        return True
    except ValueError:
        return False
