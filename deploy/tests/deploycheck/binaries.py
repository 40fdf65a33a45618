"""What the built binaries say about themselves: the settings they accept (`--help`), and,
once running, the gRPC services and methods they serve (reflection) and their health."""
from __future__ import annotations

import functools
import json
import pathlib
import re
import subprocess

from .paths import BIN_DIR, GRPCURL

ENV_IN_HELP = re.compile(r"\[env: ([A-Z][A-Z0-9_]*)[=\]]")
INFRA_SERVICES = {"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}


def path(binary: str) -> pathlib.Path:
    return BIN_DIR / binary


@functools.lru_cache(maxsize=None)
def help_text(binary: str) -> str:
    """`<binary> --help`, or "" when the binary is missing."""
    exe = path(binary)
    if not exe.exists():
        return ""
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=20, env={"PATH": "/usr/bin:/bin"})
    return done.stdout


def accepted_env(binary: str) -> set[str] | None:
    """Every `[env: NAME]` the binary's --help lists; None when it lists none (not built, or
    still a stub: a real service always has settings)."""
    names = set(ENV_IN_HELP.findall(help_text(binary)))
    return names or None


def not_ready_reason(binary: str) -> str | None:
    """Why a binary cannot be checked yet, or None when it can."""
    exe = path(binary)
    if not exe.exists():
        return f"{exe} is not built"
    if accepted_env(binary) is None:
        return f"{binary} --help lists no settings (the service is not implemented yet)"
    return None


def grpcurl(*args: str, data: dict | None = None, timeout: float = 10) -> subprocess.CompletedProcess:
    cmd = [GRPCURL, "-plaintext", "-max-time", "5"]
    if data is not None:
        cmd += ["-d", json.dumps(data)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)


def served_services(addr: str) -> set[str]:
    """The gRPC services the server at `addr` lists through reflection."""
    done = grpcurl(addr, "list")
    if done.returncode != 0:
        raise RuntimeError(f"grpcurl list {addr}: {done.stderr.strip()}")
    return set(done.stdout.split())


def served_methods(addr: str, service: str) -> set[str]:
    """Method names (without the service) of `service` at `addr`, through reflection."""
    done = grpcurl(addr, "list", service)
    if done.returncode != 0:
        raise RuntimeError(f"grpcurl list {addr} {service}: {done.stderr.strip()}")
    return {line.rsplit(".", 1)[1] for line in done.stdout.split() if line.startswith(service + ".")}


def health(addr: str, service: str) -> str:
    """What grpc.health.v1.Health/Check says for `service` at `addr` (the status name, or
    the error), exactly the call kubelet's native gRPC probe makes."""
    done = grpcurl(addr, "grpc.health.v1.Health/Check", data={"service": service})
    if done.returncode != 0:
        return f"error: {' '.join(done.stderr.split())}"
    return json.loads(done.stdout).get("status", "UNKNOWN")
