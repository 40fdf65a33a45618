"""istio/talentshare.yaml is generated from the chart, and valid."""
import yaml

from deploycheck import istio
from deploycheck.paths import ISTIO_GENERATED

import gen_istio


def test_istio_file_is_in_sync_with_the_chart():
    assert ISTIO_GENERATED.read_text() == gen_istio.render(), (
        "istio/talentshare.yaml differs from the chart: run .venv/bin/python deploy/gen_istio.py"
    )


def test_istio_file_is_valid_istio_1_30():
    docs = [d for d in yaml.safe_load_all(ISTIO_GENERATED.read_text()) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == (
        ["AuthorizationPolicy"] * 6 + ["DestinationRule"] * 4 + ["PeerAuthentication"] + ["RequestAuthentication"] * 3 + ["VirtualService"] * 4
    )
    assert [f for d in docs for f in istio.validate(d)] == []
