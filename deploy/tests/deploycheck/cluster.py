"""The chart as a cluster, on loopback: each rendered Deployment becomes a real process of
the built binary, with exactly the command, args and environment the Deployment gives its
container. Only what a cluster would provide differently is mapped:

- GRPC_ADDR's port and every containerPort -> a free 127.0.0.1 port (the "pod IP");
  METRICS_ADDR's port (the containerPort http-metrics) -> another one;
- a Service host:port (PAYMENT_URL, `talentshare probe --addr`) -> the loopback address of
  the process behind it (what kube-proxy does), resolved through the rendered Service's
  selector and targetPort;
- DATABASE_URL -> a fresh database on the local PostgreSQL (the rendered URL must be a
  postgres:// URL); AMQP_URL -> the local RabbitMQ; EVENTS_EXCHANGE -> a unique name, so
  the run has its own broker topology (deleted at the end);
- AUTH_JWKS (the issuer's https URL, or the mounted ConfigMap file) -> a JWKS file the
  harness writes (the pods would fetch the URL or read the mount);
- OTEL_EXPORTER_OTLP_ENDPOINT (the collector) -> a loopback OTLP/gRPC receiver
  (`deploycheck/otlp.py`) that keeps what the services export, the URL's path kept;
- the topology hook Job (`talentshare topology`, pre-install) runs first, with its
  rendered command and environment, AMQP_URL and EVENTS_EXCHANGE mapped the same way:
  the services get AMQP_DECLARE_TOPOLOGY=false and only check that the topology is there.

Processes start with no other environment than PATH, in an empty working directory
(which must still be empty when they stop: nothing is written to the "root filesystem").
"""
from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid

from . import binaries, otlp
from .chart import Rendered
from .crossref import Workload, container_env, resolve_host, target_port, workloads, workloads_behind

PG = dict(host="127.0.0.1", port="5432", user="postgres")
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2f"
CONSUMER_NAMES = ("order", "payment", "reservation", "mypage")


# The services' default ports: `talentshare up` and the README walkthrough use them.
RESERVED_PORTS = range(50051, 50055)


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port


def psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", PG["host"], "-p", PG["port"], "-U", PG["user"], "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclasses.dataclass
class Process:
    workload: Workload
    argv: list[str]
    env: dict[str, str]
    port: int
    database: str
    cwd: pathlib.Path
    log: pathlib.Path
    popen: subprocess.Popen | None = None
    exit_code: int | None = None
    stop_seconds: float | None = None
    readiness_during_delay: str | None = None
    metrics_port: int | None = None  # where GET /metrics answers, when METRICS_ADDR is set

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_addr(self) -> str | None:
        return f"127.0.0.1:{self.metrics_port}" if self.metrics_port else None

    @property
    def binary(self) -> str:
        return self.workload.binary

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Cluster:
    """Processes for the rendered Deployments whose binaries are built (see `skipped`)."""

    def __init__(self, rendered: Rendered, label: str):
        self.rendered = rendered
        self.label = label
        self.run_id = uuid.uuid4().hex[:10]
        self.exchange = f"deploycheck-{self.run_id}.events"
        self.workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"deploycheck-{label}-"))
        self.processes: dict[str, Process] = {}  # by Deployment name
        self.skipped: dict[str, str] = {}  # Deployment name -> why it was not started
        self.stopped = False
        self.jwks = self.workdir / "jwks.json"  # outside every process's working directory
        self.signing_key = self.workdir / "jwks-signing-key.pem"
        self.topology: subprocess.CompletedProcess | None = None
        self.topology_skipped: str | None = None  # why the topology Job was not run
        self.otlp: otlp.Receiver | None = None  # the collector, when a service exports spans

    # -- address mapping ----------------------------------------------------------------

    def process_for(self, deployment_name: str) -> Process | None:
        return self.processes.get(deployment_name)

    def service_addr(self, host: str, port: int, namespace: str) -> str:
        """Loopback address behind an in-cluster Service host:port (kube-proxy's job)."""
        svc = resolve_host(self.rendered, host, namespace)
        if svc is None:
            raise LookupError(f"{host} is not a rendered Service")
        spec_port = next((p for p in svc.obj["spec"]["ports"] if p["port"] == port), None)
        if spec_port is None:
            raise LookupError(f"{svc.ref} has no port {port}")
        for w in workloads_behind(self.rendered, svc):
            proc = self.processes.get(w.item.name)
            if proc is None:
                raise LookupError(f"{w.item.ref} behind {svc.ref} is not running ({self.skipped.get(w.item.name)})")
            addr = self._listening(proc, target_port(w, spec_port))
            if addr is None:
                raise LookupError(f"{svc.ref} port {port} targets no port the process listens on")
            return addr
        raise LookupError(f"{svc.ref} selects no rendered Deployment")

    def pod_addr(self, proc: Process, container_port: int) -> str:
        """Loopback address of a container port (probes dial the pod IP and this port)."""
        # Nothing listens on another port in the pod either: a port nobody uses.
        return self._listening(proc, container_port) or f"127.0.0.1:{free_port()}"

    @staticmethod
    def _listening(proc: Process, container_port: int | None) -> str | None:
        """Where the process serves what the pod serves on `container_port`."""
        if container_port is not None and container_port == proc.workload.grpc_port():
            return proc.addr
        if container_port is not None and container_port == proc.workload.metrics_port():
            return proc.metrics_addr
        return None

    def map_url(self, url: str, namespace: str) -> str:
        parts = urllib.parse.urlsplit(url)
        addr = self.service_addr(parts.hostname or "", parts.port or 80, namespace)
        return urllib.parse.urlunsplit(parts._replace(netloc=addr))

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        self._write_jwks()
        self._run_topology_job()
        for w in workloads(self.rendered):
            reason = binaries.not_ready_reason(w.binary)
            if reason:
                self.skipped[w.item.name] = reason
                continue
            self._prepare(w)
        for proc in self.processes.values():
            self._finish_env(proc)
        for proc in self.processes.values():
            proc.popen = subprocess.Popen(
                proc.argv,
                env=proc.env,
                cwd=proc.cwd,
                stdout=proc.log.open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(self.processes))) as pool:
            errors = [e for e in pool.map(lambda p: self._wait_ready(p, deadline), self.processes.values()) if e]
        if errors:
            self.stop(graceful=False)
            raise RuntimeError("\n\n".join(errors))

    def _write_jwks(self) -> None:
        """A fresh RS256 key: its public half is the JWKS the public services load (the
        mapped AUTH_JWKS), the private half signs the test's tokens (`token`)."""
        subprocess.run(["openssl", "genrsa", "-out", str(self.signing_key), "2048"], check=True, capture_output=True, timeout=60)
        modulus = subprocess.run(
            ["openssl", "rsa", "-in", str(self.signing_key), "-noout", "-modulus"], check=True, capture_output=True, text=True, timeout=30
        ).stdout.strip().split("=", 1)[1]
        n = _b64url(bytes.fromhex(modulus))
        jwk = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": f"deploycheck-{self.run_id}", "e": "AQAB", "n": n}
        self.jwks.write_text(json.dumps({"keys": [jwk]}))

    def token(self, proc: "Process", sub: str, roles: tuple[str, ...] = (), talents: tuple[str, ...] = ()) -> str:
        """An end-user JWT for `proc`'s rendered AUTH_ISSUER/AUTH_AUDIENCE, signed with the key
        of the JWKS it loaded (what the identity provider would issue)."""
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": f"deploycheck-{self.run_id}"}
        claims = {"iss": proc.env["AUTH_ISSUER"], "aud": proc.env["AUTH_AUDIENCE"], "sub": sub, "iat": now, "exp": now + 600}
        if roles:
            claims["roles"] = list(roles)
        if talents:
            claims["talents"] = list(talents)
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.signing_key)],
            input=signing_input.encode(), check=True, capture_output=True, timeout=30,
        ).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def _run_topology_job(self) -> None:
        """The pre-install hook Job, as Helm runs it before the Deployments (mapped to the
        local broker and this run's exchange). Skipped, with the reason, when there is none
        or the built talentshare has no `topology` subcommand yet."""
        jobs = [w for w in workloads(self.rendered, hooks=True) if w.item.kind == "Job"]
        if not jobs:
            self.topology_skipped = "no hook Job is rendered"
            return
        w = jobs[0]
        command = list(w.container.get("command") or []) + list(w.container.get("args") or [])
        exe = binaries.path(os.path.basename(command[0]))
        if not exe.exists():
            self.topology_skipped = f"{exe} is not built"
            return
        help_done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=20, env={"PATH": "/usr/bin:/bin"})
        if not any(line.split()[:1] == [command[1]] for line in help_done.stdout.splitlines()):
            self.topology_skipped = f"{exe.name} has no `{command[1]}` subcommand yet"
            return
        env = {v["name"]: v.get("value") for v in w.container.get("env") or []}
        env |= {"AMQP_URL": AMQP_URL, "EVENTS_EXCHANGE": self.exchange, "PATH": "/usr/bin:/bin"}
        missing = [k for k, v in env.items() if v is None]
        if missing:
            raise RuntimeError(f"{w.ref}: no value for {missing}")
        cwd = self.workdir / w.item.name
        cwd.mkdir()
        self.topology = subprocess.run([str(exe), *command[1:]], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
        if self.topology.returncode != 0:
            raise RuntimeError(f"{w.ref}: `{' '.join(command)}` exited {self.topology.returncode}:\n{self.topology.stdout}{self.topology.stderr}")

    def _prepare(self, w: Workload) -> None:
        name = w.item.name
        env, problems = container_env(self.rendered, w)
        if problems:
            raise RuntimeError("; ".join(problems))
        database = f"deploycheck_{self.run_id}_{w.item.name.rsplit('-', 1)[-1]}".replace("-", "_")
        cwd = self.workdir / name
        cwd.mkdir()
        command = list(w.container.get("command") or []) + list(w.container.get("args") or [])
        argv = [str(binaries.path(os.path.basename(command[0])))] + command[1:]
        plain = {k: v.value for k, v in env.items()}
        proc = Process(w, argv, plain, free_port(), database, cwd, self.workdir / f"{name}.log")
        self.processes[name] = proc

    def _finish_env(self, proc: Process) -> None:
        env = proc.env
        ns = proc.workload.item.namespace
        rendered_db = env.get("DATABASE_URL")
        if rendered_db is not None and not rendered_db.startswith(("postgres://", "postgresql://")):
            raise RuntimeError(f"{proc.workload.ref}: DATABASE_URL is not a PostgreSQL URL")
        psql(f'CREATE DATABASE "{proc.database}"')
        env["DATABASE_URL"] = f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{proc.database}"
        env["AMQP_URL"] = AMQP_URL
        env["EVENTS_EXCHANGE"] = self.exchange
        host, _, port = (env.get("GRPC_ADDR") or "").rpartition(":")
        if port != str(proc.workload.grpc_port()):
            raise RuntimeError(f"{proc.workload.ref}: GRPC_ADDR {env.get('GRPC_ADDR')} is not the grpc containerPort")
        env["GRPC_ADDR"] = proc.addr
        if "METRICS_ADDR" in env:
            host, _, port = (env["METRICS_ADDR"] or "").rpartition(":")
            if port != str(proc.workload.metrics_port()):
                raise RuntimeError(f"{proc.workload.ref}: METRICS_ADDR {env['METRICS_ADDR']} is not the http-metrics containerPort")
            proc.metrics_port = free_port()
            env["METRICS_ADDR"] = proc.metrics_addr
        if "PAYMENT_URL" in env:
            env["PAYMENT_URL"] = self.map_url(env["PAYMENT_URL"], ns)
        if "AUTH_JWKS" in env:
            env["AUTH_JWKS"] = str(self.jwks)
        if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            parts = urllib.parse.urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
            if parts.scheme != "http":
                raise RuntimeError(f"{proc.workload.ref}: OTEL_EXPORTER_OTLP_ENDPOINT {parts.geturl()} is not http:// (the binaries have no TLS for OTLP)")
            if self.otlp is None:
                self.otlp = otlp.Receiver()
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = urllib.parse.urlunsplit(parts._replace(netloc=f"127.0.0.1:{self.otlp.port}"))
        missing = [k for k, v in env.items() if v is None]
        if missing:
            raise RuntimeError(f"{proc.workload.ref}: no value for {missing}")
        env["PATH"] = "/usr/bin:/bin"

    def _wait_ready(self, proc: Process, deadline: float) -> str | None:
        ready_name = ((proc.workload.container.get("readinessProbe") or {}).get("grpc") or {}).get("service", "")
        last = ""
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                return f"{proc.binary} exited with {proc.popen.returncode}:\n{proc.log_tail()}"
            last = binaries.health(proc.addr, ready_name)
            if last == "SERVING":
                return None
            time.sleep(0.2)
        return f"{proc.binary} not SERVING for {ready_name!r} in time (last: {last}):\n{proc.log_tail()}"

    def stop(self, graceful: bool = True) -> None:
        """SIGTERM every process (as the kubelet does), note what readiness says during
        SHUTDOWN_DELAY, and wait up to terminationGracePeriodSeconds for each to exit.
        Not graceful: SIGKILL (after a failed start)."""
        if self.stopped:
            return
        self.stopped = True
        started = time.monotonic()
        running = [p for p in self.processes.values() if p.popen and p.popen.poll() is None]
        if not graceful:
            for p in running:
                os.killpg(p.popen.pid, signal.SIGKILL)
                p.popen.wait()
            running = []
        for p in running:
            p.popen.send_signal(signal.SIGTERM)
        for p in running:
            ready_name = ((p.workload.container.get("readinessProbe") or {}).get("grpc") or {}).get("service", "")
            p.readiness_during_delay = binaries.health(p.addr, ready_name)
        for p in running:
            grace = p.workload.pod_spec.get("terminationGracePeriodSeconds", 30)
            try:
                p.exit_code = p.popen.wait(timeout=max(0.1, grace - (time.monotonic() - started)))
                p.stop_seconds = time.monotonic() - started
            except subprocess.TimeoutExpired:
                os.killpg(p.popen.pid, signal.SIGKILL)  # what the kubelet does after the grace period
                p.popen.wait()
                p.exit_code = None
        for p in self.processes.values():
            if p.popen is None:
                continue
            try:
                psql(f'DROP DATABASE IF EXISTS "{p.database}" WITH (FORCE)')
            except subprocess.SubprocessError:
                pass
        self._delete_topology()

    def cleanup(self) -> None:
        self.stop(graceful=False)
        if self.otlp is not None:  # kept through stop(): the services flush their last spans then
            self.otlp.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _delete_topology(self) -> None:
        try:
            import pika
        except ImportError:  # pragma: no cover - pika is installed by scripts/tools.sh
            return
        try:
            conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        except Exception:
            return
        try:
            ch = conn.channel()
            for name in CONSUMER_NAMES:
                for q in (f"{self.exchange}.{name}", f"{self.exchange}.{name}.dlq"):
                    ch.queue_delete(q)
            for x in (self.exchange, f"{self.exchange}.dlx"):
                ch.exchange_delete(x)
        except Exception:
            pass
        finally:
            try:
                conn.close()
            except Exception:
                pass


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
