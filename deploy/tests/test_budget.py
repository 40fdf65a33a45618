"""The PostgreSQL connection budget (issue 11, part 3): every replica of every service
holds a pool of DATABASE_MAX_CONNECTIONS (mypage-svc one LISTEN connection more), so the
chart sets each pool from `database` and refuses a combination whose worst case (maximum
replicas plus the rollout surge, times the connections per pod, summed over the
services) exceeds `database.maxConnections`, with a message naming the values. Renders
use the real Helm engine; the worst case is computed again here from the rendered
Deployments, HPAs and ConfigMaps, so the template's arithmetic is checked too."""
from __future__ import annotations

import re

import helm_python as helm
import pytest

from conftest import rendered_scenario
from deploycheck import chart
from deploycheck.paths import CHART

# Connections a pod holds besides its pool: mypage-svc's WatchMyPage change feed LISTENs
# on one connection of its own (mypage-svc/src/changes.rs).
OWN_CONNECTIONS = {"mypage": 1}


def component(item) -> str:
    return item.obj["metadata"]["labels"]["app.kubernetes.io/component"]


def worst_case(r: chart.Rendered) -> dict[str, int]:
    """Per service: the most connections its pods may hold at once, from the objects."""
    hpas = {component(h): h.obj["spec"]["maxReplicas"] for h in r.of_kind("HorizontalPodAutoscaler")}
    pools = {component(c): int(c.obj["data"]["DATABASE_MAX_CONNECTIONS"]) for c in r.of_kind("ConfigMap") if "GRPC_ADDR" in c.obj["data"]}
    out = {}
    for d in r.of_kind("Deployment"):
        svc = component(d)
        spec = d.obj["spec"]
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        pods = hpas.get(svc, spec.get("replicas", 1)) + spec["strategy"]["rollingUpdate"]["maxSurge"]
        out[svc] = pods * (pools[svc] + OWN_CONNECTIONS.get(svc, 0))
    return out


def notes_total(r: chart.Rendered) -> tuple[int, int]:
    m = re.search(r"PostgreSQL connections at full scale: at most (\d+) of database.maxConnections (\d+)", r.notes)
    assert m, r.notes
    return int(m.group(1)), int(m.group(2))


def render_error(values) -> str:
    with pytest.raises(helm.HelmRenderError) as e:
        chart.render(chart.with_required(values))
    return str(e.value)


@pytest.mark.parametrize("scenario_name", ["default", "production"])
def test_the_shipped_values_fit_and_notes_state_the_budget(scenario_name):
    r = rendered_scenario(scenario_name)
    per_service = worst_case(r)
    total, limit = notes_total(r)
    assert total == sum(per_service.values()), (per_service, r.notes)
    assert limit == r.values["database"]["maxConnections"]
    assert total <= limit
    for svc, connections in per_service.items():
        assert f"{svc} " in r.notes and f"= {connections}" in r.notes


def test_the_default_budget_is_78_of_90():
    """4 services x (5 replicas + 1 surge) x pool 3, plus 6 mypage listeners, within
    PostgreSQL's default max_connections = 100 less 3 superuser and 7 spare slots."""
    r = rendered_scenario("default")
    assert notes_total(r) == (78, 90)
    assert worst_case(r) == {"order": 18, "payment": 18, "reservation": 18, "mypage": 24}


FITTING = {
    # Exactly at the limit still fits.
    "at the limit": ({"database": {"maxConnections": 78}}, 78),
    # Without autoscaling, replicaCount (+1 surge) counts: 4 x 3 x 3 + 3 = 39.
    "fixed replicas": ({"autoscaling": {"enabled": False}, "replicaCount": 2}, 39),
    # One service's own pool and maximum: payment 11 pods x 6 = 66, the others 18, 18, 24.
    "per-service override": (
        {"database": {"maxConnections": 126}, "services": {"payment": {"database": {"poolSize": 6}, "autoscaling": {"maxReplicas": 10}}}},
        126,
    ),
    # A bigger server: the 10 replicas x pool 10, against max_connections 500.
    "issue's scale on a bigger server": ({"autoscaling": {"maxReplicas": 10}, "database": {"poolSize": 10, "maxConnections": 460}}, 451),
}


@pytest.mark.parametrize("values,total", list(FITTING.values()), ids=list(FITTING))
def test_a_fitting_combination_renders_with_the_pools_it_counted(values, total):
    r = chart.render(chart.with_required(values))
    assert sum(worst_case(r).values()) == total
    assert notes_total(r)[0] == total


OVERSIZED = {
    # The measurement: 4 services x 10 replicas x pool 10 against PostgreSQL's 100.
    "issue 11": ({"autoscaling": {"maxReplicas": 10}, "database": {"poolSize": 10}}, 451, 90),
    "one over the limit": ({"database": {"maxConnections": 77}}, 78, 77),
    "one service's pool": ({"services": {"order": {"database": {"poolSize": 20}}}}, 6 * 20 + 18 + 18 + 24, 90),
    "one service's maximum": ({"services": {"mypage": {"autoscaling": {"maxReplicas": 30}}}}, 18 * 3 + 31 * 4, 90),
    "fixed replicas": ({"autoscaling": {"enabled": False}, "replicaCount": 7}, 4 * 8 * 3 + 8, 90),
}


@pytest.mark.parametrize("values,total,limit", list(OVERSIZED.values()), ids=list(OVERSIZED))
def test_an_oversized_combination_fails_naming_the_values(values, total, limit):
    message = render_error(values)
    assert f"database.maxConnections {limit} is less than the {total} PostgreSQL connections" in message, message
    for value in ("database.poolSize", "autoscaling.maxReplicas", "replicaCount", "services.<name>.database.poolSize"):
        assert value in message, (value, message)
    # Each service's share is spelled out, so the reader sees which one to shrink.
    assert len(re.findall(r"\b(order|payment|reservation|mypage) \d+ pods x \d+ = \d+", message)) == 4, message


def test_pool_settings_reach_each_service_from_database():
    r = chart.render(chart.with_required({"services": {"mypage": {"database": {"poolSize": 2, "idleTimeout": "30s", "maxLifetime": "2m"}}}}))
    env = {component(c): c.obj["data"] for c in r.of_kind("ConfigMap") if "GRPC_ADDR" in c.obj["data"]}
    assert {k: v for k, v in env["mypage"].items() if k.startswith("DATABASE_")} == {
        "DATABASE_MAX_CONNECTIONS": "2",
        "DATABASE_IDLE_TIMEOUT": "30s",
        "DATABASE_MAX_LIFETIME": "2m",
    }
    assert {k: v for k, v in env["order"].items() if k.startswith("DATABASE_")} == {
        "DATABASE_MAX_CONNECTIONS": "3",
        "DATABASE_IDLE_TIMEOUT": "1m",
        "DATABASE_MAX_LIFETIME": "5m",
    }


BAD_POOL_VALUES = {
    # The pool size must come from `database`, or the budget would not see it.
    "pool size in config": {"config": {"DATABASE_MAX_CONNECTIONS": "50"}},
    "pool size in a service config": {"services": {"order": {"config": {"DATABASE_MAX_CONNECTIONS": "50"}}}},
    "idle timeout in config": {"config": {"DATABASE_IDLE_TIMEOUT": "1m"}},
    "pool size zero": {"database": {"poolSize": 0}},
    "pool size over the binaries' 1000": {"services": {"payment": {"database": {"poolSize": 1001}}}},
    "idle timeout without a unit": {"database": {"idleTimeout": "60"}},
    "maxConnections zero": {"database": {"maxConnections": 0}},
    "unknown database key": {"database": {"minConnections": 2}},
}


@pytest.mark.parametrize("values", list(BAD_POOL_VALUES.values()), ids=list(BAD_POOL_VALUES))
def test_values_schema_rejects_pool_settings_outside_database(values):
    with helm.Chart.load(str(CHART)) as c:
        with pytest.raises(helm.HelmValuesError):
            c.validate_schema(values)
