"""The chart's monitoring objects and the tools that check them.

- Schema: ServiceMonitor and PrometheusRule against the Prometheus Operator's API types
  (the `cloudcoil-models-prometheus-operator` package: pydantic models generated from the
  operator's v0.80 CRDs, with their patterns and enums), strictly: a field the CRD does not
  have is reported, as the API server's strict field validation would.
- PromQL: the metric names and the label matchers of every vector selector of an
  expression, found by a small lexer (strings, label matchers, ranges and grouping
  clauses are masked first, so label names and function names never pass for metrics).
- promtool (`check rules`, `test rules`) and a real `prometheus` (Debian's package, which
  scripts/tools.sh installs) with a generated configuration, for the live checks.
- The scrape configuration the Prometheus Operator makes of a rendered ServiceMonitor
  (job = the Service's name, namespace/service/pod/container/endpoint target labels),
  pointed at the chart-as-cluster processes.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time
import types
import typing
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterable, Iterator

import yaml

from . import k8s
from .chart import Rendered

OPERATOR_VERSION = "0.80.1"  # the API types of cloudcoil-models-prometheus-operator 0.80.1.0


# --- schema -------------------------------------------------------------------------------


def _models() -> dict[tuple[str, str], Any]:
    # Imported on first use: building the operator's models takes a second or two, which
    # only the renders that hold a ServiceMonitor or a PrometheusRule need to pay.
    from cloudcoil.models.prometheus_operator import v1

    return {
        ("monitoring.coreos.com/v1", "ServiceMonitor"): v1.ServiceMonitor,
        ("monitoring.coreos.com/v1", "PrometheusRule"): v1.PrometheusRule,
    }


def has_schema(api_version: str, kind: str) -> bool:
    return (api_version, kind) in _models()


def _unknown_fields(annotation: Any, value: Any, path: str) -> Iterator[str]:
    """Paths of keys in `value` that the model type `annotation` has no field for."""
    import pydantic

    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from _unknown_fields(typing.get_args(annotation)[0], value, path)
    elif origin in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(annotation) if a is not type(None)]
        models = [a for a in arms if isinstance(a, type) and issubclass(a, pydantic.BaseModel)]
        if isinstance(value, dict) and models:
            # The arm that knows most of the keys decides (unions of models are rare).
            best = min((list(_unknown_fields(m, value, path)) for m in models), key=len)
            yield from best
        else:
            for arm in arms:
                if not (isinstance(arm, type) and issubclass(arm, pydantic.BaseModel)):
                    yield from _unknown_fields(arm, value, path)
    elif origin in (list, typing.List) and isinstance(value, list):
        (item,) = typing.get_args(annotation) or (Any,)
        for i, v in enumerate(value):
            yield from _unknown_fields(item, v, f"{path}[{i}]")
    elif origin in (dict, typing.Dict) and isinstance(value, dict):
        args = typing.get_args(annotation)
        for k, v in value.items():
            yield from _unknown_fields(args[1] if len(args) == 2 else Any, v, f"{path}.{k}")
    elif isinstance(annotation, type) and issubclass(annotation, pydantic.RootModel):
        yield from _unknown_fields(annotation.model_fields["root"].annotation, value, path)
    elif isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel) and isinstance(value, dict):
        fields = {(f.alias or name): f for name, f in annotation.model_fields.items()}
        for key, v in value.items():
            if key not in fields:
                yield f"{path}.{key}" if path else key
            else:
                yield from _unknown_fields(fields[key].annotation, v, f"{path}.{key}" if path else key)


def validate(obj: dict[str, Any]) -> list[str]:
    """Findings for one Prometheus Operator object ([] when valid): its API type (field
    types, required fields, patterns such as durations, enums), no unknown fields, and
    the API server's name and label rules."""
    import pydantic

    ref = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
    model = _models().get((obj.get("apiVersion"), obj.get("kind")))
    if model is None:
        return [f"{ref}: no Prometheus Operator {OPERATOR_VERSION} type for {obj.get('apiVersion')} {obj.get('kind')}"]
    findings = []
    try:
        model.model_validate(obj)
    except pydantic.ValidationError as e:
        for error in e.errors():
            where = ".".join(str(p) for p in error["loc"])
            findings.append(f"{ref}: schema (Prometheus Operator {OPERATOR_VERSION}): {where}: {error['msg']}")
    for path in _unknown_fields(model, obj, ""):
        findings.append(f"{ref}: schema (Prometheus Operator {OPERATOR_VERSION}): {path}: unknown field")
    if not obj.get("spec"):
        findings.append(f"{ref}: spec is missing")
    findings += k8s.validate_names(obj)
    if obj.get("kind") == "ServiceMonitor":
        for i, ep in enumerate((obj.get("spec") or {}).get("endpoints") or []):
            if not ep.get("port") and not ep.get("targetPort"):
                findings.append(f"{ref}: endpoints[{i}] names no port")
    if obj.get("kind") == "PrometheusRule":
        names = set()
        for group in (obj.get("spec") or {}).get("groups") or []:
            if group.get("name") in names:
                findings.append(f"{ref}: group {group.get('name')!r} twice")
            names.add(group.get("name"))
            for rule in group.get("rules") or []:
                if bool(rule.get("alert")) == bool(rule.get("record")):
                    findings.append(f"{ref}: group {group.get('name')}: a rule needs exactly one of alert and record")
    return findings


# --- PromQL -------------------------------------------------------------------------------

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_COMMENT = re.compile(r"#[^\n]*")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)(\s*\()([^)]*)\)")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-zA-Z]+|@\s*(?:start\(\)|end\(\)|[0-9.]+)")
_NAME = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*)")
_MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*("(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`)')
# Aggregation operators, keywords and binary operators: never metric names. (Functions
# need no list: a function name is always followed by its parenthesis.)
KEYWORDS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "limitk", "limit_ratio", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "and", "or", "unless", "atan2", "offset", "inf", "nan",
}


def _mask(pattern: re.Pattern, text: str, keep_first_group: bool = False) -> str:
    """`text` with every match of `pattern` blanked (same length, so positions still line up)."""

    def blank(m: re.Match) -> str:
        if keep_first_group:
            return m.group(1) + re.sub(r"[^\n]", " ", m.group(0)[len(m.group(1)) :])
        return re.sub(r"[^\n]", " ", m.group(0))

    return pattern.sub(blank, text)


def _unquote(literal: str) -> str:
    """The value of a PromQL string literal ("...", '...' with Go escapes; `...` raw)."""
    body = literal[1:-1]
    if literal[0] == "`":
        return body
    if literal[0] == "'":
        body = body.replace("\\'", "'").replace('"', '\\"')
    return json.loads('"' + body + '"')


@dataclasses.dataclass
class Selector:
    """One vector selector of an expression: its metric name and label matchers."""

    name: str
    matchers: list[tuple[str, str, str]]  # (label, op, value)

    def matcher(self, label: str) -> tuple[str, str] | None:
        for name, op, value in self.matchers:
            if name == label:
                return op, value
        return None


def vector_selectors(expr: str) -> list[Selector]:
    """Every vector selector of a PromQL expression, in order."""
    # Same length as `expr` throughout, so a position in one is the same in the others.
    strings_masked = _mask(_COMMENT, _mask(_STRING, expr))
    scan = _mask(_MATCHERS, strings_masked)
    scan = _mask(_RANGE, scan)
    scan = _mask(_GROUPING, scan, keep_first_group=True)
    scan = _mask(_OFFSET, scan)
    out: list[Selector] = []
    claimed: set[int] = set()
    for m in _NAME.finditer(scan):
        name = m.group(1)
        rest = scan[m.end() :].lstrip(" \t\n")
        if rest.startswith("(") or name.lower() in KEYWORDS:
            continue
        pos = m.end()
        while pos < len(strings_masked) and strings_masked[pos] in " \t\n":
            pos += 1
        matchers: list[tuple[str, str, str]] = []
        if pos < len(strings_masked) and strings_masked[pos] == "{":
            end = strings_masked.index("}", pos)
            claimed.add(pos)
            matchers = [(l, op, _unquote(v)) for l, op, v in _MATCHER.findall(expr[pos : end + 1])]
        out.append(Selector(name, matchers))
    # Selectors without a name in front: {__name__="x", ...}.
    for m in _MATCHERS.finditer(strings_masked):
        if m.start() not in claimed:
            matchers = [(l, op, _unquote(v)) for l, op, v in _MATCHER.findall(expr[m.start() : m.end()])]
            names = [v for l, op, v in matchers if l == "__name__" and op == "="]
            out.append(Selector(names[0] if names else "", matchers))
    return out


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (not functions, keywords or label names)."""
    return {s.name for s in vector_selectors(expr) if s.name}


GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "${__rate_interval}": "1m",
    "$__interval": "15s",
    "${__interval}": "15s",
    "$__range": "1h",
    "${__range}": "1h",
}


def substitute(expr: str, variables: dict[str, str]) -> str:
    """A Grafana expression with its template variables replaced by concrete values
    (longest names first, so $job never eats $job_x)."""
    values = {**GRAFANA_VARIABLES, **{f"${k}": v for k, v in variables.items()}, **{f"${{{k}}}": v for k, v in variables.items()}}
    for key in sorted(values, key=len, reverse=True):
        expr = expr.replace(key, values[key])
    return expr


def dashboard_expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expression) of every panel target, and the selector inside every
    `label_values(<selector>, <label>)` variable query."""
    out = []

    def panels(items):
        for p in items or []:
            yield p
            yield from panels(p.get("panels"))

    for p in panels(dashboard.get("panels")):
        for t in p.get("targets") or []:
            if t.get("expr"):
                out.append((f"panel {p.get('title')!r} target {t.get('refId')}", t["expr"]))
    for v in (dashboard.get("templating") or {}).get("list") or []:
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.match(r"^label_values\((.*),\s*([a-zA-Z_]\w*)\)$", q or "")
        if v.get("type") == "query" and m:
            out.append((f"variable {v.get('name')}", m.group(1)))
        elif v.get("type") == "query":
            out.append((f"variable {v.get('name')}", q or ""))
    return out


def rule_groups(r: Rendered) -> list[dict[str, Any]]:
    """`spec.groups` of the rendered PrometheusRules: a Prometheus rule file's groups."""
    return [g for pr in r.of_kind("PrometheusRule") for g in (pr.obj.get("spec") or {}).get("groups") or []]


def rule_expressions(groups: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f"rule {rule.get('alert') or rule.get('record')}", rule["expr"]) for g in groups for rule in g.get("rules") or []]


# --- promtool and prometheus ---------------------------------------------------------------


def tool(name: str) -> str | None:
    """Debian's prometheus package puts both in /usr/bin (scripts/tools.sh installs it)."""
    return shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)


def promtool(*args: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess:
    exe = tool("promtool")
    if exe is None:
        raise RuntimeError("promtool is not installed: run scripts/tools.sh (Debian's prometheus package)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def check_rules(groups: list[dict[str, Any]], workdir: pathlib.Path) -> subprocess.CompletedProcess:
    """`promtool check rules` on a rule file holding `groups`."""
    path = workdir / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000))
    return promtool("check", "rules", str(path))


@dataclasses.dataclass
class Target:
    """One scrape target as the Prometheus Operator would make it of a ServiceMonitor
    endpoint: the address (mapped to loopback) and its target labels."""

    address: str
    scheme: str
    path: str
    labels: dict[str, str]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions)."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return bool(selector)


def selected_services(r: Rendered, service_monitor: dict[str, Any]) -> list:
    """The rendered Services a ServiceMonitor selects (label selector and namespaces)."""
    spec = service_monitor.get("spec") or {}
    ns_sel = spec.get("namespaceSelector") or {}
    own = (service_monitor.get("metadata") or {}).get("namespace")
    namespaces = None if ns_sel.get("any") else set(ns_sel.get("matchNames") or [own])
    return [
        s
        for s in r.of_kind("Service")
        if (namespaces is None or s.namespace in namespaces) and _selects(spec.get("selector") or {}, (s.obj["metadata"].get("labels") or {}))
    ]


def targets(r: Rendered, service_monitor: dict[str, Any], address_of) -> list[Target]:
    """The targets of a ServiceMonitor's endpoints: for each selected Service and each pod
    behind it, the operator's target labels (job = the Service's name, as no jobLabel is
    set), at `address_of(workload, container_port)` (the loopback address standing in for
    the pod IP)."""
    from .crossref import target_port, workloads_behind

    out = []
    spec = service_monitor.get("spec") or {}
    for svc in selected_services(r, service_monitor):
        for ep in spec.get("endpoints") or []:
            port = next((p for p in svc.obj["spec"].get("ports") or [] if p.get("name") == ep.get("port")), None)
            if port is None:
                continue
            for w in workloads_behind(r, svc):
                container_port = target_port(w, port)
                labels = {
                    "namespace": svc.namespace,
                    "service": svc.name,
                    "job": svc.name if not spec.get("jobLabel") else (svc.obj["metadata"].get("labels") or {}).get(spec["jobLabel"], svc.name),
                    "pod": f"{w.item.name}-0",
                    "container": w.container.get("name", ""),
                    "endpoint": ep.get("port"),
                }
                out.append(Target(address_of(w, container_port), ep.get("scheme", "http"), ep.get("path", "/metrics"), labels))
    return out


class Prometheus:
    """A real prometheus (Debian's binary) on a free loopback port, with its own TSDB in
    `workdir`, scraping `targets` every `interval` and evaluating `rule_files`."""

    def __init__(self, workdir: pathlib.Path, scrape_targets: list[Target], rule_files: list[pathlib.Path], interval: str = "1s"):
        from .cluster import free_port

        self.workdir = workdir
        self.port = free_port()
        self.log = workdir / "prometheus.log"
        self.popen: subprocess.Popen | None = None
        jobs: dict[str, list[Target]] = {}
        for t in scrape_targets:
            jobs.setdefault(t.labels["job"], []).append(t)
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {
                    "job_name": job,
                    "scheme": ts[0].scheme,
                    "metrics_path": ts[0].path,
                    "static_configs": [{"targets": [t.address], "labels": dict(t.labels)} for t in ts],
                }
                for job, ts in sorted(jobs.items())
            ],
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        exe = tool("prometheus")
        if exe is None:
            raise RuntimeError("prometheus is not installed: run scripts/tools.sh (Debian's prometheus package)")
        (self.workdir / "tsdb").mkdir(exist_ok=True)
        self.popen = subprocess.Popen(
            [
                exe,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.popen.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET /api/v1/<path>; the JSON answer, also for a 400 (errorType, error)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as e:
            return json.load(e)

    def query(self, expr: str) -> dict[str, Any]:
        """An instant query's answer (status, data or errorType/error)."""
        return self.api("query", query=expr)

    def value(self, expr: str) -> float | None:
        """The single value of an instant query that returns one sample (None: no sample)."""
        answer = self.query(expr)
        if answer.get("status") != "success":
            raise RuntimeError(f"{expr}: {answer.get('errorType')}: {answer.get('error')}")
        result = answer["data"]["result"]
        if not result:
            return None
        if len(result) != 1:
            raise RuntimeError(f"{expr}: {len(result)} samples, want 1")
        return float(result[0]["value"][1])

    def wait_for(self, what: str, check, timeout: float = 30, interval: float = 0.5):
        """Polls `check()` until it returns something truthy (returned), or fails naming
        `what` and the last value after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            last = check()
            if last:
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")
            time.sleep(interval)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
