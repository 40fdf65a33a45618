"""The talentshare story driven through the installed Python SDK (`talentshare-sdk`).

scripts/test.sh installs clients/python into .venv (`pip install ./clients/python`, not
editable) before it runs this, so these tests import what a user of the SDK imports:
the generated `talentshare.*` modules and the hand-written `talentshare_sdk` helpers.
They start the real `talentshare up` on free ports with its own data directory and
broker names, and walk through place -> paid -> booking -> confirm -> my page ->
cancel. Every call carries `authorization: Bearer <token>` (the SDK's `channel`), with
tokens minted by `talentshare token` with the development key `up` keeps in that data
directory, as a real client would send its identity provider's token. Failed calls
are read with the SDK's `decode_error`, by their stable reasons
(proto/talentshare/common/v1/errors.proto).
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import socket
import subprocess
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import grpc
import pika
import pytest
from google.protobuf.duration_pb2 import Duration

import talentshare_sdk
from talentshare.common.v1 import errors_pb2, types_pb2
from talentshare.mypage.v1 import mypage_pb2, mypage_pb2_grpc
from talentshare.order.v1 import order_pb2, order_pb2_grpc
from talentshare.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from talentshare_sdk import TalentshareError, decode_error

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = ROOT / "target" / "debug" / "talentshare"
SERVICES = ["order", "payment", "reservation", "mypage"]
APPROVED_CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000000000000002"  # DECLINE_REASON_CARD_DECLINED (payment.proto's test cards)

T = TypeVar("T")


@dataclass(frozen=True)
class System:
    """`talentshare up` running on `ports`, keeping its data (and signing key) in `data`."""

    ports: dict[str, int]
    data: str

    def target(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def token(self, *who: str) -> str:
        """A development token from `talentshare token` for `up`'s data directory."""
        out = subprocess.run(
            [str(BINARY), "token", "--data-dir", self.data, *who], check=True, capture_output=True, text=True
        )
        return out.stdout.strip()

    def channel(self, service: str, token: str) -> grpc.Channel:
        """The SDK's channel: every call carries `authorization: Bearer <token>`."""
        return talentshare_sdk.channel(self.target(service), token)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    assert BINARY.exists(), f"{BINARY} not built: run cargo build --workspace first"
    ports = {name: free_port() for name in SERVICES}
    data = tempfile.mkdtemp(prefix="talentshare-data-")
    exchange = f"t-py-{uuid.uuid4().hex}.events"
    env = dict(os.environ, EVENTS_EXCHANGE=exchange, RUST_LOG="warn")
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen(
        [str(BINARY), "up", "--data-dir", data]
        + [arg for name, port in ports.items() for arg in (f"--{name}-port", str(port))],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for port in ports.values():
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                grpc.channel_ready_future(ch).result(timeout=30)
        yield System(ports=ports, data=data)
    finally:
        proc.send_signal(2)
        code = proc.wait(timeout=30)
        delete_topology(exchange)
    assert code == 0, "talentshare up stops cleanly on SIGINT"


def delete_topology(exchange: str) -> None:
    """Removes this run's exchanges and queues from the shared broker."""
    conn = pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2f"))
    ch = conn.channel()
    for consumer in ["order", "reservation", "mypage"]:
        for queue in [f"{exchange}.{consumer}", f"{exchange}.{consumer}.dlq"]:
            ch.queue_delete(queue=queue)
    for name in [exchange, f"{exchange}.dlx"]:
        ch.exchange_delete(exchange=name)
    conn.close()


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def failure(call: Callable[[], object]) -> TalentshareError:
    """Runs a call that must fail, and decodes its error with the SDK."""
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return decode_error(raised.value)


def place_request(customer: str, *, card: str = APPROVED_CARD, talent: str = "py-coach") -> order_pb2.PlaceOrderRequest:
    request = order_pb2.PlaceOrderRequest(
        request_id=str(uuid.uuid4()),
        customer_id=customer,
        talent_id=talent,
        session_minutes=60,
        amount_minor=42000,
        currency="KRW",
        card_number=card,
    )
    request.session_start_time.FromSeconds(int(time.time()) + 30 * 24 * 3600)
    return request


def test_the_sdk_is_the_installed_package() -> None:
    """The tests use the package as pip installed it, not the source tree, and the
    public SDK ships neither the internal PaymentService nor the event bus."""
    site = pathlib.Path(sysconfig.get_paths()["purelib"]).resolve()
    for module in (talentshare_sdk, order_pb2):
        assert module.__file__ is not None
        assert pathlib.Path(module.__file__).resolve().is_relative_to(site), module.__file__
    assert importlib.util.find_spec("talentshare.payment") is None
    assert importlib.util.find_spec("talentshare.events") is None
    assert talentshare_sdk.reason_enum("ORDER_ALREADY_ENDED") == errors_pb2.ERROR_REASON_ORDER_ALREADY_ENDED
    assert talentshare_sdk.reason_enum("SOMETHING_NEW") == errors_pb2.ERROR_REASON_UNSPECIFIED


def test_the_story_through_the_sdk(system: System) -> None:
    # Minted after `up` is serving, so they are signed with the key it verifies with.
    alice = system.token("--customer", "py-alice")
    bob = system.token("--customer", "py-bob")
    manager = system.token("--manager", "py-manager", "--talent", "py-coach")
    orders = order_pb2_grpc.OrderServiceStub(system.channel("order", alice))
    mypage = mypage_pb2_grpc.MyPageServiceStub(system.channel("mypage", alice))
    reservations = reservation_pb2_grpc.ReservationServiceStub(system.channel("reservation", manager))

    request = place_request("py-alice")
    order = orders.PlaceOrder(request, timeout=10).order
    assert order.status == types_pb2.ORDER_STATUS_PAID
    assert orders.PlaceOrder(request, timeout=10).order.order_id == order.order_id, "idempotent"

    bobs_orders = order_pb2_grpc.OrderServiceStub(system.channel("order", bob))
    denied = failure(lambda: bobs_orders.GetOrder(order_pb2.GetOrderRequest(order_id=order.order_id), timeout=10))
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED, "another customer's order"
    assert denied.reason == "ACCESS_DENIED", denied

    def booked() -> mypage_pb2.MyPageEntry | None:
        entry = mypage.GetMyPageEntry(mypage_pb2.GetMyPageEntryRequest(order_id=order.order_id), timeout=10).entry
        return entry if entry.reservation_id else None

    entry = wait_for("the booking on my page", booked)
    confirmed = reservations.ConfirmReservation(
        reservation_pb2.ConfirmReservationRequest(reservation_id=entry.reservation_id, manager_id="py-manager"),
        timeout=10,
    ).reservation
    assert confirmed.status == types_pb2.RESERVATION_STATUS_CONFIRMED
    wait_for(
        "my page to show the booking confirmed",
        lambda: mypage.GetMyPage(mypage_pb2.GetMyPageRequest(customer_id="py-alice"), timeout=10)
        .entries[0]
        .reservation_status
        == types_pb2.RESERVATION_STATUS_CONFIRMED,
    )

    cancelled = orders.CancelOrder(order_pb2.CancelOrderRequest(order_id=order.order_id, reason="py"), timeout=10).order
    assert cancelled.status == types_pb2.ORDER_STATUS_CANCELLED and cancelled.refunded
    wait_for(
        "my page to show the cancellation",
        lambda: mypage.GetMyPageEntry(
            mypage_pb2.GetMyPageEntryRequest(order_id=order.order_id), timeout=10
        ).entry.reservation_status
        == types_pb2.RESERVATION_STATUS_CANCELLED,
    )


def test_a_call_without_a_token_is_unauthenticated(system: System) -> None:
    with grpc.insecure_channel(system.target("order")) as plain:
        orders = order_pb2_grpc.OrderServiceStub(plain)
        error = failure(lambda: orders.PlaceOrder(place_request("py-alice"), timeout=10))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED, "no token, no call"
    assert "authorization" in error.message, "the refusal names what is missing"
    assert error.reason == "TOKEN_MISSING", error
    assert error.reason_enum == errors_pb2.ERROR_REASON_TOKEN_MISSING
    assert error.domain == talentshare_sdk.DOMAIN


def test_a_bad_request_names_each_field(system: System) -> None:
    orders = order_pb2_grpc.OrderServiceStub(system.channel("order", system.token("--customer", "py-dora")))
    request = place_request("py-dora")
    request.currency = "XXX"
    request.session_minutes = 5
    error = failure(lambda: orders.PlaceOrder(request, timeout=10))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_FIELDS", error
    assert error.reason_enum == errors_pb2.ERROR_REASON_INVALID_FIELDS
    assert {v.field for v in error.field_violations} == {"currency", "session_minutes"}, error.field_violations
    assert all(v.description for v in error.field_violations)
    assert error.retry_delay is None, "sending it again fails the same way"

    empty = failure(lambda: orders.PlaceOrder(order_pb2.PlaceOrderRequest(customer_id="py-dora"), timeout=10))
    assert empty.code == grpc.StatusCode.INVALID_ARGUMENT
    assert empty.reason == "INVALID_FIELDS"
    assert {"request_id", "talent_id", "currency", "card_number"} <= {v.field for v in empty.field_violations}


def test_cancelling_a_declined_order_is_a_failed_precondition(system: System) -> None:
    orders = order_pb2_grpc.OrderServiceStub(system.channel("order", system.token("--customer", "py-erin")))
    declined = orders.PlaceOrder(place_request("py-erin", card=DECLINED_CARD), timeout=10).order
    assert declined.status == types_pb2.ORDER_STATUS_PAYMENT_DECLINED, "a declined card is not an error"
    assert declined.decline_reason == "DECLINE_REASON_CARD_DECLINED"

    error = failure(lambda: orders.CancelOrder(order_pb2.CancelOrderRequest(order_id=declined.order_id), timeout=10))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "ORDER_ALREADY_ENDED", error
    assert error.reason_enum == errors_pb2.ERROR_REASON_ORDER_ALREADY_ENDED
    assert error.metadata.get("order_id") == declined.order_id, error.metadata
    assert [(v.type, v.subject) for v in error.precondition_violations] == [
        ("STATE", f"orders/{declined.order_id}")
    ], error.precondition_violations
    assert error.retry_delay is None


def test_watch_my_page_marks_the_snapshot_end_and_beats(system: System) -> None:
    frank = system.token("--customer", "py-frank")
    orders = order_pb2_grpc.OrderServiceStub(system.channel("order", frank))
    mypage = mypage_pb2_grpc.MyPageServiceStub(system.channel("mypage", frank))
    order = orders.PlaceOrder(place_request("py-frank"), timeout=10).order
    wait_for(
        "the order on my page",
        lambda: mypage.GetMyPageEntry(mypage_pb2.GetMyPageEntryRequest(order_id=order.order_id), timeout=10).entry,
    )

    out_of_range = mypage.WatchMyPage(mypage_pb2.WatchMyPageRequest(heartbeat_interval=Duration(seconds=301)), timeout=10)
    bad = failure(lambda: next(out_of_range))
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in bad.field_violations] == ["heartbeat_interval"], bad

    stream = mypage.WatchMyPage(
        mypage_pb2.WatchMyPageRequest(send_snapshot_end=True, heartbeat_interval=Duration(seconds=1)), timeout=20
    )
    seen: list[str] = []
    try:
        for message in stream:
            if message.snapshot_end:
                break
            assert message.HasField("entry"), "before the marker, only entries"
            seen.append(message.entry.order_id)
        assert seen == [order.order_id], "the snapshot is the whole page, then the marker"
        # Events still arriving for the order may update its entry; then the stream
        # goes quiet and beats.
        for message in stream:
            if message.heartbeat:
                assert not message.HasField("entry")
                break
            assert message.entry.order_id == order.order_id
    finally:
        stream.cancel()
