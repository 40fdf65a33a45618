"""The talentshare story driven by a Python client generated from proto/.

Generates the stubs with grpc_tools.protoc (the standard gRPC tooling), starts the
real `talentshare up` on free ports with its own data directory and broker names, and
walks through place -> paid -> booking -> confirm -> my page -> cancel. Every call
carries `authorization: Bearer <token>` minted by `talentshare token` with the
development key `up` keeps in that data directory, as a real client would send its
identity provider's token.
"""

import importlib
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import grpc
import pika
import pytest
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"
BINARY = ROOT / "target" / "debug" / "talentshare"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stubs():
    out = tempfile.mkdtemp(prefix="talentshare-py-")
    files = [str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto")]
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    code = protoc.main(["protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", *files])
    assert code == 0, "protoc failed"
    sys.path.insert(0, out)
    mods = {}
    for pkg in ["order", "payment", "reservation", "mypage"]:
        mods[pkg] = importlib.import_module(f"talentshare.{pkg}.v1.{pkg}_pb2")
        mods[pkg + "_grpc"] = importlib.import_module(f"talentshare.{pkg}.v1.{pkg}_pb2_grpc")
    return mods


@pytest.fixture(scope="module")
def system():
    assert BINARY.exists(), f"{BINARY} not built: run cargo build --workspace first"
    ports = {name: free_port() for name in ["order", "payment", "reservation", "mypage"]}
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
    channels = {name: grpc.insecure_channel(f"127.0.0.1:{port}") for name, port in ports.items()}
    for ch in channels.values():
        grpc.channel_ready_future(ch).result(timeout=30)
    yield {"channels": channels, "data": data}
    proc.send_signal(2)
    assert proc.wait(timeout=30) == 0
    delete_topology(exchange)


def delete_topology(exchange):
    """Removes this run's exchanges and queues from the shared broker."""
    conn = pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2f"))
    ch = conn.channel()
    for consumer in ["order", "reservation", "mypage"]:
        for queue in [f"{exchange}.{consumer}", f"{exchange}.{consumer}.dlq"]:
            ch.queue_delete(queue=queue)
    for name in [exchange, f"{exchange}.dlx"]:
        ch.exchange_delete(exchange=name)
    conn.close()


def token(data, *who):
    """A development token from `talentshare token` for `up`'s data directory."""
    out = subprocess.run(
        [str(BINARY), "token", "--data-dir", data, *who], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def bearer(jwt):
    """gRPC call metadata that authenticates as the token's subject."""
    return (("authorization", f"Bearer {jwt}"),)


def wait_for(what, fn, timeout=30.0):
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


def test_the_story_through_generated_python_stubs(stubs, system):
    order_pb, order_grpc = stubs["order"], stubs["order_grpc"]
    res_pb, res_grpc = stubs["reservation"], stubs["reservation_grpc"]
    mypage_pb, mypage_grpc = stubs["mypage"], stubs["mypage_grpc"]
    channels = system["channels"]
    orders = order_grpc.OrderServiceStub(channels["order"])
    reservations = res_grpc.ReservationServiceStub(channels["reservation"])
    mypage = mypage_grpc.MyPageServiceStub(channels["mypage"])
    # Minted after `up` is serving, so they are signed with the key it verifies with.
    alice = bearer(token(system["data"], "--customer", "py-alice"))
    bob = bearer(token(system["data"], "--customer", "py-bob"))
    manager = bearer(token(system["data"], "--manager", "py-manager", "--talent", "py-coach"))

    request = order_pb.PlaceOrderRequest(
        request_id=str(uuid.uuid4()),
        customer_id="py-alice",
        talent_id="py-coach",
        session_minutes=60,
        amount_minor=42000,
        currency="KRW",
        card_number="4242 4242 4242 4242",
    )
    request.session_start_time.FromSeconds(int(time.time()) + 30 * 24 * 3600)
    with pytest.raises(grpc.RpcError) as anonymous:
        orders.PlaceOrder(request, timeout=10)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED, "no token, no call"
    assert "authorization" in anonymous.value.details(), "the refusal names what is missing"

    order = orders.PlaceOrder(request, timeout=10, metadata=alice).order
    assert order.status == order_pb.ORDER_STATUS_PAID
    assert orders.PlaceOrder(request, timeout=10, metadata=alice).order.order_id == order.order_id, "idempotent"

    with pytest.raises(grpc.RpcError) as other:
        orders.GetOrder(order_pb.GetOrderRequest(order_id=order.order_id), timeout=10, metadata=bob)
    assert other.value.code() == grpc.StatusCode.PERMISSION_DENIED, "another customer's order"

    entry = wait_for(
        "the booking on my page",
        lambda: (
            e := mypage.GetMyPageEntry(mypage_pb.GetMyPageEntryRequest(order_id=order.order_id), metadata=alice).entry
        ).reservation_id
        and e,
    )
    confirmed = reservations.ConfirmReservation(
        res_pb.ConfirmReservationRequest(reservation_id=entry.reservation_id, manager_id="py-manager"),
        timeout=10,
        metadata=manager,
    ).reservation
    assert confirmed.status == res_pb.RESERVATION_STATUS_CONFIRMED
    wait_for(
        "my page to show the booking confirmed",
        lambda: mypage.GetMyPage(mypage_pb.GetMyPageRequest(customer_id="py-alice"), metadata=alice)
        .entries[0]
        .reservation_status
        == res_pb.RESERVATION_STATUS_CONFIRMED,
    )

    cancelled = orders.CancelOrder(
        order_pb.CancelOrderRequest(order_id=order.order_id, reason="py"), timeout=10, metadata=alice
    ).order
    assert cancelled.status == order_pb.ORDER_STATUS_CANCELLED and cancelled.refunded
    wait_for(
        "my page to show the cancellation",
        lambda: mypage.GetMyPageEntry(
            mypage_pb.GetMyPageEntryRequest(order_id=order.order_id), metadata=alice
        ).entry.reservation_status
        == res_pb.RESERVATION_STATUS_CANCELLED,
    )

    with pytest.raises(grpc.RpcError) as bad:
        orders.PlaceOrder(order_pb.PlaceOrderRequest(customer_id="py-alice"), timeout=10, metadata=alice)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
