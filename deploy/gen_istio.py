"""Writes istio/talentshare.yaml: the Istio resources rendered from the Helm chart.

The chart (helm/talentshare/templates/istio/) is the one source of truth; this file is a
generated copy for `kubectl apply` when the chart was installed with the Istio resources
off, with the release name `talentshare` in the namespace `talentshare` and default values
in a cluster that serves Istio's APIs (so istio.enabled: auto is on), plus the example
auth settings of deploy/tests/deploycheck/chart.py REQUIRED_VALUES (issuer
https://auth.talentshare.example): the RequestAuthentications and request principals name
that issuer.
deploy/tests/test_istio_sync.py fails when the copy is out of date; refresh it with

    .venv/bin/python deploy/gen_istio.py
"""
from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "tests"))

from deploycheck import chart  # noqa: E402
from deploycheck.paths import ISTIO_GENERATED  # noqa: E402

RELEASE = NAMESPACE = "talentshare"
VALUES = chart.REQUIRED_VALUES
HEADER = """\
# GENERATED from the Helm chart by deploy/gen_istio.py: do not edit (edit
# helm/talentshare/templates/istio/ and values.yaml, then run `.venv/bin/python deploy/gen_istio.py`).
#
# The Istio policy of a `helm install talentshare helm/talentshare -n talentshare` release
# (default values, Istio's APIs served): DestinationRules, VirtualServices, PeerAuthentication
# (STRICT), RequestAuthentications and AuthorizationPolicies. The end-user JWT issuer here is
# the EXAMPLE https://auth.talentshare.example: for your identity provider, install the chart
# with auth.issuer/audience/jwksUri instead (it renders these resources itself in an Istio
# cluster, for any release name/namespace). Apply with
# `kubectl apply -n talentshare -f istio/talentshare.yaml`.
"""


def render() -> str:
    manifests, _ = chart.render_manifests(VALUES, release=RELEASE, namespace=NAMESPACE, api_versions=chart.ISTIO_APIS)
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
