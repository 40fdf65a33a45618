"""Cross-references between the rendered objects, and between them and the binaries.

Every check takes a `Rendered` release (and, where it needs them, facts the binaries
reported) and returns findings: one line per problem, [] when all is well. The seeded
defect tests mutate a rendered release and assert that the right check reports it.
"""
from __future__ import annotations

import dataclasses
import posixpath
import re
import urllib.parse
from typing import Any, Iterator

from .chart import Item, Rendered

# Methods that are safe to retry, from the contracts in proto/ (independent of the chart):
# reads, and mutations that are idempotent by a key the caller sends.
RETRY_SAFE = {
    "talentshare.order.v1.OrderService": {
        "PlaceOrder",  # idempotent per request_id: a replay returns the same order, never charges twice
        "CancelOrder",  # idempotent per order_id
        "GetOrder",
        "ListOrders",
    },
    "talentshare.payment.v1.PaymentService": {
        "Pay",  # idempotent per order_id
        "Refund",  # idempotent per payment_id
        "Void",  # idempotent per order_id (first come first served with Pay)
        "GetPayment",
        "ListPayments",
    },
    "talentshare.reservation.v1.ReservationService": {
        "ConfirmReservation",  # idempotent per reservation_id
        "RejectReservation",  # idempotent per reservation_id
        "GetReservation",
        "ListReservations",
    },
    "talentshare.mypage.v1.MyPageService": {"GetMyPage", "GetMyPageEntry"},  # not WatchMyPage (a stream)
}
HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check"
# Methods only talent managers may call (DESIGN.md "Identity and access"): under Istio a rule
# for them must require the roles claim to contain "manager".
MANAGER_METHODS = {
    "talentshare.reservation.v1.ReservationService": {"ConfirmReservation", "RejectReservation", "ListReservations"},
}
MANAGER_CLAIM = "request.auth.claims[roles]"
PUBLIC_SERVICES = {
    "talentshare.order.v1.OrderService",
    "talentshare.reservation.v1.ReservationService",
    "talentshare.mypage.v1.MyPageService",
}
# Retrying RESOURCE_EXHAUSTED re-sends load to a server that is shedding it (or a caller
# over its quota): it amplifies an overload instead of riding out a blip.
NEVER_RETRY_ON = {"resource-exhausted"}
SECRET_ENV = ("DATABASE_URL", "AMQP_URL")
DURATION = re.compile(r"^(\d+)(ms|s|m)?$")


@dataclasses.dataclass
class Workload:
    """One container of a rendered Deployment or hook Pod, with its pod's context."""

    item: Item
    pod_spec: dict[str, Any]
    labels: dict[str, str]
    container: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.item.ref} container {self.container.get('name')}"

    @property
    def binary(self) -> str:
        command = self.container.get("command") or []
        return posixpath.basename(command[0]) if command else ""

    def grpc_port(self) -> int | None:
        return self.port_named("grpc")

    def metrics_port(self) -> int | None:
        return self.port_named("http-metrics")

    def port_named(self, name: str) -> int | None:
        for port in self.container.get("ports") or []:
            if port.get("name") == name:
                return port.get("containerPort")
        return None


def workloads(r: Rendered, hooks: bool = False) -> Iterator[Workload]:
    for item in r.of_kind("Deployment", "Job", "Pod"):
        if item.is_hook != hooks:
            continue
        if item.kind in ("Deployment", "Job"):
            template = item.obj["spec"]["template"]
            pod_spec, labels = template["spec"], (template.get("metadata") or {}).get("labels") or {}
        else:
            pod_spec, labels = item.obj["spec"], item.obj["metadata"].get("labels") or {}
        for container in pod_spec.get("containers") or []:
            yield Workload(item, pod_spec, labels, container)


def parse_duration(text: str) -> float:
    """The binaries' duration syntax (`500ms`, `10s`, `2m`, bare milliseconds) in seconds."""
    m = DURATION.match(str(text).strip())
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    n, unit = int(m.group(1)), m.group(2) or "ms"
    return n / 1000 if unit == "ms" else n if unit == "s" else n * 60


def istio_duration(text: str) -> float:
    total = 0.0
    for n, unit in re.findall(r"([0-9.]+)(ms|h|m|s)", text):
        total += float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


# --- environment ----------------------------------------------------------------------


@dataclasses.dataclass
class EnvSource:
    kind: str  # "literal", "configmap", "secret", "field"
    ref: str  # e.g. "ConfigMap/x key Y"
    value: str | None  # None when it lives outside the release (an existing Secret)


def container_env(r: Rendered, w: Workload) -> tuple[dict[str, EnvSource], list[str]]:
    """The environment Kubernetes gives the container (env over envFrom), and problems."""
    env: dict[str, EnvSource] = {}
    problems: list[str] = []
    external_secret = (r.values.get("connections") or {}).get("existingSecret") or ""
    for source in w.container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            cm = r.get("ConfigMap", name)
            if cm is None:
                problems.append(f"{w.ref}: envFrom ConfigMap {name} is not rendered")
                continue
            for key, value in (cm.obj.get("data") or {}).items():
                env[prefix + key] = EnvSource("configmap", f"ConfigMap/{name} key {key}", value)
        elif "secretRef" in source:
            name = source["secretRef"]["name"]
            secret = r.get("Secret", name)
            if secret is None:
                problems.append(f"{w.ref}: envFrom Secret {name} is not rendered")
                continue
            for key, value in ((secret.obj.get("stringData") or {}) | (secret.obj.get("data") or {})).items():
                env[prefix + key] = EnvSource("secret", f"Secret/{name} key {key}", value)
    for var in w.container.get("env") or []:
        name = var["name"]
        if "value" in var:
            env[name] = EnvSource("literal", "value", var["value"])
        elif "valueFrom" in var:
            vf = var["valueFrom"]
            if "configMapKeyRef" in vf:
                ref = vf["configMapKeyRef"]
                cm = r.get("ConfigMap", ref["name"])
                data = (cm.obj.get("data") or {}) if cm else {}
                if ref["key"] not in data:
                    problems.append(f"{w.ref}: env {name} refers to missing ConfigMap/{ref['name']} key {ref['key']}")
                env[name] = EnvSource("configmap", f"ConfigMap/{ref['name']} key {ref['key']}", data.get(ref["key"]))
            elif "secretKeyRef" in vf:
                ref = vf["secretKeyRef"]
                secret = r.get("Secret", ref["name"])
                if secret is None:
                    if ref["name"] != external_secret or not external_secret:
                        problems.append(f"{w.ref}: env {name} refers to Secret/{ref['name']}, which is neither rendered nor connections.existingSecret")
                    env[name] = EnvSource("secret", f"Secret/{ref['name']} key {ref['key']}", None)
                else:
                    data = (secret.obj.get("stringData") or {}) | (secret.obj.get("data") or {})
                    if ref["key"] not in data:
                        problems.append(f"{w.ref}: env {name} refers to missing Secret/{ref['name']} key {ref['key']}")
                    env[name] = EnvSource("secret", f"Secret/{ref['name']} key {ref['key']}", data.get(ref["key"]))
            else:
                env[name] = EnvSource("field", "valueFrom", None)
    return env, problems


def check_env(r: Rendered, accepted: dict[str, set[str] | None]) -> list[str]:
    """Every env var a service container gets is a setting its binary accepts (`--help`);
    DATABASE_URL and AMQP_URL are set, from a Secret, and never from a ConfigMap."""
    out = []
    for w in workloads(r):
        env, problems = container_env(r, w)
        out += problems
        known = accepted.get(w.binary)
        if known is not None:
            for name, source in sorted(env.items()):
                if name not in known:
                    out.append(f"{w.ref}: env {name} (from {source.ref}) is not a setting {w.binary} accepts")
        for name in SECRET_ENV:
            if name not in env:
                out.append(f"{w.ref}: {name} is not set")
            elif env[name].kind != "secret":
                out.append(f"{w.ref}: {name} comes from {env[name].ref}, not from a Secret")
    for cm in r.of_kind("ConfigMap"):
        for name in SECRET_ENV:
            if name in (cm.obj.get("data") or {}):
                out.append(f"{cm.ref}: holds {name}, which belongs in a Secret")
    return out


def check_broker_users(r: Rendered) -> list[str]:
    """Broker least privilege: each service's AMQP_URL is its own Secret key
    (`<service>-amqp-url`, never the admin's), services do not declare the topology
    (AMQP_DECLARE_TOPOLOGY=false), and a pre-install/pre-upgrade hook Job runs
    `talentshare topology` with the admin URL (from a Secret that exists at that time)."""
    out = []
    keys: dict[str, str] = {}
    for w in workloads(r):
        env, _ = container_env(r, w)
        amqp = next((v for v in w.container.get("env") or [] if v["name"] == "AMQP_URL"), None)
        key = (((amqp or {}).get("valueFrom") or {}).get("secretKeyRef") or {}).get("key")
        svc = w.item.name.rsplit("-", 1)[-1]
        if key != f"{svc}-amqp-url":
            out.append(f"{w.ref}: AMQP_URL comes from Secret key {key!r}, not its own broker user's {svc}-amqp-url")
        if key in keys.values():
            out.append(f"{w.ref}: shares the broker user of Secret key {key!r} with another service")
        keys[w.item.name] = key
        declare = env.get("AMQP_DECLARE_TOPOLOGY")
        if declare is None or declare.value != "false":
            out.append(f"{w.ref}: AMQP_DECLARE_TOPOLOGY is {declare.value if declare else None!r}; services must not declare the topology (their users cannot)")
    jobs = [w for w in workloads(r, hooks=True) if w.item.kind == "Job"]
    topology = [w for w in jobs if (w.container.get("args") or [None])[0] == "topology"]
    if r.of_kind("Deployment") and len(topology) != 1:
        out.append(f"{len(topology)} hook Jobs run `talentshare topology` (want 1)")
    for w in topology:
        ann = w.item.obj["metadata"].get("annotations") or {}
        if set(ann.get("helm.sh/hook", "").split(",")) != {"pre-install", "pre-upgrade"}:
            out.append(f"{w.ref}: hook is {ann.get('helm.sh/hook')!r}, want pre-install,pre-upgrade")
        if posixpath.basename((w.container.get("command") or [""])[0]) != "talentshare":
            out.append(f"{w.ref}: does not run the talentshare binary")
        amqp = next((v for v in w.container.get("env") or [] if v["name"] == "AMQP_URL"), None)
        ref = (((amqp or {}).get("valueFrom") or {}).get("secretKeyRef")) or {}
        if ref.get("key") != "admin-amqp-url":
            out.append(f"{w.ref}: AMQP_URL is not the admin-amqp-url Secret key")
        secret = r.get("Secret", ref.get("name", ""))
        existing = (r.values.get("connections") or {}).get("existingSecret") or ""
        if secret is None and ref.get("name") != existing:
            out.append(f"{w.ref}: Secret {ref.get('name')!r} is neither rendered nor connections.existingSecret")
        elif secret is not None:
            s_ann = secret.obj["metadata"].get("annotations") or {}
            if not secret.is_hook or int(s_ann.get("helm.sh/hook-weight", 0)) >= int(ann.get("helm.sh/hook-weight", 0)):
                out.append(f"{w.ref}: its Secret {secret.name} is not a hook created before it (it would not exist at pre-install)")
        if not any(v["name"] == "EVENTS_EXCHANGE" for v in w.container.get("env") or []):
            out.append(f"{w.ref}: EVENTS_EXCHANGE is not set")
    for secret in r.of_kind("Secret"):
        if not secret.is_hook and "admin-amqp-url" in ((secret.obj.get("stringData") or {}) | (secret.obj.get("data") or {})):
            out.append(f"{secret.ref}: the services' Secret holds the admin broker URL")
    return out


# --- services, ports, probes --------------------------------------------------------------


def selects(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def services_for(r: Rendered, w: Workload) -> list[Item]:
    return [s for s in r.of_kind("Service") if s.namespace == w.item.namespace and selects(s.obj["spec"].get("selector"), w.labels)]


def workloads_behind(r: Rendered, service: Item) -> list[Workload]:
    return [w for w in workloads(r) if w.item.namespace == service.namespace and selects(service.obj["spec"].get("selector"), w.labels)]


def target_port(w: Workload, port: dict[str, Any]) -> int | None:
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    for p in w.container.get("ports") or []:
        if p.get("name") == target:
            return p.get("containerPort")
    return None


def check_ports(r: Rendered) -> list[str]:
    """containerPort `grpc` = every probe's port = GRPC_ADDR's port = the Service targetPort."""
    out = []
    for w in workloads(r):
        port = w.grpc_port()
        if port is None:
            out.append(f"{w.ref}: no container port named grpc")
            continue
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            spec = w.container.get(probe)
            if not spec:
                out.append(f"{w.ref}: no {probe}")
            elif "grpc" not in spec:
                out.append(f"{w.ref}: {probe} is not a native gRPC probe")
            elif spec["grpc"].get("port") != port:
                out.append(f"{w.ref}: {probe} port {spec['grpc'].get('port')} is not the grpc containerPort {port}")
        env, _ = container_env(r, w)
        addr = env.get("GRPC_ADDR")
        if addr is None or addr.value is None:
            out.append(f"{w.ref}: GRPC_ADDR is not set")
        elif not addr.value.endswith(f":{port}"):
            out.append(f"{w.ref}: GRPC_ADDR {addr.value} does not listen on the grpc containerPort {port}")
        services = services_for(r, w)
        if len(services) != 1:
            out.append(f"{w.ref}: selected by {len(services)} Services (want exactly 1)")
        for svc in services:
            ports = svc.obj["spec"].get("ports") or []
            grpc_ports = [p for p in ports if p.get("name") == "grpc"]
            if not grpc_ports:
                out.append(f"{svc.ref}: no port named grpc")
            for p in grpc_ports:
                if p.get("appProtocol") != "grpc":
                    out.append(f"{svc.ref}: port grpc has appProtocol {p.get('appProtocol')!r}, want grpc")
                resolved = target_port(w, p)
                if resolved != port:
                    out.append(f"{svc.ref}: targetPort {p.get('targetPort')!r} resolves to {resolved} in {w.item.ref}, not the grpc containerPort {port}")
    return out


def check_probes(r: Rendered, readiness: dict[str, str | None]) -> list[str]:
    """Readiness asks the name the binary reports; liveness and startup ask ""."""
    out = []
    for w in workloads(r):
        want = readiness.get(w.binary)
        ready = ((w.container.get("readinessProbe") or {}).get("grpc") or {}).get("service")
        if want is not None and ready != want:
            out.append(f"{w.ref}: readinessProbe asks {ready!r}, but {w.binary} reports readiness as {want!r}")
        for probe in ("livenessProbe", "startupProbe"):
            service = ((w.container.get(probe) or {}).get("grpc") or {}).get("service", "")
            if service != "":
                out.append(f"{w.ref}: {probe} asks {service!r}; liveness must ask \"\" (the process answers)")
    return out


def check_shutdown(r: Rendered) -> list[str]:
    """terminationGracePeriodSeconds > SHUTDOWN_DELAY + SHUTDOWN_GRACE."""
    out = []
    for w in workloads(r):
        env, _ = container_env(r, w)
        try:
            delay = parse_duration(env["SHUTDOWN_DELAY"].value)
            grace = parse_duration(env["SHUTDOWN_GRACE"].value)
        except (KeyError, TypeError, ValueError) as e:
            out.append(f"{w.ref}: SHUTDOWN_DELAY/SHUTDOWN_GRACE missing or malformed ({e})")
            continue
        period = w.pod_spec.get("terminationGracePeriodSeconds", 30)
        if not period > delay + grace:
            out.append(f"{w.ref}: terminationGracePeriodSeconds {period} does not exceed SHUTDOWN_DELAY {delay:g}s + SHUTDOWN_GRACE {grace:g}s")
        if delay <= 0:
            out.append(f"{w.ref}: SHUTDOWN_DELAY is 0: endpoints would still send calls while it closes")
    return out


def check_security(r: Rendered) -> list[str]:
    """Non-root (numeric), no privilege escalation, read-only root, no capabilities, seccomp."""
    out = []
    for hooks in (False, True):
        for w in workloads(r, hooks=hooks):
            pod = w.pod_spec.get("securityContext") or {}
            c = w.container.get("securityContext") or {}

            def get(key):
                return c.get(key, pod.get(key))

            if get("runAsNonRoot") is not True:
                out.append(f"{w.ref}: runAsNonRoot is not true")
            if not isinstance(get("runAsUser"), int) or get("runAsUser") == 0:
                out.append(f"{w.ref}: runAsUser is not a non-zero number")
            if c.get("allowPrivilegeEscalation") is not False:
                out.append(f"{w.ref}: allowPrivilegeEscalation is not false")
            if c.get("readOnlyRootFilesystem") is not True:
                out.append(f"{w.ref}: readOnlyRootFilesystem is not true")
            if c.get("privileged"):
                out.append(f"{w.ref}: privileged")
            if (c.get("capabilities") or {}).get("drop") != ["ALL"] or (c.get("capabilities") or {}).get("add"):
                out.append(f"{w.ref}: capabilities are not drop [ALL]")
            seccomp = (c.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
            if seccomp != "RuntimeDefault":
                out.append(f"{w.ref}: seccompProfile is {seccomp!r}, want RuntimeDefault")
            resources = w.container.get("resources") or {}
            if not resources.get("requests") or not (resources.get("limits") or {}).get("memory"):
                out.append(f"{w.ref}: needs resource requests and a memory limit")
    return out


def check_workload_refs(r: Rendered) -> list[str]:
    """HPA, PDB, ServiceAccount and NetworkPolicy references land on rendered objects."""
    out = []
    deployments = r.of_kind("Deployment")
    for d in deployments:
        spec = d.obj["spec"]
        labels = spec["template"]["metadata"].get("labels") or {}
        if not selects(spec["selector"].get("matchLabels"), labels):
            out.append(f"{d.ref}: selector does not match its pod template labels")
        sa = spec["template"]["spec"].get("serviceAccountName")
        if not sa or r.get("ServiceAccount", sa) is None:
            out.append(f"{d.ref}: serviceAccountName {sa!r} is not a rendered ServiceAccount")
        others = [o for o in deployments if o is not d and selects(spec["selector"].get("matchLabels"), o.obj["spec"]["template"]["metadata"].get("labels") or {})]
        if others:
            out.append(f"{d.ref}: its selector also matches {', '.join(o.ref for o in others)}")
    for pod in r.of_kind("Pod"):
        sa = pod.obj["spec"].get("serviceAccountName")
        if sa and r.get("ServiceAccount", sa) is None:
            out.append(f"{pod.ref}: serviceAccountName {sa!r} is not a rendered ServiceAccount")
    for hpa in r.of_kind("HorizontalPodAutoscaler"):
        target = hpa.obj["spec"]["scaleTargetRef"]
        if target.get("kind") != "Deployment" or r.get("Deployment", target.get("name")) is None:
            out.append(f"{hpa.ref}: scaleTargetRef {target.get('kind')}/{target.get('name')} is not a rendered Deployment")
        elif "replicas" in r.get("Deployment", target["name"]).obj["spec"]:
            out.append(f"{hpa.ref}: its Deployment also sets replicas (they would fight)")
        if hpa.obj["spec"].get("minReplicas", 1) > hpa.obj["spec"]["maxReplicas"]:
            out.append(f"{hpa.ref}: minReplicas {hpa.obj['spec'].get('minReplicas')} exceeds maxReplicas {hpa.obj['spec']['maxReplicas']}")
    for pdb in r.of_kind("PodDisruptionBudget"):
        sel = pdb.obj["spec"]["selector"].get("matchLabels")
        targets = [d for d in deployments if selects(sel, d.obj["spec"]["template"]["metadata"].get("labels") or {})]
        if not targets:
            out.append(f"{pdb.ref}: selector matches no rendered Deployment")
        for d in targets:
            hpa = next((h for h in r.of_kind("HorizontalPodAutoscaler") if h.obj["spec"]["scaleTargetRef"].get("name") == d.name), None)
            fewest = hpa.obj["spec"].get("minReplicas", 1) if hpa else d.obj["spec"].get("replicas", 1)
            min_available = pdb.obj["spec"].get("minAvailable")
            max_unavailable = pdb.obj["spec"].get("maxUnavailable")
            if (isinstance(min_available, int) and min_available >= fewest) or max_unavailable in (0, "0%") or (
                fewest <= 1 and min_available is not None
            ):
                out.append(f"{pdb.ref}: at {fewest} replica(s) of {d.ref} it allows no voluntary disruption: node drains would block")
    for np in r.of_kind("NetworkPolicy"):
        sel = np.obj["spec"]["podSelector"].get("matchLabels")
        if not any(selects(sel, d.obj["spec"]["template"]["metadata"].get("labels") or {}) for d in deployments):
            out.append(f"{np.ref}: podSelector matches no rendered Deployment")
    return out


# --- hosts and URLs -----------------------------------------------------------------------------


def resolve_host(r: Rendered, host: str, namespace: str) -> Item | None:
    """The rendered Service an in-cluster host name denotes (name, name.ns, name.ns.svc,
    name.ns.svc.<clusterDomain>), resolved from `namespace` like Istio and DNS do."""
    domain = r.values.get("clusterDomain", "cluster.local")
    for suffix in (f".svc.{domain}", ".svc"):
        if host.endswith(suffix):
            host = host[: -len(suffix)]
            break
    parts = host.split(".")
    if len(parts) == 1:
        name, ns = parts[0], namespace
    elif len(parts) == 2:
        name, ns = parts
    else:
        return None
    svc = r.get("Service", name)
    return svc if svc is not None and svc.namespace == ns else None


def service_ports(svc: Item) -> set[int]:
    return {p["port"] for p in svc.obj["spec"].get("ports") or []}


def check_payment_url(r: Rendered) -> list[str]:
    """PAYMENT_URL names the Service (and port) in front of payment-svc."""
    out = []
    callers = 0
    for w in workloads(r):
        env, _ = container_env(r, w)
        if "PAYMENT_URL" not in env:
            continue
        callers += 1
        url = urllib.parse.urlsplit(env["PAYMENT_URL"].value or "")
        svc = resolve_host(r, url.hostname or "", w.item.namespace)
        if svc is None:
            out.append(f"{w.ref}: PAYMENT_URL host {url.hostname!r} is not a rendered Service")
            continue
        if url.port not in service_ports(svc):
            out.append(f"{w.ref}: PAYMENT_URL port {url.port} is not a port of {svc.ref}")
        behind = {b.binary for b in workloads_behind(r, svc)}
        if behind != {"payment-svc"}:
            out.append(f"{w.ref}: PAYMENT_URL reaches {sorted(behind)}, not payment-svc")
    if callers == 0:
        out.append("no workload sets PAYMENT_URL")
    return out


def probe_command(pod: Item) -> tuple[str, dict[str, str]]:
    """(binary, {--flag: value}) of a `talentshare probe` hook Pod."""
    c = pod.obj["spec"]["containers"][0]
    argv = (c.get("command") or []) + (c.get("args") or [])
    flags = {}
    for i, a in enumerate(argv):
        if a.startswith("--") and i + 1 < len(argv):
            flags[a] = argv[i + 1]
    return posixpath.basename(argv[0]) if argv else "", flags | {"_sub": argv[1] if len(argv) > 1 else ""}


def check_test_hooks(r: Rendered, readiness: dict[str, str | None]) -> list[str]:
    """Each `helm test` Pod runs `talentshare probe` against a Service and the readiness
    name of the binary behind it; every service is covered."""
    out = []
    covered = set()
    for pod in r.of_kind("Pod"):
        if not pod.is_hook:
            continue
        binary, flags = probe_command(pod)
        if binary != "talentshare" or flags["_sub"] != "probe":
            out.append(f"{pod.ref}: does not run `talentshare probe`")
            continue
        host, _, port = flags.get("--addr", "").rpartition(":")
        svc = resolve_host(r, host, pod.namespace)
        if svc is None:
            out.append(f"{pod.ref}: --addr host {host!r} is not a rendered Service")
            continue
        if not port.isdigit() or int(port) not in service_ports(svc):
            out.append(f"{pod.ref}: --addr port {port!r} is not a port of {svc.ref}")
        for w in workloads_behind(r, svc):
            covered.add(w.item.name)
            want = readiness.get(w.binary)
            if want is not None and flags.get("--service") != want:
                out.append(f"{pod.ref}: --service {flags.get('--service')!r} is not {w.binary}'s readiness name {want!r}")
    if (r.values.get("tests") or {}).get("enabled", True):
        for d in r.of_kind("Deployment"):
            if d.name not in covered:
                out.append(f"{d.ref}: no helm test Pod probes it")
    return out


# --- Istio ---------------------------------------------------------------------------------------


def check_istio_hosts(r: Rendered) -> list[str]:
    """DestinationRule and VirtualService hosts (and route destinations) are rendered
    Services; each Service has exactly one of each."""
    out = []
    dr_for: dict[str, int] = {}
    vs_for: dict[str, int] = {}
    for dr in r.of_kind("DestinationRule"):
        svc = resolve_host(r, dr.obj["spec"]["host"], dr.namespace)
        if svc is None:
            out.append(f"{dr.ref}: host {dr.obj['spec']['host']!r} is not a rendered Service")
        else:
            dr_for[svc.name] = dr_for.get(svc.name, 0) + 1
    for vs in r.of_kind("VirtualService"):
        gateways = vs.obj["spec"].get("gateways") or ["mesh"]
        for host in vs.obj["spec"].get("hosts") or []:
            if "mesh" not in gateways:
                continue  # an ingress host (external name), checked by check_ingress
            svc = resolve_host(r, host, vs.namespace)
            if svc is None:
                out.append(f"{vs.ref}: host {host!r} is not a rendered Service")
            else:
                vs_for[svc.name] = vs_for.get(svc.name, 0) + 1
        for route in vs.obj["spec"].get("http") or []:
            for dest in route.get("route") or []:
                d = dest.get("destination") or {}
                svc = resolve_host(r, d.get("host", ""), vs.namespace)
                if svc is None:
                    out.append(f"{vs.ref}: route {route.get('name')}: destination {d.get('host')!r} is not a rendered Service")
                elif "port" in d and d["port"].get("number") not in service_ports(svc):
                    out.append(f"{vs.ref}: route {route.get('name')}: port {d['port'].get('number')} is not a port of {svc.ref}")
    if r.of_kind("DestinationRule") or r.of_kind("VirtualService"):
        for svc in r.of_kind("Service"):
            if dr_for.get(svc.name) != 1:
                out.append(f"{svc.ref}: has {dr_for.get(svc.name, 0)} DestinationRules (want 1)")
            if vs_for.get(svc.name) != 1:
                out.append(f"{svc.ref}: has {vs_for.get(svc.name, 0)} VirtualServices (want 1)")
    return out


def principal_of(r: Rendered, w: Workload) -> str:
    td = (r.values.get("istio") or {}).get("trustDomain", "cluster.local")
    return f"{td}/ns/{w.item.namespace}/sa/{w.pod_spec.get('serviceAccountName', 'default')}"


def allow_rules_for(r: Rendered, w: Workload) -> list[tuple[Item, dict[str, Any]]]:
    """(policy, rule) of every ALLOW AuthorizationPolicy rule that applies to `w`."""
    out = []
    for ap in r.of_kind("AuthorizationPolicy"):
        spec = ap.obj.get("spec") or {}
        if ap.namespace != w.item.namespace or spec.get("action", "ALLOW") != "ALLOW":
            continue
        selector = (spec.get("selector") or {}).get("matchLabels")
        if selector is None or selects(selector, w.labels):
            out += [(ap, rule) for rule in spec.get("rules") or []]
    return out


def ingress_principals(r: Rendered) -> set[str]:
    """The configured ingress gateway principals, plus the one Istio gives the gateway it
    deploys for a rendered Gateway API Gateway of class istio (<gateway>-istio)."""
    istio = r.values.get("istio") or {}
    td = istio.get("trustDomain", "cluster.local")
    out = set((istio.get("authorization") or {}).get("ingressPrincipals") or [])
    for gw in r.of_kind("Gateway"):
        if gw.obj["apiVersion"].startswith("gateway.networking.k8s.io/") and gw.obj["spec"].get("gatewayClassName") == "istio":
            out.add(f"{td}/ns/{gw.namespace}/sa/{gw.name}-istio")
    return out


def check_principals(r: Rendered) -> list[str]:
    """Every AuthorizationPolicy principal is a rendered ServiceAccount in the policy's
    namespace and trust domain, one of the configured ingress gateway principals, or (in
    the metrics rules only) the configured Prometheus; every policy selects rendered pods."""
    out = []
    istio = r.values.get("istio") or {}
    td = istio.get("trustDomain", "cluster.local")
    external = ingress_principals(r)
    prometheus = prometheus_principal(r)
    pod_labels = [w.labels for w in workloads(r)] + [w.labels for w in workloads(r, hooks=True)]
    for ap in r.of_kind("AuthorizationPolicy"):
        spec = ap.obj.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels")
        if selector is not None and not any(selects(selector, labels) for labels in pod_labels):
            out.append(f"{ap.ref}: selector matches no rendered pod")
        for i, rule in enumerate(spec.get("rules") or []):
            for source in rule.get("from") or []:
                for p in (source.get("source") or {}).get("principals") or []:
                    if p in external:
                        continue
                    if p == prometheus and is_metrics_rule(r, rule):
                        continue
                    m = re.match(r"^(.+)/ns/([^/]+)/sa/([^/]+)$", p)
                    if not m:
                        out.append(f"{ap.ref}: rules[{i}]: principal {p!r} is not <trustDomain>/ns/<namespace>/sa/<name>")
                        continue
                    p_td, p_ns, p_sa = m.groups()
                    if p_td != td:
                        out.append(f"{ap.ref}: rules[{i}]: principal {p!r} is not in trust domain {td}")
                    if p_ns != ap.namespace:
                        out.append(f"{ap.ref}: rules[{i}]: principal {p!r} is not in namespace {ap.namespace}")
                    sa = r.get("ServiceAccount", p_sa)
                    if sa is None or sa.namespace != p_ns:
                        out.append(f"{ap.ref}: rules[{i}]: principal {p!r} is not a rendered ServiceAccount")
    return out


def check_authorization(r: Rendered, grpc_service_of: dict[str, str | None]) -> list[str]:
    """Deny by default; PaymentService only from order-svc and reservation-svc (plus the
    helm test identity for the health check) on exact PaymentService method paths; the
    public services from the ingress gateway."""
    if not r.of_kind("AuthorizationPolicy"):
        return []
    out = []
    istio = r.values.get("istio") or {}
    ingress = ingress_principals(r)
    issuer = (r.values.get("auth") or {}).get("issuer", "")
    services = list(workloads(r))
    hook_principals = {principal_of(r, w) for w in workloads(r, hooks=True)}
    # Deny by default: an ALLOW policy with no rules selecting every workload.
    for w in services:
        if not any(
            ap.namespace == w.item.namespace
            and (ap.obj.get("spec") or {}).get("action", "ALLOW") == "ALLOW"
            and not (ap.obj.get("spec") or {}).get("rules")
            and selects(((ap.obj.get("spec") or {}).get("selector") or {}).get("matchLabels"), w.labels)
            for ap in r.of_kind("AuthorizationPolicy")
        ):
            out.append(f"{w.ref}: no deny-by-default (rule-less ALLOW) AuthorizationPolicy selects it")
    by_binary = {w.binary: w for w in services}
    payment_callers = {principal_of(r, by_binary[b]) for b in ("order-svc", "reservation-svc") if b in by_binary}
    for w in services:
        grpc_service = grpc_service_of.get(w.binary)
        for ap, rule in allow_rules_for(r, w):
            principals = [p for s in rule.get("from") or [] for p in (s.get("source") or {}).get("principals") or []]
            request_principals = [p for s in rule.get("from") or [] for p in (s.get("source") or {}).get("requestPrincipals") or []]
            other_sources = [
                k for s in rule.get("from") or [] for k in (s.get("source") or {}) if k not in ("principals", "requestPrincipals")
            ]
            paths = [p for t in rule.get("to") or [] for p in (t.get("operation") or {}).get("paths") or []]
            conditions = {c.get("key"): c for c in rule.get("when") or []}
            where = f"{ap.ref} (for {w.item.ref})"
            if is_metrics_rule(r, rule):
                out += check_metrics_rule(r, rule, where)
                continue
            if is_preflight_rule(rule):
                out += check_preflight_rule(r, rule, w, grpc_service or served_name(w), where)
                continue
            if prometheus_principal(r) in principals:
                out.append(f"{where}: Prometheus may call more than GET /metrics on the metrics port")
            if any((t.get("operation") or {}).get("ports") or (t.get("operation") or {}).get("notPorts") for t in rule.get("to") or []):
                out.append(f"{where}: a gRPC rule names ports; only the metrics rule may")
            if not principals or other_sources or len(rule.get("from") or []) != 1:
                out.append(f"{where}: a rule must name its callers by principal (and request principal) in one source")
            if set(conditions) - {MANAGER_CLAIM} or any(c.get("notValues") for c in conditions.values()):
                out.append(f"{where}: unexpected conditions {sorted(conditions)}")
            claimed = ((w.container.get("readinessProbe") or {}).get("grpc") or {}).get("service")
            if (grpc_service or claimed) in PUBLIC_SERVICES and not set(principals) <= hook_principals:
                if not request_principals:
                    out.append(f"{where}: a public method is allowed without an end-user JWT (no requestPrincipals)")
                for rp in request_principals:
                    if rp != f"{issuer}/*" and not (rp.startswith(f"{issuer}/") and "*" not in rp):
                        out.append(f"{where}: request principal {rp!r} is not one of auth.issuer {issuer!r}")
                managers = {p.rsplit("/", 1)[-1] for p in paths} & MANAGER_METHODS.get(grpc_service or claimed, set())
                claim = conditions.get(MANAGER_CLAIM)
                if managers and (claim is None or claim.get("values") != ["manager"]):
                    out.append(f"{where}: manager methods {sorted(managers)} are allowed without the manager role claim")
            elif request_principals and w.binary == "payment-svc":
                out.append(f"{where}: PaymentService takes end users' requests")
            if not paths:
                out.append(f"{where}: a rule must list the method paths it allows")
            for p in paths:
                if "*" in p:
                    out.append(f"{where}: path {p!r} is a wildcard, not an exact method path")
            for principal in principals:
                if principal in hook_principals:
                    if set(paths) != {HEALTH_CHECK_PATH}:
                        out.append(f"{where}: the helm test identity may only call {HEALTH_CHECK_PATH}, not {paths}")
                elif w.binary == "payment-svc":
                    if principal not in payment_callers:
                        out.append(f"{where}: {principal} may call PaymentService; only order-svc and reservation-svc may")
                    for p in paths:
                        if grpc_service and not p.startswith(f"/{grpc_service}/"):
                            out.append(f"{where}: {principal} may call {p}, which is not a PaymentService method")
                elif principal not in ingress:
                    out.append(f"{where}: {principal} may call a public service; only the ingress gateway may")
        if w.binary != "payment-svc" and not any(
            set(p for s in rule.get("from") or [] for p in (s.get("source") or {}).get("principals") or []) & ingress
            for _, rule in allow_rules_for(r, w)
        ):
            out.append(f"{w.ref}: the ingress gateway cannot reach this public service")
    return out


def check_method_paths(r: Rendered, methods: dict[str, set[str] | None]) -> list[str]:
    """Every method path in an AuthorizationPolicy or a VirtualService match is served by
    the binary behind it (per its reflection); `methods` maps gRPC service -> methods."""
    out = []

    def check(where: str, path: str):
        if path == HEALTH_CHECK_PATH:
            return
        m = re.match(r"^/([A-Za-z0-9_.]+)/([A-Za-z0-9_]+)$", path)
        if not m:
            out.append(f"{where}: {path!r} is not a /package.Service/Method path")
            return
        service, method = m.groups()
        if service not in methods:
            out.append(f"{where}: {path}: no binary serves {service}")
        elif methods[service] is not None and method not in methods[service]:
            out.append(f"{where}: {path}: {service} has no method {method}")

    for ap in r.of_kind("AuthorizationPolicy"):
        if (ap.obj.get("spec") or {}).get("action", "ALLOW") != "ALLOW":
            continue  # DENY rules name what they refuse, not methods
        for rule in (ap.obj.get("spec") or {}).get("rules") or []:
            if is_metrics_rule(r, rule):
                continue  # GET /metrics, checked by check_metrics_rule
            for t in rule.get("to") or []:
                for p in (t.get("operation") or {}).get("paths") or []:
                    check(ap.ref, p)
    for vs in r.of_kind("VirtualService"):
        for route in vs.obj["spec"].get("http") or []:
            for match in route.get("match") or []:
                uri = match.get("uri") or {}
                if "exact" in uri:
                    check(f"{vs.ref} route {route.get('name')}", uri["exact"])
                elif uri:
                    out.append(f"{vs.ref} route {route.get('name')}: match by {list(uri)} instead of an exact method path")
    return out


def check_traffic_policy(r: Rendered) -> list[str]:
    """HTTP/2-sized connection pools and outlier detection on every DestinationRule; the
    tightest in front of payment."""
    out = []
    limits: dict[str, dict[str, float]] = {}
    for dr in r.of_kind("DestinationRule"):
        tp = dr.obj["spec"].get("trafficPolicy") or {}
        http = (tp.get("connectionPool") or {}).get("http") or {}
        tcp = (tp.get("connectionPool") or {}).get("tcp") or {}
        od = tp.get("outlierDetection") or {}
        for field in ("http2MaxRequests", "http1MaxPendingRequests"):
            if field not in http:
                out.append(f"{dr.ref}: connectionPool.http.{field} is not set")
        if http.get("maxRequestsPerConnection") == 1:
            out.append(f"{dr.ref}: maxRequestsPerConnection: 1 defeats HTTP/2 multiplexing")
        if not ("consecutive5xxErrors" in od or "consecutiveGatewayErrors" in od):
            out.append(f"{dr.ref}: outlierDetection counts no errors (consecutive5xxErrors / consecutiveGatewayErrors)")
        for field in ("interval", "baseEjectionTime", "maxEjectionPercent"):
            if field not in od:
                out.append(f"{dr.ref}: outlierDetection.{field} is not set")
        svc = resolve_host(r, dr.obj["spec"]["host"], dr.namespace)
        behind = {w.binary for w in workloads_behind(r, svc)} if svc else set()
        key = "payment" if behind == {"payment-svc"} else dr.name
        limits[key] = {
            "http2MaxRequests": http.get("http2MaxRequests", float("inf")),
            "http1MaxPendingRequests": http.get("http1MaxPendingRequests", float("inf")),
            "maxConnections": tcp.get("maxConnections", float("inf")),
            "consecutive5xxErrors": od.get("consecutive5xxErrors", float("inf")),
            "consecutiveGatewayErrors": od.get("consecutiveGatewayErrors", float("inf")),
            "interval": istio_duration(od.get("interval", "10s")),
        }
    if limits and "payment" not in limits:
        out.append("no DestinationRule in front of payment-svc")
    elif limits:
        for name, other in limits.items():
            if name == "payment":
                continue
            for field, value in limits["payment"].items():
                if value > other[field]:
                    out.append(f"DestinationRule in front of payment is looser than {name} on {field} ({value} > {other[field]})")
    return out


def check_retries(r: Rendered) -> list[str]:
    """Mesh retries only on retry-safe methods (RETRY_SAFE), on gRPC conditions; a route
    that matches anything else (or everything) does not retry."""
    out = []
    for vs in r.of_kind("VirtualService"):
        for route in vs.obj["spec"].get("http") or []:
            where = f"{vs.ref} route {route.get('name')}"
            retries = route.get("retries")
            if retries is None:
                out.append(f"{where}: no retries block (Istio would apply its default retries)")
                continue
            attempts = retries.get("attempts", 0)
            if attempts == 0:
                continue
            matches = route.get("match") or []
            if not matches:
                out.append(f"{where}: retries {attempts}x on a route that matches every method")
            for match in matches:
                path = (match.get("uri") or {}).get("exact", "")
                service, _, method = path.strip("/").partition("/")
                if method not in RETRY_SAFE.get(service, set()):
                    out.append(f"{where}: retries {path or match} which is not safe to retry")
            tokens = set(filter(None, retries.get("retryOn", "").split(",")))
            from .istio import GRPC_RETRY_ON

            for token in sorted(tokens & NEVER_RETRY_ON):
                out.append(f"{where}: retryOn has {token}: retrying a server that sheds load amplifies the overload")
            if not tokens & GRPC_RETRY_ON:
                out.append(f"{where}: retryOn {retries.get('retryOn')!r} names no gRPC condition")
            if "perTryTimeout" in retries and "timeout" in route and istio_duration(retries["perTryTimeout"]) > istio_duration(route["timeout"]):
                out.append(f"{where}: perTryTimeout is longer than the route timeout")
    return out


# --- ingress ---------------------------------------------------------------------------------------


def check_ingress(r: Rendered) -> list[str]:
    """The ingress (Gateway API GRPCRoute, or an Istio VirtualService bound to a Gateway)
    exposes only the public services' methods, each by exact name, on TLS, routed to the
    Service of the binary that serves it: never PaymentService, reflection or health. Its
    gateway verifies end-user JWTs (a RequestAuthentication) when Istio renders."""
    out = []
    exposed: list[tuple[str, str, Item, dict]] = []  # (where, /service/method, route object, backend)
    for route in r.of_kind("GRPCRoute"):
        for i, rule in enumerate(route.obj["spec"].get("rules") or []):
            where = f"{route.ref} rules[{i}]"
            matches = rule.get("matches") or []
            if not matches:
                out.append(f"{where}: matches every method")
            for m in matches:
                method = m.get("method") or {}
                if method.get("type", "Exact") != "Exact" or not method.get("service") or not method.get("method"):
                    out.append(f"{where}: match {m} is not an exact service and method")
                    continue
                for b in rule.get("backendRefs") or []:
                    exposed.append((where, f"/{method['service']}/{method['method']}", route, {"host": b.get("name"), "port": b.get("port")}))
        parents = [p.get("name") for p in route.obj["spec"].get("parentRefs") or []]
        for name in parents:
            gw = r.get("Gateway", name)
            if gw is None:
                out.append(f"{route.ref}: parentRef {name} is not a rendered Gateway")
                continue
            for listener in gw.obj["spec"].get("listeners") or []:
                if listener.get("protocol") != "HTTPS" or (listener.get("tls") or {}).get("mode", "Terminate") != "Terminate":
                    out.append(f"{gw.ref}: listener {listener.get('name')} is not HTTPS terminating TLS")
    for vs in r.of_kind("VirtualService"):
        gateways = vs.obj["spec"].get("gateways") or ["mesh"]
        if "mesh" in gateways:
            continue
        for gname in gateways:
            gw = r.get("Gateway", gname.split("/")[-1])
            if gw is None:
                out.append(f"{vs.ref}: gateway {gname} is not rendered")
                continue
            for server in gw.obj["spec"].get("servers") or []:
                if (server.get("port") or {}).get("protocol") != "HTTPS" or not (server.get("tls") or {}).get("credentialName"):
                    out.append(f"{gw.ref}: server {server.get('port')} does not terminate TLS with a named Secret")
        for route in vs.obj["spec"].get("http") or []:
            where = f"{vs.ref} route {route.get('name')}"
            matches = route.get("match") or []
            if not matches:
                out.append(f"{where}: matches every method")
            for m in matches:
                path = (m.get("uri") or {}).get("exact")
                if not path:
                    out.append(f"{where}: match {m} is not an exact method path")
                    continue
                for d in route.get("route") or []:
                    dest = d.get("destination") or {}
                    exposed.append((where, path, vs, {"host": dest.get("host"), "port": (dest.get("port") or {}).get("number")}))
    for where, path, item, backend in exposed:
        service = path.strip("/").split("/")[0]
        if service not in PUBLIC_SERVICES:
            out.append(f"{where}: exposes {path}, which is not a public service's method")
        svc = resolve_host(r, backend["host"] or "", item.namespace)
        if svc is None:
            out.append(f"{where}: backend {backend['host']!r} is not a rendered Service")
            continue
        if backend["port"] not in service_ports(svc):
            out.append(f"{where}: backend port {backend['port']} is not a port of {svc.ref}")
        behind = workloads_behind(r, svc)
        served = {((w.container.get("readinessProbe") or {}).get("grpc") or {}).get("service") for w in behind}
        if served != {service}:
            out.append(f"{where}: {path} is routed to {svc.ref}, which serves {sorted(s for s in served if s)}")
    if exposed and r.of_kind("PeerAuthentication"):
        gateway_ras = [
            ra for ra in r.of_kind("RequestAuthentication")
            if (ra.obj["spec"].get("targetRefs") or []) or ra.namespace != r.namespace
        ]
        if not gateway_ras:
            out.append("the ingress gateway has no RequestAuthentication: it would pass forged tokens on to the services")
    return out


# --- metrics ---------------------------------------------------------------------------------

SERVER_FAULT_CODES = {"Internal", "Unavailable", "DeadlineExceeded", "Unknown", "DataLoss"}
ISTIO_CERT_FILES = {"caFile": "root-cert.pem", "certFile": "cert-chain.pem", "keyFile": "key.pem"}


def metrics_values(r: Rendered) -> dict[str, Any]:
    return r.values.get("metrics") or {}


def metrics_port(r: Rendered) -> int | None:
    """The metrics port the release serves (None: metrics off)."""
    m = metrics_values(r)
    return m.get("port") if m.get("enabled") else None


def prometheus_principal(r: Rendered) -> str:
    """The configured Prometheus' mesh identity (SPIFFE principal)."""
    prom = metrics_values(r).get("prometheus") or {}
    td = (r.values.get("istio") or {}).get("trustDomain", "cluster.local")
    return f"{td}/ns/{prom.get('namespace')}/sa/{prom.get('serviceAccount')}"


def is_metrics_rule(r: Rendered, rule: dict[str, Any]) -> bool:
    """An ALLOW rule that names only the metrics port."""
    port = metrics_port(r)
    ports = [p for t in rule.get("to") or [] for p in (t.get("operation") or {}).get("ports") or []]
    return port is not None and bool(ports) and set(ports) == {str(port)}


def check_metrics_rule(r: Rendered, rule: dict[str, Any], where: str) -> list[str]:
    """The metrics rule admits the configured Prometheus, by mesh identity alone, to GET
    /metrics on the metrics port: nobody else, nothing more."""
    out = []
    sources = [s.get("source") or {} for s in rule.get("from") or []]
    principals = [p for s in sources for p in s.get("principals") or []]
    if principals != [prometheus_principal(r)] or any(set(s) - {"principals"} for s in sources) or len(sources) != 1:
        out.append(f"{where}: the metrics port admits {sources}, not only Prometheus ({prometheus_principal(r)})")
    for t in rule.get("to") or []:
        op = t.get("operation") or {}
        if op.get("methods") != ["GET"] or op.get("paths") != ["/metrics"] or set(op) - {"ports", "methods", "paths"}:
            out.append(f"{where}: the metrics rule allows {op}, not only GET /metrics")
    if rule.get("when"):
        out.append(f"{where}: the metrics rule has conditions {rule['when']}")
    return out


def check_metrics(r: Rendered) -> list[str]:
    """One metrics port everywhere: METRICS_ADDR's port = the containerPort http-metrics =
    the target of the Service port http-metrics (appProtocol http), never a gRPC port;
    with metrics off, none of them. A rendered ServiceMonitor selects exactly the
    release's four Services on that port, in the release namespace, without a jobLabel
    (the alerts select job = the Service's name); it scrapes https with the Istio
    certificates when the mesh policy renders (STRICT mTLS), http otherwise."""
    out = []
    port = metrics_port(r)
    for w in workloads(r):
        env, _ = container_env(r, w)
        addr = env.get("METRICS_ADDR")
        container_port = w.metrics_port()
        if port is None:
            if addr is not None or container_port is not None:
                out.append(f"{w.ref}: metrics are off, yet METRICS_ADDR or a port http-metrics is set")
            continue
        if container_port is None:
            out.append(f"{w.ref}: no container port named http-metrics")
            continue
        if container_port == w.grpc_port():
            out.append(f"{w.ref}: the metrics port {container_port} is the gRPC port")
        if addr is None or addr.value is None:
            out.append(f"{w.ref}: METRICS_ADDR is not set")
        elif addr.value != f"0.0.0.0:{container_port}":
            out.append(f"{w.ref}: METRICS_ADDR {addr.value} is not 0.0.0.0:<the http-metrics containerPort {container_port}>")
        for svc in services_for(r, w):
            ports = [p for p in svc.obj["spec"].get("ports") or [] if p.get("name") == "http-metrics"]
            if len(ports) != 1:
                out.append(f"{svc.ref}: {len(ports)} ports named http-metrics (want 1)")
            for p in ports:
                if target_port(w, p) != container_port:
                    out.append(f"{svc.ref}: port http-metrics targets {p.get('targetPort')!r}, not the http-metrics containerPort {container_port}")
                if p.get("appProtocol") != "http":
                    out.append(f"{svc.ref}: port http-metrics has appProtocol {p.get('appProtocol')!r}, want http (Istio then applies HTTP policy)")
    services = {s.name for s in r.of_kind("Service") if any(w.binary for w in workloads_behind(r, s))}
    from .monitoring import selected_services

    istio_on = any(i.is_istio for i in r.items)  # the template's talentshare.istioOn
    certs_dir = (metrics_values(r).get("prometheus") or {}).get("istioCertsDir", "")
    for sm in r.of_kind("ServiceMonitor"):
        spec = sm.obj.get("spec") or {}
        selected = {s.name for s in selected_services(r, sm.obj)}
        if selected != services:
            out.append(f"{sm.ref}: selects Services {sorted(selected)}, want {sorted(services)}")
        if spec.get("jobLabel"):
            out.append(f"{sm.ref}: jobLabel {spec['jobLabel']!r}: the alerts select job = the Service's name")
        if (spec.get("namespaceSelector") or {}).get("matchNames") != [sm.namespace]:
            out.append(f"{sm.ref}: namespaceSelector is not its own namespace {sm.namespace}")
        endpoints = spec.get("endpoints") or []
        if [e.get("port") for e in endpoints] != ["http-metrics"]:
            out.append(f"{sm.ref}: endpoints scrape ports {[e.get('port') for e in endpoints]}, want [http-metrics]")
        for e in endpoints:
            if e.get("path", "/metrics") != "/metrics":
                out.append(f"{sm.ref}: scrapes path {e.get('path')!r}, the services serve /metrics")
            tls = e.get("tlsConfig") or {}
            if istio_on:
                if e.get("scheme") != "https":
                    out.append(f"{sm.ref}: scheme {e.get('scheme')!r} under STRICT mTLS: the sidecar refuses plaintext")
                for key, name in ISTIO_CERT_FILES.items():
                    if tls.get(key) != f"{certs_dir}/{name}":
                        out.append(f"{sm.ref}: tlsConfig.{key} is {tls.get(key)!r}, want the Istio certificate {certs_dir}/{name}")
            elif e.get("scheme", "http") != "http" or tls:
                out.append(f"{sm.ref}: scheme {e.get('scheme')!r} / tlsConfig without the mesh: the services serve plain http")
    return out


def check_alert_rules(r: Rendered) -> list[str]:
    """Every rendered alert has a severity label and summary, description and runbook
    annotations; every vector selector in its expression is scoped to this release's
    scrape targets (namespace = the release namespace, job =~ exactly its Services' names);
    the error ratio counts server faults only."""
    from .monitoring import rule_groups, vector_selectors

    out = []
    services = sorted(s.name for s in r.of_kind("Service") if workloads_behind(r, s))
    for group in rule_groups(r):
        for rule in group.get("rules") or []:
            name = rule.get("alert") or rule.get("record")
            where = f"PrometheusRule alert {name}"
            if rule.get("alert"):
                if not (rule.get("labels") or {}).get("severity"):
                    out.append(f"{where}: no severity label")
                for key in ("summary", "description", "runbook"):
                    if not (rule.get("annotations") or {}).get(key):
                        out.append(f"{where}: no {key} annotation")
            for sel in vector_selectors(str(rule.get("expr", ""))):
                ns = sel.matcher("namespace")
                job = sel.matcher("job")
                if ns != ("=", r.namespace):
                    out.append(f"{where}: {sel.name} is not scoped to namespace {r.namespace} ({ns})")
                if job is None or job[0] not in ("=", "=~") or sorted(s for s in services if re.fullmatch(job[1], s)) != services:
                    out.append(f"{where}: {sel.name} is not scoped to this release's jobs {services} ({job})")
                elif any(re.fullmatch(job[1], other) for other in (f"{r.release}-other", "other-order", "order")):
                    out.append(f"{where}: {sel.name}'s job matcher {job[1]!r} also matches other releases' jobs")
                code = sel.matcher("grpc_code")
                if code and code[0] == "=~" and set(code[1].split("|")) - SERVER_FAULT_CODES:
                    out.append(f"{where}: counts {sorted(set(code[1].split('|')) - SERVER_FAULT_CODES)} as server faults")
    return out


def check_metrics_network(r: Rendered) -> list[str]:
    """NetworkPolicies admit only the configured Prometheus pods (its namespace AND its pod
    labels, in one peer) to the metrics port, and no rule admits every port."""
    port = metrics_port(r)
    if port is None:
        return []
    prom = metrics_values(r).get("prometheus") or {}
    want = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": prom.get("namespace")}},
        "podSelector": {"matchLabels": prom.get("podLabels") or {}},
    }
    out = []
    for np in r.of_kind("NetworkPolicy"):
        admitted = False
        for i, rule in enumerate(np.obj["spec"].get("ingress") or []):
            ports = rule.get("ports")
            if not ports:
                out.append(f"{np.ref}: ingress[{i}] admits every port, the metrics port included")
                continue
            if any(p.get("port") in ("http-metrics", port) for p in ports):
                if rule.get("from") != [want]:
                    out.append(f"{np.ref}: ingress[{i}] admits {rule.get('from')} to the metrics port; only {want}")
                admitted = True
        if not admitted:
            out.append(f"{np.ref}: Prometheus cannot reach the metrics port (no ingress rule for it)")
    return out


# --- tracing ---------------------------------------------------------------------------------

OTLP_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
# The exporter prefers it over OTLP_ENV: set, it would send the spans elsewhere.
OTLP_TRACES_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"


def otlp_endpoint(r: Rendered) -> str:
    """tracing.otlpEndpoint ("" when no spans are exported)."""
    return (r.values.get("tracing") or {}).get("otlpEndpoint") or ""


def otlp_port(endpoint: str) -> int:
    """The port the exporter dials: the URL's, or http's 80 (it assumes no 4317)."""
    return urllib.parse.urlsplit(endpoint).port or 80


def egress_opens(rule: dict[str, Any], port: int) -> bool:
    """A NetworkPolicy egress rule lets TCP `port` out (a rule without ports: every port)."""
    ports = rule.get("ports")
    if not ports:
        return True
    for p in ports:
        lo = p.get("port")
        if p.get("protocol", "TCP") == "TCP" and (lo is None or (isinstance(lo, int) and lo <= port <= p.get("endPort", lo))):
            return True
    return False


def check_tracing(r: Rendered) -> list[str]:
    """Every service gets OTEL_EXPORTER_OTLP_ENDPOINT = tracing.otlpEndpoint, and none when
    it is empty; never the traces-only variable (it would win). With an endpoint, every
    rendered NetworkPolicy restricting egress lets TCP to the endpoint's port out."""
    endpoint = otlp_endpoint(r)
    out = []
    for w in workloads(r):
        env, _ = container_env(r, w)
        if OTLP_TRACES_ENV in env:
            out.append(f"{w.ref}: {OTLP_TRACES_ENV} is set (from {env[OTLP_TRACES_ENV].ref}): it wins over tracing.otlpEndpoint")
        got = env.get(OTLP_ENV)
        if not endpoint:
            if got is not None:
                out.append(f"{w.ref}: tracing.otlpEndpoint is empty, yet {OTLP_ENV} is {got.value!r} (from {got.ref})")
        elif got is None:
            out.append(f"{w.ref}: {OTLP_ENV} is not set, though tracing.otlpEndpoint is {endpoint}: its spans are not exported")
        elif got.value != endpoint:
            out.append(f"{w.ref}: {OTLP_ENV} is {got.value!r} (from {got.ref}), not tracing.otlpEndpoint {endpoint!r}")
    if endpoint:
        port = otlp_port(endpoint)
        for np in r.of_kind("NetworkPolicy"):
            spec = np.obj.get("spec") or {}
            if "Egress" not in (spec.get("policyTypes") or []):
                continue
            if not any(egress_opens(rule, port) for rule in spec.get("egress") or []):
                out.append(f"{np.ref}: no egress rule lets TCP {port} out to the OTLP collector {endpoint}: its spans are dropped")
    return out


# Browsers (gRPC-Web): grpcWeb.corsAllowedOrigins reaches the public services as
# CORS_ALLOWED_ORIGINS, and under Istio opens the CORS preflights (OPTIONS, no token) from
# the ingress gateway on their method paths, and nothing else.
CORS_ENV = "CORS_ALLOWED_ORIGINS"
PUBLIC_BINARIES = {"order-svc", "reservation-svc", "mypage-svc"}


def cors_origins(r: Rendered) -> list[str]:
    """grpcWeb.corsAllowedOrigins ([] when browsers of other origins get no CORS grants)."""
    return list((r.values.get("grpcWeb") or {}).get("corsAllowedOrigins") or [])


def is_preflight_rule(rule: dict[str, Any]) -> bool:
    """An ALLOW rule for OPTIONS only: the CORS preflight rule."""
    ops = [t.get("operation") or {} for t in rule.get("to") or []]
    return bool(ops) and all(o.get("methods") == ["OPTIONS"] for o in ops)


def served_name(w: Workload) -> str | None:
    """The gRPC service a workload serves, as its readiness probe names it."""
    return ((w.container.get("readinessProbe") or {}).get("grpc") or {}).get("service")


def check_preflight_rule(r: Rendered, rule: dict[str, Any], w: Workload, grpc_service: str | None, where: str) -> list[str]:
    """The preflight rule is there only with origins, only on a public service, from the
    ingress gateway's principals alone (no JWT: a preflight has none), OPTIONS on exact
    method paths of that service, no ports, no conditions."""
    out = []
    if not cors_origins(r):
        out.append(f"{where}: allows OPTIONS (CORS preflights) though grpcWeb.corsAllowedOrigins is empty")
    if w.binary not in PUBLIC_BINARIES:
        out.append(f"{where}: allows OPTIONS to {w.binary}, which never speaks gRPC-Web")
    froms = rule.get("from") or []
    sources = [f.get("source") or {} for f in froms]
    principals = [p for s in sources for p in s.get("principals") or []]
    if len(froms) != 1 or not principals or any(set(s) != {"principals"} for s in sources):
        out.append(f"{where}: the OPTIONS rule must name only the ingress gateway's principals, in one source")
    for p in principals:
        if p not in ingress_principals(r):
            out.append(f"{where}: {p} may send OPTIONS to a public service; only the ingress gateway may")
    if rule.get("when"):
        out.append(f"{where}: the OPTIONS rule has conditions")
    for t in rule.get("to") or []:
        op = t.get("operation") or {}
        if set(op) != {"methods", "paths"}:
            out.append(f"{where}: the OPTIONS rule's operation has {sorted(set(op) - {'methods'})}; it must list exact method paths only")
        for path in op.get("paths") or []:
            if "*" in path or not grpc_service or not re.fullmatch(rf"/{re.escape(grpc_service)}/[A-Za-z0-9_]+", path):
                out.append(f"{where}: OPTIONS on {path!r}, which is not an exact method path of {grpc_service}")
    return out


def check_grpc_web(r: Rendered) -> list[str]:
    """order, reservation and mypage get CORS_ALLOWED_ORIGINS = the comma-joined
    grpcWeb.corsAllowedOrigins (none when it is empty); payment-svc never does. Under
    Istio's authorization, evaluated: with origins, the ingress gateway's OPTIONS without
    a token reaches every method path of each public service, and no other OPTIONS (other
    callers, payment, health, reflection) and no tokenless POST gets through; without
    origins no OPTIONS rule renders."""
    origins = cors_origins(r)
    want = ",".join(origins)
    out = []
    for w in workloads(r):
        env, _ = container_env(r, w)
        got = env.get(CORS_ENV)
        if w.binary not in PUBLIC_BINARIES or not origins:
            if got is not None:
                why = "payment-svc never speaks gRPC-Web" if w.binary not in PUBLIC_BINARIES else "grpcWeb.corsAllowedOrigins is empty"
                out.append(f"{w.ref}: {CORS_ENV} is {got.value!r} (from {got.ref}), yet {why}")
        elif got is None:
            out.append(f"{w.ref}: {CORS_ENV} is not set, though grpcWeb.corsAllowedOrigins is {origins}: browsers there get no CORS answer")
        elif got.value != want:
            out.append(f"{w.ref}: {CORS_ENV} is {got.value!r} (from {got.ref}), not grpcWeb.corsAllowedOrigins {want!r}")
    if not r.of_kind("AuthorizationPolicy"):
        return out
    gateways = sorted(ingress_principals(r))
    others = sorted({principal_of(r, x) for x in workloads(r)} | {principal_of(r, x) for x in workloads(r, hooks=True)})
    issuer = (r.values.get("auth") or {}).get("issuer", "")
    for w in workloads(r):
        port = w.grpc_port()
        name = served_name(w)
        decide = Authorizer(r, w)
        paths = sorted(
            {p for _, rule in allow_rules_for(r, w) for t in rule.get("to") or [] for p in (t.get("operation") or {}).get("paths") or []}
            - {HEALTH_CHECK_PATH, "/metrics"}
        )
        public = w.binary in PUBLIC_BINARIES
        wrong = []
        for path in paths + [HEALTH_CHECK_PATH, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"]:
            app = name is not None and path.startswith(f"/{name}/")
            for principal in [*gateways, *others, None]:
                allowed = decide(Request(principal, port, "OPTIONS", path))
                want_allowed = bool(origins) and public and app and principal in gateways
                if allowed != want_allowed:
                    wrong.append(f"{'allows' if allowed else 'refuses'} OPTIONS {path} from {principal}")
                if decide(Request(principal, port, "POST", path)) and public and app:
                    wrong.append(f"allows POST {path} from {principal} without a token")
            if public and app and origins and gateways and not decide(Request(gateways[0], port, "POST", path, f"{issuer}/alice", ("manager",))):
                wrong.append(f"refuses POST {path} from the gateway with a manager's token")
        out += [f"{w.ref}: {x}" for x in sorted(set(wrong))[:5]]
        if len(set(wrong)) > 5:
            out.append(f"{w.ref}: ... and {len(set(wrong)) - 5} more")
    return out


# Istio authorization, evaluated: the policies of a workload decide a request as istiod's
# rules say (DENY first; then allowed if no ALLOW policy applies or one of its rules
# matches), for the fields the chart uses.


@dataclasses.dataclass(frozen=True)
class Request:
    """A request as the sidecar sees it: peer principal (None: plaintext), request
    principal and claims (a verified JWT), destination port, method and path."""

    principal: str | None
    port: int
    method: str
    path: str
    request_principal: str | None = None
    roles: tuple[str, ...] = ()


def _istio_match(pattern: str, value: str | None) -> bool:
    """Istio's string match: exact, prefix*, *suffix, or * (any non-empty value)."""
    if value is None:
        return False
    if pattern == "*":
        return value != ""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


def _field(values: list[str] | None, not_values: list[str] | None, value: str | None) -> bool:
    if values is not None and not any(_istio_match(v, value) for v in values):
        return False
    if not_values is not None and any(_istio_match(v, value) for v in not_values):
        return False
    return True


def _rule_matches(rule: dict[str, Any], req: Request, roles_claim: str) -> bool:
    froms = rule.get("from") or []
    if froms and not any(
        _field(s.get("principals"), s.get("notPrincipals"), req.principal)
        and _field(s.get("requestPrincipals"), s.get("notRequestPrincipals"), req.request_principal)
        and _field(s.get("namespaces"), s.get("notNamespaces"), (re.match(r"^.+/ns/([^/]+)/sa/", req.principal or "") or [None, None])[1])
        and not (set(s) - {"principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals", "namespaces", "notNamespaces"})
        for s in (f.get("source") or {} for f in froms)
    ):
        return False
    tos = rule.get("to") or []
    if tos and not any(
        _field(o.get("ports"), o.get("notPorts"), str(req.port))
        and _field(o.get("methods"), o.get("notMethods"), req.method)
        and _field(o.get("paths"), o.get("notPaths"), req.path)
        and not (set(o) - {"ports", "notPorts", "methods", "notMethods", "paths", "notPaths"})
        for o in (t.get("operation") or {} for t in tos)
    ):
        return False
    for c in rule.get("when") or []:
        if c.get("key") == roles_claim:
            ok = any(v in req.roles for v in c.get("values") or []) if c.get("values") else True
            ok = ok and not any(v in req.roles for v in c.get("notValues") or [])
            if not ok:
                return False
        else:
            return False  # a condition this evaluator does not know: never matches
    return True


def authorize(r: Rendered, w: Workload, req: Request) -> bool:
    """Whether the AuthorizationPolicies of the release let `req` reach workload `w`."""
    return Authorizer(r, w)(req)


class Authorizer:
    """The AuthorizationPolicies that apply to one workload, ready to decide requests."""

    def __init__(self, r: Rendered, w: Workload):
        claim_path = (r.values.get("auth") or {}).get("rolesClaim", "roles")
        self.roles_claim = "request.auth.claims" + "".join(f"[{p}]" for p in claim_path.split("."))
        self.applying = [
            ap.obj.get("spec") or {}
            for ap in r.of_kind("AuthorizationPolicy")
            if ap.namespace == w.item.namespace
            and ((ap.obj.get("spec") or {}).get("selector") is None or selects(((ap.obj.get("spec") or {}).get("selector") or {}).get("matchLabels"), w.labels))
        ]

    def __call__(self, req: Request) -> bool:
        return _decide(self.applying, req, self.roles_claim)


def _decide(applying: list[dict[str, Any]], req: Request, roles_claim: str) -> bool:
    if not applying:
        return True
    for spec in applying:
        if spec.get("action") == "DENY" and any(_rule_matches(rule, req, roles_claim) for rule in spec.get("rules") or []):
            return False
    allows = [spec for spec in applying if spec.get("action", "ALLOW") == "ALLOW"]
    if not allows:
        return True
    return any(_rule_matches(rule, req, roles_claim) for spec in allows for rule in spec.get("rules") or [])


def probe_requests(r: Rendered, w: Workload) -> list[Request]:
    """Requests from every kind of caller to both ports of `w`: Prometheus, the gateway,
    each service and the helm test identity, a stranger in Prometheus' namespace, a
    Prometheus-named account elsewhere, and plaintext; GET and POST; /metrics, other paths
    and each gRPC method path the mesh knows of the workload."""
    td = (r.values.get("istio") or {}).get("trustDomain", "cluster.local")
    prom = metrics_values(r).get("prometheus") or {}
    principals: list[str | None] = [
        prometheus_principal(r),
        f"{td}/ns/{prom.get('namespace')}/sa/grafana",
        f"{td}/ns/{w.item.namespace}-other/sa/{prom.get('serviceAccount')}",
        None,
        *sorted(ingress_principals(r)),
        *sorted({principal_of(r, x) for x in workloads(r)} | {principal_of(r, x) for x in workloads(r, hooks=True)}),
    ]
    issuer = (r.values.get("auth") or {}).get("issuer", "")
    paths = {"/metrics", "/metrics/", "/", "/debug", HEALTH_CHECK_PATH}
    for spec in Authorizer(r, w).applying:
        for rule in spec.get("rules") or []:
            for t in rule.get("to") or []:
                paths |= set((t.get("operation") or {}).get("paths") or [])
    ports = [p for p in (w.grpc_port(), w.metrics_port()) if p is not None]
    out = []
    for principal in principals:
        for request_principal, roles in ((None, ()), (f"{issuer}/alice", ()), (f"{issuer}/lee", ("manager",))):
            for port in ports:
                for method in ("GET", "POST"):
                    for path in sorted(paths):
                        out.append(Request(principal, port, method, path, request_principal, roles))
    return out


def check_metrics_access(r: Rendered) -> list[str]:
    """Under Istio's authorization: on the metrics port only the configured Prometheus
    identity, only GET /metrics, is allowed (a plaintext caller has no identity and is
    refused); Prometheus' identity reaches nothing on the gRPC port; and the metrics port
    keeps STRICT mTLS (no PeerAuthentication port exception)."""
    port = metrics_port(r)
    if port is None or not r.of_kind("AuthorizationPolicy"):
        return []
    out = []
    prometheus = prometheus_principal(r)
    for w in workloads(r):
        wrong: list[str] = []
        decide = Authorizer(r, w)
        for req in probe_requests(r, w):
            allowed = decide(req)
            want_allowed = req.principal == prometheus and req.method == "GET" and req.path == "/metrics"
            if req.port == w.metrics_port() and allowed != want_allowed:
                wrong.append(f"{'allows' if allowed else 'refuses'} {req.method} {req.path} on the metrics port from {req.principal}")
            if req.port == w.grpc_port() and allowed and req.principal == prometheus:
                wrong.append(f"allows {req.method} {req.path} on the gRPC port from Prometheus")
        out += [f"{w.ref}: {x}" for x in sorted(set(wrong))[:5]]
        if len(set(wrong)) > 5:
            out.append(f"{w.ref}: ... and {len(set(wrong)) - 5} more")
    for pa in r.of_kind("PeerAuthentication"):
        for key, setting in ((pa.obj.get("spec") or {}).get("portLevelMtls") or {}).items():
            if str(key) == str(port) and (setting or {}).get("mode") != "STRICT":
                out.append(f"{pa.ref}: the metrics port is {setting.get('mode')}: a plaintext scrape carries no identity the policy could admit")
    return out
