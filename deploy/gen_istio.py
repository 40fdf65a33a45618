"""Writes istio/talentshare.yaml: the Istio resources rendered from the Helm chart.

The chart (helm/talentshare/templates/istio/) is the one source of truth; this file is a
generated copy for `kubectl apply` when the chart was installed without istio.enabled,
with the release name `talentshare` in the namespace `talentshare` and default values.
deploy/tests/test_istio_sync.py fails when the copy is out of date; refresh it with

    .venv/bin/python deploy/gen_istio.py
"""
from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "tests"))

import helm_python as helm  # noqa: E402

from deploycheck.paths import CHART, ISTIO_GENERATED  # noqa: E402

RELEASE = NAMESPACE = "talentshare"
VALUES = {"istio": {"enabled": True}}
HEADER = """\
# GENERATED from the Helm chart by deploy/gen_istio.py: do not edit (edit
# helm/talentshare/templates/istio/ and values.yaml, then run `.venv/bin/python deploy/gen_istio.py`).
#
# The Istio policy of a `helm install talentshare helm/talentshare -n talentshare` release
# (default values): DestinationRules, VirtualServices, PeerAuthentication (STRICT) and
# AuthorizationPolicies. Apply it with `kubectl apply -n talentshare -f istio/talentshare.yaml`,
# or install the chart with `--set istio.enabled=true` instead (any release name/namespace).
"""


def render() -> str:
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(VALUES, name=RELEASE, namespace=NAMESPACE, is_install=True)
    parts = []
    for source in sorted(manifests):
        if "/templates/istio/" in source and manifests[source].strip():
            body = manifests[source].strip("\n")
            if body.startswith("---\n"):
                body = body[4:]
            parts.append(f"# Source: {source}\n{body}\n")
    return HEADER + "---\n" + "---\n".join(parts)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if ISTIO_GENERATED.exists() and ISTIO_GENERATED.read_text() == text else 1)
    ISTIO_GENERATED.write_text(text)
    print(f"wrote {ISTIO_GENERATED}")
