"""The chart as a cluster: the real binaries run with exactly what the rendered
Deployments give them (see deploycheck/cluster.py for the loopback mapping), and answer
every rendered probe and the `helm test` command. Runs once per scenario.

A service whose binary is not built yet, or is still a stub, is skipped with the reason.
"""
import json
import subprocess
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import SERVICE_BINARIES
from deploycheck import binaries
from deploycheck.crossref import probe_command, resolve_host, workloads

PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


@pytest.fixture(scope="module", params=["default", "production"])
def cluster(request, clusters):
    return clusters.get(request.param)


def process_for(cluster, binary):
    for name, proc in cluster.processes.items():
        if proc.binary == binary:
            return proc
    names = [w.item.name for w in workloads(cluster.rendered) if w.binary == binary]
    assert names, f"no rendered Deployment runs {binary}"
    pytest.skip(cluster.skipped.get(names[0], f"{binary} did not start"))


@pytest.mark.parametrize("binary", SERVICE_BINARIES)
def test_rendered_probes_answer_serving(cluster, binary):
    """Each startup/liveness/readiness probe, with its gRPC service name and port, is what
    kubelet would send: all SERVING."""
    proc = process_for(cluster, binary)
    results = {}
    for probe in PROBES:
        grpc = proc.workload.container[probe]["grpc"]
        results[probe] = binaries.health(cluster.pod_addr(proc, grpc["port"]), grpc.get("service", ""))
    assert results == {p: "SERVING" for p in PROBES}


@pytest.mark.parametrize("binary", SERVICE_BINARIES)
def test_readiness_name_is_the_service_the_binary_serves(cluster, binary):
    proc = process_for(cluster, binary)
    served = binaries.served_services(proc.addr) - binaries.INFRA_SERVICES
    assert served == {proc.workload.container["readinessProbe"]["grpc"]["service"]}
    assert binaries.health(proc.addr, "talentshare.no.such.Service").startswith("error:")


@pytest.mark.parametrize("binary", SERVICE_BINARIES)
def test_helm_test_hook_command_passes(cluster, binary):
    """The `helm test` Pod's command, run as is (its Service address mapped to loopback)."""
    proc = process_for(cluster, binary)
    talentshare = binaries.path("talentshare")
    if not talentshare.exists():
        pytest.skip(f"{talentshare} is not built")
    hooks = []
    for pod in cluster.rendered.of_kind("Pod"):
        _, flags = probe_command(pod)
        host, _, port = flags.get("--addr", "").rpartition(":")
        svc = resolve_host(cluster.rendered, host, pod.namespace)
        if svc is not None and svc.name == proc.workload.item.name:
            hooks.append((pod, host, int(port)))
    assert len(hooks) == 1, f"want one helm test Pod for {binary}"
    pod, host, port = hooks[0]
    c = pod.obj["spec"]["containers"][0]
    argv = [str(talentshare)] + c.get("command", [])[1:] + list(c.get("args", []))
    argv[argv.index("--addr") + 1] = cluster.service_addr(host, port, pod.namespace)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SERVING" in done.stdout


def grpc_call(addr, method, data, token=None):
    headers = ["-H", f"authorization: Bearer {token}"] if token else []
    done = binaries.grpcurl(*headers, addr, method, data=data, timeout=30)
    assert done.returncode == 0, f"{method}: {done.stderr}"
    return json.loads(done.stdout)


def test_order_svc_reaches_payment_at_the_rendered_payment_url(cluster):
    """PlaceOrder completes only through a successful Pay at PAYMENT_URL (mapped from the
    payment Service to the payment process), and payment-svc has the payment."""
    order = process_for(cluster, "order-svc")
    payment = process_for(cluster, "payment-svc")
    rendered_url = order.workload.container and order.env["PAYMENT_URL"]
    assert rendered_url == f"http://{payment.addr}"
    request = {
        "request_id": str(uuid.uuid4()),
        "customer_id": "deploycheck",
        "talent_id": "coach-kim",
        "session_start_time": "2035-01-01T10:00:00Z",
        "session_minutes": 60,
        "amount_minor": 50000,
        "currency": "KRW",
        "card_number": "4242 4242 4242 4242",
    }
    token = cluster.token(order, "deploycheck")  # sub = the customer id
    placed = grpc_call(order.addr, "talentshare.order.v1.OrderService/PlaceOrder", request, token)["order"]
    assert placed["status"] == "ORDER_STATUS_PAID", placed
    paid = grpc_call(payment.addr, "talentshare.payment.v1.PaymentService/GetPayment", {"order_id": placed["orderId"]})
    assert paid["payment"]["status"] == "PAYMENT_STATUS_APPROVED"


def test_payment_answers_on_its_service_address(cluster):
    """Positive control for the order test above: Pay works at the mapped Service address."""
    payment = process_for(cluster, "payment-svc")
    svc = next(s for s in cluster.rendered.of_kind("Service") if s.name == payment.workload.item.name)
    addr = cluster.service_addr(svc.name, svc.obj["spec"]["ports"][0]["port"], svc.namespace)
    order_id = str(uuid.uuid4())
    paid = grpc_call(
        addr,
        "talentshare.payment.v1.PaymentService/Pay",
        {
            "order_id": order_id,
            "customer_id": "deploycheck",
            "amount_minor": 1000,
            "currency": "KRW",
            "card_number": "4242424242424242",
            "booking": {"talent_id": "coach-kim", "session_start_time": "2035-01-01T10:00:00Z", "session_minutes": 60},
        },
    )
    assert paid["payment"]["status"] == "PAYMENT_STATUS_APPROVED"


def test_topology_job_declared_what_the_services_consume(cluster):
    """The rendered pre-install hook Job (`talentshare topology`, admin broker URL) ran
    first and exited 0, and the exchanges and queues exist: the services, which get
    AMQP_DECLARE_TOPOLOGY=false, only check them."""
    if cluster.topology is None:
        pytest.skip(cluster.topology_skipped or "the topology Job did not run")
    import pika

    from deploycheck.cluster import AMQP_URL

    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        ch = conn.channel()
        for x in (cluster.exchange, f"{cluster.exchange}.dlx"):
            ch.exchange_declare(x, passive=True)
        for name in ("order", "reservation", "mypage"):
            for q in (f"{cluster.exchange}.{name}", f"{cluster.exchange}.{name}.dlq"):
                ch.queue_declare(q, passive=True)
    finally:
        conn.close()
    for proc in cluster.processes.values():
        assert proc.env["AMQP_DECLARE_TOPOLOGY"] == "false", proc.binary


def test_public_services_get_the_auth_settings(cluster):
    """order, reservation and mypage run with AUTH_ISSUER/AUTH_AUDIENCE from values and
    AUTH_JWKS mapped to a JWKS file; payment-svc gets none."""
    for proc in cluster.processes.values():
        auth = {k for k in proc.env if k.startswith("AUTH_")}
        if proc.binary == "payment-svc":
            assert auth == set(), auth
        else:
            assert {"AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_JWKS", "AUTH_JWKS_REFRESH", "AUTH_LEEWAY"} <= auth
            assert json.loads(open(proc.env["AUTH_JWKS"]).read())["keys"]


def test_public_services_verify_end_user_tokens(cluster):
    """With the rendered auth settings the services verify for themselves (defence in depth
    behind the mesh): no token is UNAUTHENTICATED; a token from the configured issuer and
    the JWKS works; one for another audience does not."""
    order = process_for(cluster, "order-svc")
    listing = {"customer_id": "deploycheck", "page_size": 1}
    method = "talentshare.order.v1.OrderService/ListOrders"
    done = binaries.grpcurl(order.addr, method, data=listing)
    assert done.returncode != 0 and "Unauthenticated" in done.stderr, done.stdout + done.stderr
    grpc_call(order.addr, method, listing, cluster.token(order, "deploycheck"))
    other = dict(order.env, AUTH_AUDIENCE="someone-else")
    wrong = cluster.token(type(order)(**{**order.__dict__, "env": other}), "deploycheck")
    done = binaries.grpcurl("-H", f"authorization: Bearer {wrong}", order.addr, method, data=listing)
    assert done.returncode != 0 and "Unauthenticated" in done.stderr, done.stdout + done.stderr


@pytest.mark.parametrize("binary", SERVICE_BINARIES)
def test_metrics_answer_on_the_service_port_http_metrics(cluster, binary):
    """GET /metrics through the Service's port http-metrics (its targetPort resolved to the
    container's, METRICS_ADDR mapped to loopback) answers in the OpenMetrics format with
    this service's readiness and build; nothing else is served on that port."""
    proc = process_for(cluster, binary)
    svc = next(s for s in cluster.rendered.of_kind("Service") if s.name == proc.workload.item.name)
    (port,) = [p for p in svc.obj["spec"]["ports"] if p["name"] == "http-metrics"]
    addr = cluster.service_addr(svc.name, port["port"], svc.namespace)
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
        text = answer.read().decode()
    assert "\nservice_ready 1\n" in text
    service = svc.obj["metadata"]["labels"]["app.kubernetes.io/component"]
    assert 'talentshare_build_info{version="' in text and f'service="{service}"' in text
    assert text.rstrip().endswith("# EOF")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://{addr}/", timeout=10)
    assert refused.value.code == 404


def preflight(addr, origin, path):
    """A browser's CORS preflight for a gRPC-Web POST, over HTTP/1.1: (status, headers)."""
    import http.client

    conn = http.client.HTTPConnection(addr, timeout=10)
    try:
        conn.request(
            "OPTIONS",
            path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-grpc-web,x-user-agent",
            },
        )
        answer = conn.getresponse()
        answer.read()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}
    finally:
        conn.close()


@pytest.mark.parametrize("binary", ["order-svc", "reservation-svc", "mypage-svc"])
def test_public_services_answer_cors_preflights_for_the_rendered_origins(cluster, binary):
    """Each public service, with its rendered CORS_ALLOWED_ORIGINS (production:
    grpcWeb.corsAllowedOrigins; default: none), answers a browser's preflight (OPTIONS, no
    token, HTTP/1.1 on the gRPC port) itself, on one of its method paths: the listed origin
    is allowed POST with the gRPC-Web headers and may read grpc-status; any other origin
    (and every origin without the setting) gets no grant."""
    proc = process_for(cluster, binary)
    origins = cluster.rendered.values["grpcWeb"]["corsAllowedOrigins"]
    assert proc.env.get("CORS_ALLOWED_ORIGINS", "") == ",".join(origins)
    service = proc.workload.container["readinessProbe"]["grpc"]["service"]
    path = f"/{service}/{sorted(binaries.served_methods(proc.addr, service))[0]}"
    for origin in origins:
        status, headers = preflight(proc.addr, origin, path)
        assert status == 200 and headers.get("access-control-allow-origin") == origin, headers
        assert "POST" in headers.get("access-control-allow-methods", "")
        assert {"authorization", "content-type", "x-grpc-web"} <= set(headers.get("access-control-allow-headers", "").replace(" ", "").split(","))
    status, headers = preflight(proc.addr, "https://elsewhere.example", path)
    assert "access-control-allow-origin" not in headers, headers


def test_payment_gets_no_cors_setting(cluster):
    """payment-svc never speaks gRPC-Web, whatever grpcWeb says."""
    proc = process_for(cluster, "payment-svc")
    assert "CORS_ALLOWED_ORIGINS" not in proc.env


def test_processes_wrote_nothing_to_their_working_directory(cluster):
    """With DATABASE_URL on PostgreSQL the services write no files: the readOnlyRootFilesystem
    the chart sets holds."""
    for proc in cluster.processes.values():
        assert list(proc.cwd.iterdir()) == [], f"{proc.binary} wrote {list(proc.cwd.iterdir())}"


def test_shutdown_fits_the_termination_grace_period(cluster):
    """Last in this module to call the services: SIGTERM (as the kubelet sends it).
    Readiness turns NOT_SERVING during SHUTDOWN_DELAY, and every process exits 0 before
    terminationGracePeriodSeconds."""
    if not cluster.processes:
        pytest.skip("no service could be started")
    cluster.stop()
    for proc in cluster.processes.values():
        grace = proc.workload.pod_spec["terminationGracePeriodSeconds"]
        assert proc.readiness_during_delay == "NOT_SERVING", proc.binary
        assert proc.exit_code == 0, f"{proc.binary} exit {proc.exit_code}:\n{proc.log_tail()}"
        assert proc.stop_seconds < grace, f"{proc.binary} took {proc.stop_seconds:.1f}s (grace {grace}s)"


def test_spans_reach_the_collector_of_tracing_otlp_endpoint(cluster):
    """After the shutdown above (each service flushes its last spans then). With
    tracing.otlpEndpoint set (production), every service accepted the rendered
    OTEL_EXPORTER_OTLP_ENDPOINT and exported the spans of the calls and events above, under
    its own service.name, to it (mapped to a loopback OTLP/gRPC receiver); without it
    (default), no service has the variable and nothing is exported."""
    if not cluster.processes:
        pytest.skip("no service could be started")
    endpoint = cluster.rendered.values["tracing"]["otlpEndpoint"]
    if not endpoint:
        assert [p.binary for p in cluster.processes.values() if "OTEL_EXPORTER_OTLP_ENDPOINT" in p.env] == []
        assert cluster.otlp is None
        return
    assert cluster.otlp is not None and cluster.otlp.requests, "no service exported a span"
    assert cluster.otlp.services() == {p.binary for p in cluster.processes.values()}


# A setting value the binary refuses at start, and what it says. CORS_ALLOWED_ORIGINS=*
# is what the chart refuses to render (grpcWeb.corsAllowedOrigins); the binary refuses it too.
REJECTED_VALUES = {
    "payment-timeout": ("PAYMENT_TIMEOUT", "soon", "PAYMENT_TIMEOUT"),
    "cors-any-origin": ("CORS_ALLOWED_ORIGINS", "*", "`*` is not allowed"),
}


@pytest.mark.parametrize("name,value,said", list(REJECTED_VALUES.values()), ids=list(REJECTED_VALUES))
def test_a_setting_value_the_binary_rejects_fails_the_run(name, value, said):
    """Seeded defect for the smoke run itself: a valid setting name with a value the binary
    refuses (the static checks cannot see values) stops the chart-as-cluster run."""
    from conftest import rendered_scenario
    from deploycheck.cluster import Cluster

    if binaries.not_ready_reason("order-svc") or binaries.not_ready_reason("payment-svc"):
        pytest.skip("order-svc and payment-svc must be built")
    r = rendered_scenario("production").copy()
    keep = ("-order", "-payment")
    r.items = [i for i in r.items if i.kind != "Deployment" or i.name.endswith(keep)]
    cm = next(i for i in r.items if i.kind == "ConfigMap" and i.name.endswith("-order"))
    cm.obj["data"][name] = value
    run = Cluster(r, "defect")
    try:
        with pytest.raises(RuntimeError, match="order-svc exited") as stopped:
            run.start(timeout=30)
        assert said in str(stopped.value)
    finally:
        run.cleanup()
