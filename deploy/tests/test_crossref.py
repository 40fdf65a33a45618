"""Cross-references inside the rendered release, and with what the binaries report."""
import pytest

from conftest import SERVICE_BINARIES, all_findings
from deploycheck import binaries, crossref


@pytest.mark.parametrize("binary", SERVICE_BINARIES)
def test_binary_reports_its_settings_and_service(binary, facts):
    """The binary can be asked: --help lists its settings, reflection its one service."""
    if binary in facts.not_ready:
        pytest.skip(facts.not_ready[binary])
    assert {"GRPC_ADDR", "DATABASE_URL", "AMQP_URL", "SHUTDOWN_DELAY", "SHUTDOWN_GRACE"} <= facts.accepted_env[binary]
    if binary in ("order-svc", "reservation-svc"):
        assert {"PAYMENT_URL", "PAYMENT_TIMEOUT", "PAYMENT_MAX_CONCURRENCY"} <= facts.accepted_env[binary]
    name = facts.readiness[binary]
    assert name and name.startswith("talentshare.") and facts.methods[name]


def test_env_vars_are_settings_the_binaries_accept(rendered, facts):
    assert crossref.check_env(rendered, facts.accepted_env) == []


def test_ports_line_up(rendered):
    assert crossref.check_ports(rendered) == []


def test_probes_ask_what_the_binaries_report(rendered, facts):
    assert crossref.check_probes(rendered, facts.readiness) == []


def test_termination_grace_covers_the_drain(rendered):
    assert crossref.check_shutdown(rendered) == []


def test_pods_are_locked_down(rendered):
    assert crossref.check_security(rendered) == []


def test_references_between_workload_objects(rendered):
    assert crossref.check_workload_refs(rendered) == []


def test_payment_url_is_the_payment_service(rendered):
    assert crossref.check_payment_url(rendered) == []


def test_helm_test_hooks_probe_every_service(rendered, facts):
    assert crossref.check_test_hooks(rendered, facts.readiness) == []


def test_istio_hosts_are_rendered_services(rendered):
    assert crossref.check_istio_hosts(rendered) == []


def test_principals_are_rendered_service_accounts(rendered):
    assert crossref.check_principals(rendered) == []


def test_authorization_is_deny_by_default_and_payment_is_private(rendered, facts):
    assert crossref.check_authorization(rendered, facts.grpc_service_of) == []


def test_method_paths_are_served_methods(rendered, facts):
    assert crossref.check_method_paths(rendered, facts.methods) == []


def test_circuit_breaker_is_http2_sized_and_tightest_for_payment(rendered):
    assert crossref.check_traffic_policy(rendered) == []


def test_retries_only_where_safe(rendered):
    assert crossref.check_retries(rendered) == []


def test_all_checks_together_find_nothing(rendered, facts):
    """The baseline of the seeded-defect tests: the unmodified render is clean."""
    assert all_findings(rendered, facts) == []


def test_every_served_method_is_classified_for_retries(facts):
    """Each method the running binaries serve is in RETRY_SAFE or known not to be, so a
    new method is noticed (and gets no mesh retries until it is classified)."""
    not_retry_safe = {"talentshare.mypage.v1.MyPageService": {"WatchMyPage"}}
    for service, methods in facts.methods.items():
        if methods is None:
            continue
        known = crossref.RETRY_SAFE.get(service, set()) | not_retry_safe.get(service, set())
        assert methods <= known, f"{service}: unclassified methods {sorted(methods - known)}"


def test_help_parsing_finds_env_names():
    """The `[env: NAME...]` parser on clap's two forms (with and without a value)."""
    text = "      --grpc-addr <GRPC_ADDR>\n          [env: GRPC_ADDR=]\n      --database-url <U>\n          [env: DATABASE_URL]\n"
    assert set(binaries.ENV_IN_HELP.findall(text)) == {"GRPC_ADDR", "DATABASE_URL"}


# The callers reach PaymentService through the shared gateway (payment-client): each
# gateway method and the RPC it sends.
GATEWAY_CALL = {
    "pay": "Pay",
    "void": "Void",
    "get": "GetPayment",
    "find": "GetPayment",
    "refund": "Refund",
    "approved_page": "ListPayments",
}

# The generated client's method for each RPC, as the gateway calls it.
RPC_METHOD = {
    "Pay": "pay",
    "Void": "void",
    "GetPayment": "get_payment",
    "Refund": "refund",
    "ListPayments": "list_payments",
}


def test_each_gateway_method_sends_the_rpc_it_is_mapped_to():
    """GATEWAY_CALL is what the gateway's code does: each method sends its RPC (or
    delegates to the method that does), so the allow-list check below rests on facts."""
    import re

    from deploycheck.paths import ROOT

    text = (ROOT / "payment-client" / "src" / "gateway.rs").read_text()
    bodies = dict(re.findall(r"pub async fn (\w+)\((.*?)\n    }\n", text, re.S))
    assert set(bodies) == set(GATEWAY_CALL), f"gateway methods {sorted(bodies)}"
    for method, rpc in GATEWAY_CALL.items():
        body = bodies[method]
        sends = f".{RPC_METHOD[rpc]}(request)" in body
        delegates = any(
            f"self.{other}(" in body for other, r in GATEWAY_CALL.items() if r == rpc and other != method
        )
        assert sends or delegates, f"gateway {method} does not send {rpc}"


@pytest.mark.parametrize("caller", ["order", "reservation"])
def test_each_payment_caller_may_call_exactly_the_methods_its_code_calls(caller):
    """The mesh's allow-list for PaymentService (values `paymentCallers`) matches the
    calls the caller's code makes through the gateway: a missing method is a call the
    mesh denies in production only (no test without Istio sees it); an extra one is
    privilege unused."""
    import re

    import yaml

    from deploycheck.paths import CHART, ROOT

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    allowed = set(values["istio"]["authorization"]["paymentCallers"][caller])
    called = set()
    for path in (ROOT / f"{caller}-svc" / "src").rglob("*.rs"):
        text = path.read_text()
        for method, rpc in GATEWAY_CALL.items():
            if re.search(rf"\bpayments?\s*\.{method}\(", text):
                called.add(rpc)
    assert called, f"{caller}-svc calls payment-svc"
    assert allowed == called, f"{caller}: allowed {sorted(allowed)}, called {sorted(called)}"
