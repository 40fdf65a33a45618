"""The hand-written helpers of the installed SDK (`talentshare_sdk`), against an
in-process Python gRPC server built from the generated servicers: the bearer token on
every kind of call (plaintext and TLS, fixed and refreshed), and error decoding from
`google.rpc.Status` details exactly as proto/talentshare/common/v1/errors.proto
describes them. No talentshare binary needed."""

from __future__ import annotations

import pathlib
import subprocess
from collections.abc import Iterator
from concurrent import futures
from datetime import timedelta

import grpc
import pytest
from google.protobuf.any_pb2 import Any as AnyDetail
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.rpc.error_details_pb2 import BadRequest, ErrorInfo, PreconditionFailure, RetryInfo
from google.rpc.status_pb2 import Status
from grpc_status import rpc_status

import talentshare_sdk
from talentshare.common.v1 import errors_pb2
from talentshare.mypage.v1 import mypage_pb2, mypage_pb2_grpc
from talentshare.order.v1 import order_pb2, order_pb2_grpc
from talentshare_sdk import FieldViolation, PreconditionViolation, decode_error

ORDER_ID = "0192f5a0-0000-7000-8000-00000000a001"


def packed(*details: Message) -> list[AnyDetail]:
    out = []
    for detail in details:
        any_detail = AnyDetail()
        any_detail.Pack(detail)
        out.append(any_detail)
    return out


def authorization(context: grpc.ServicerContext) -> str:
    return next((str(v) for k, v in context.invocation_metadata() if k == "authorization"), "")


class Orders(order_pb2_grpc.OrderServiceServicer):
    """GetOrder answers with the caller's authorization metadata in `customer_id`;
    CancelOrder fails the way talentshare does, chosen by `reason`."""

    def GetOrder(self, request: order_pb2.GetOrderRequest, context: grpc.ServicerContext) -> order_pb2.GetOrderResponse:
        return order_pb2.GetOrderResponse(order=order_pb2.Order(order_id=request.order_id, customer_id=authorization(context)))

    def PlaceOrder(
        self, request: order_pb2.PlaceOrderRequest, context: grpc.ServicerContext
    ) -> order_pb2.PlaceOrderResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")

    def ListOrders(
        self, request: order_pb2.ListOrdersRequest, context: grpc.ServicerContext
    ) -> order_pb2.ListOrdersResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")

    def CancelOrder(
        self, request: order_pb2.CancelOrderRequest, context: grpc.ServicerContext
    ) -> order_pb2.CancelOrderResponse:
        if request.reason == "invalid":
            status = Status(
                code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                message="order_id: not a UUID; reason: too long",
                details=packed(
                    ErrorInfo(reason="INVALID_FIELDS", domain="talentshare"),
                    BadRequest(
                        field_violations=[
                            BadRequest.FieldViolation(field="order_id", description="not a UUID"),
                            BadRequest.FieldViolation(field="reason", description="too long"),
                        ]
                    ),
                ),
            )
        elif request.reason == "in-flight":
            status = Status(
                code=grpc.StatusCode.FAILED_PRECONDITION.value[0],
                message="the order's payment may still be in flight",
                details=packed(
                    ErrorInfo(
                        reason="PAYMENT_IN_FLIGHT",
                        domain="talentshare",
                        metadata={"order_id": request.order_id, "order_status": "ORDER_STATUS_PENDING_PAYMENT"},
                    ),
                    PreconditionFailure(
                        violations=[
                            PreconditionFailure.Violation(
                                type="STATE", subject=f"orders/{request.order_id}", description="pending payment"
                            )
                        ]
                    ),
                    RetryInfo(retry_delay=Duration(seconds=1, nanos=500_000_000)),
                ),
            )
        elif request.reason == "new-reason":
            status = Status(
                code=grpc.StatusCode.UNAVAILABLE.value[0],
                message="something new",
                details=packed(ErrorInfo(reason="A_REASON_FROM_THE_FUTURE", domain="talentshare")),
            )
        else:
            context.abort(grpc.StatusCode.INTERNAL, "no details")
        context.abort_with_status(rpc_status.to_status(status))
        raise AssertionError("unreachable")


class MyPage(mypage_pb2_grpc.MyPageServiceServicer):
    """WatchMyPage sends one entry with the caller's authorization metadata in
    `customer_id`, then the snapshot-end marker."""

    def GetMyPage(self, request: mypage_pb2.GetMyPageRequest, context: grpc.ServicerContext) -> mypage_pb2.GetMyPageResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")

    def GetMyPageEntry(
        self, request: mypage_pb2.GetMyPageEntryRequest, context: grpc.ServicerContext
    ) -> mypage_pb2.GetMyPageEntryResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")

    def WatchMyPage(
        self, request: mypage_pb2.WatchMyPageRequest, context: grpc.ServicerContext
    ) -> Iterator[mypage_pb2.WatchMyPageResponse]:
        yield mypage_pb2.WatchMyPageResponse(entry=mypage_pb2.MyPageEntry(customer_id=authorization(context)))
        yield mypage_pb2.WatchMyPageResponse(snapshot_end=True)


def serve(credentials: grpc.ServerCredentials | None = None) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    order_pb2_grpc.add_OrderServiceServicer_to_server(Orders(), server)
    mypage_pb2_grpc.add_MyPageServiceServicer_to_server(MyPage(), server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, port


@pytest.fixture(scope="module")
def plaintext() -> Iterator[str]:
    server, port = serve()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def test_every_call_carries_the_token(plaintext: str) -> None:
    with talentshare_sdk.channel(plaintext, "t-1") as ch:
        orders = order_pb2_grpc.OrderServiceStub(ch)
        order = orders.GetOrder(order_pb2.GetOrderRequest(order_id=ORDER_ID), timeout=5).order
        assert order.customer_id == "Bearer t-1"
        own = orders.GetOrder(
            order_pb2.GetOrderRequest(order_id=ORDER_ID), timeout=5, metadata=(("authorization", "Bearer mine"),)
        ).order
        assert own.customer_id == "Bearer mine", "a call's own authorization metadata wins"
        stream = mypage_pb2_grpc.MyPageServiceStub(ch).WatchMyPage(mypage_pb2.WatchMyPageRequest(), timeout=5)
        first, last = list(stream)
        assert first.entry.customer_id == "Bearer t-1", "server streams carry it too"
        assert last.snapshot_end


def test_a_token_function_is_asked_before_every_call(plaintext: str) -> None:
    tokens = iter(["t-1", "t-2"])
    with talentshare_sdk.channel(plaintext, lambda: next(tokens)) as ch:
        orders = order_pb2_grpc.OrderServiceStub(ch)
        seen = [orders.GetOrder(order_pb2.GetOrderRequest(order_id=ORDER_ID), timeout=5).order.customer_id for _ in "12"]
    assert seen == ["Bearer t-1", "Bearer t-2"]


def test_tls_channels_send_the_token_as_call_credentials(tmp_path: pathlib.Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )
    server, port = serve(grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())]))
    try:
        with talentshare_sdk.channel(f"localhost:{port}", "t-tls", secure=True, root_certificates=cert.read_bytes()) as ch:
            order = order_pb2_grpc.OrderServiceStub(ch).GetOrder(order_pb2.GetOrderRequest(order_id=ORDER_ID), timeout=5)
        assert order.order.customer_id == "Bearer t-tls"
    finally:
        server.stop(None)


def cancel_failure(target: str, reason: str) -> talentshare_sdk.TalentshareError:
    with talentshare_sdk.channel(target, "t") as ch:
        with pytest.raises(grpc.RpcError) as raised:
            order_pb2_grpc.OrderServiceStub(ch).CancelOrder(
                order_pb2.CancelOrderRequest(order_id=ORDER_ID, reason=reason), timeout=5
            )
    return decode_error(raised.value)


def test_decodes_field_violations(plaintext: str) -> None:
    error = cancel_failure(plaintext, "invalid")
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message == "order_id: not a UUID; reason: too long"
    assert (error.reason, error.domain) == ("INVALID_FIELDS", "talentshare")
    assert error.reason_enum == errors_pb2.ERROR_REASON_INVALID_FIELDS
    assert error.field_violations == [("order_id", "not a UUID"), ("reason", "too long")]
    assert error.field_violations[0] == FieldViolation(field="order_id", description="not a UUID")
    assert error.precondition_violations == [] and error.retry_delay is None and not error.retryable
    assert str(error) == "INVALID_ARGUMENT [INVALID_FIELDS]: order_id: not a UUID; reason: too long"


def test_decodes_precondition_failure_and_retry_info(plaintext: str) -> None:
    error = cancel_failure(plaintext, "in-flight")
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason_enum == errors_pb2.ERROR_REASON_PAYMENT_IN_FLIGHT
    assert error.metadata == {"order_id": ORDER_ID, "order_status": "ORDER_STATUS_PENDING_PAYMENT"}
    assert error.precondition_violations == [
        PreconditionViolation(type="STATE", subject=f"orders/{ORDER_ID}", description="pending payment")
    ]
    assert error.retry_delay == timedelta(seconds=1.5) and error.retryable


def test_an_unknown_reason_is_unspecified_and_keeps_its_string(plaintext: str) -> None:
    error = cancel_failure(plaintext, "new-reason")
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.reason == "A_REASON_FROM_THE_FUTURE"
    assert error.reason_enum == errors_pb2.ERROR_REASON_UNSPECIFIED


def test_a_status_without_details_decodes_to_code_and_message(plaintext: str) -> None:
    error = cancel_failure(plaintext, "")
    assert (error.code, error.message, error.reason) == (grpc.StatusCode.INTERNAL, "no details", "")
    assert error.reason_enum == errors_pb2.ERROR_REASON_UNSPECIFIED
    assert error.metadata == {} and error.field_violations == []


def test_every_documented_reason_maps_to_its_enum_value() -> None:
    for name in errors_pb2.ErrorReason.keys():
        wire = name.removeprefix("ERROR_REASON_")
        if wire != "UNSPECIFIED":
            assert talentshare_sdk.reason_enum(wire) == errors_pb2.ErrorReason.Value(name)
    assert talentshare_sdk.reason_enum("") == errors_pb2.ERROR_REASON_UNSPECIFIED
