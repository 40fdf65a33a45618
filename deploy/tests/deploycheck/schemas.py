"""Every rendered object against its schema: Istio and Gateway API kinds against their
CRDs (deploycheck.istio), the Prometheus Operator's kinds against its API types
(deploycheck.monitoring), everything else against Kubernetes 1.33 (deploycheck.k8s)."""
from __future__ import annotations

from . import istio, k8s, monitoring
from .chart import Item


def validate(item: Item) -> list[str]:
    """Findings for one rendered object ([] when it is valid)."""
    if item.is_crd_kind:
        return istio.validate(item.obj)
    if item.is_monitoring:
        return monitoring.validate(item.obj)
    return k8s.validate_core(item.obj)
