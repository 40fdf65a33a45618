"""Reading a talentshare error: the status code plus its `google.rpc` details.

Every non-OK status a talentshare service makes carries a `google.rpc.Status` in the
`grpc-status-details-bin` trailer (see proto/talentshare/common/v1/errors.proto): an
`ErrorInfo` with a stable `reason`, and, depending on the code, `BadRequest`,
`PreconditionFailure` and `RetryInfo`. Branch on `reason`, never on the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NamedTuple, cast

import grpc
from google.rpc.error_details_pb2 import BadRequest, ErrorInfo, PreconditionFailure, RetryInfo
from google.rpc.status_pb2 import Status
from grpc_status import rpc_status

from talentshare.common.v1 import errors_pb2

#: The `ErrorInfo.domain` of every talentshare error.
DOMAIN = "talentshare"

_REASON_PREFIX = "ERROR_REASON_"


class FieldViolation(NamedTuple):
    """One offending request field (`google.rpc.BadRequest.FieldViolation`)."""

    field: str
    """The request field's name; nested fields joined with `.`."""
    description: str


class PreconditionViolation(NamedTuple):
    """One failed precondition (`google.rpc.PreconditionFailure.Violation`)."""

    type: str
    """"STATE" for talentshare's state conflicts."""
    subject: str
    """The resource: `orders/<order_id>`, `payments/<payment_id>`, `reservations/<id>`."""
    description: str


@dataclass(frozen=True)
class TalentshareError:
    """A failed call, decoded. Build it with `decode_error(rpc_error)`."""

    code: grpc.StatusCode
    message: str
    """For people; may change. Branch on `reason` instead."""
    reason: str = ""
    """`ErrorInfo.reason`, e.g. "ORDER_ALREADY_ENDED"; empty when the status carries
    no ErrorInfo (statuses made by the gRPC stack itself: deadlines, cancellations,
    connection failures)."""
    reason_enum: errors_pb2.ErrorReason.ValueType = errors_pb2.ERROR_REASON_UNSPECIFIED
    """`reason` as the generated enum (`ERROR_REASON_<reason>`); UNSPECIFIED for a
    reason this SDK does not know yet (handle it by `code`) or another domain's."""
    domain: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    """`ErrorInfo.metadata`: the ids and states the reason names (`order_id`, ...)."""
    field_violations: list[FieldViolation] = field(default_factory=list)
    precondition_violations: list[PreconditionViolation] = field(default_factory=list)
    retry_delay: timedelta | None = None
    """`RetryInfo.retry_delay`: the same request may succeed if sent again after it."""

    @property
    def retryable(self) -> bool:
        """True when the server said a retry after `retry_delay` may succeed."""
        return self.retry_delay is not None

    def __str__(self) -> str:
        reason = f" [{self.reason}]" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"


def reason_enum(reason: str) -> errors_pb2.ErrorReason.ValueType:
    """The generated ErrorReason for a wire reason ("ORDER_ALREADY_ENDED" ->
    ERROR_REASON_ORDER_ALREADY_ENDED); ERROR_REASON_UNSPECIFIED when unknown."""
    if not reason or reason == "UNSPECIFIED":
        return errors_pb2.ERROR_REASON_UNSPECIFIED
    try:
        return errors_pb2.ErrorReason.Value(_REASON_PREFIX + reason)
    except ValueError:
        return errors_pb2.ERROR_REASON_UNSPECIFIED


def _status(error: grpc.RpcError) -> Status | None:
    # A sync stub raises a grpc.Call; grpc.aio's AioRpcError has the same methods.
    if not hasattr(error, "trailing_metadata"):
        return None
    try:
        status: Status | None = rpc_status.from_call(cast(grpc.Call, error))
    except ValueError:  # details that contradict the status line: ignore them
        return None
    return status


def _code(error: grpc.RpcError) -> grpc.StatusCode:
    code = getattr(error, "code", None)
    value = code() if callable(code) else None
    return value if isinstance(value, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _message(error: grpc.RpcError) -> str:
    details = getattr(error, "details", None)
    value = details() if callable(details) else None
    return value if isinstance(value, str) else str(error)


def decode_error(error: grpc.RpcError) -> TalentshareError:
    """Decodes a failed call (the `grpc.RpcError` a stub raised, sync or asyncio)
    into its code, message and `google.rpc` details."""
    code, message = _code(error), _message(error)
    status = _status(error)
    if status is None:
        return TalentshareError(code=code, message=message)

    reason, domain, metadata = "", "", {}
    fields: list[FieldViolation] = []
    preconditions: list[PreconditionViolation] = []
    retry_delay: timedelta | None = None
    seen_info = False
    for detail in status.details:
        # Any.Unpack fills the message and says True only when the type matches.
        info, bad, failure, retry = ErrorInfo(), BadRequest(), PreconditionFailure(), RetryInfo()
        if detail.Unpack(info):
            if not seen_info:
                reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
                seen_info = True
        elif detail.Unpack(bad):
            fields.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
        elif detail.Unpack(failure):
            preconditions.extend(
                PreconditionViolation(v.type, v.subject, v.description) for v in failure.violations
            )
        elif detail.Unpack(retry):
            retry_delay = retry.retry_delay.ToTimedelta()
    return TalentshareError(
        code=code,
        message=status.message or message,
        reason=reason,
        reason_enum=reason_enum(reason) if domain == DOMAIN else errors_pb2.ERROR_REASON_UNSPECIFIED,
        domain=domain,
        metadata=metadata,
        field_violations=fields,
        precondition_violations=preconditions,
        retry_delay=retry_delay,
    )
