"""talentshare's Python SDK: hand-written helpers over the generated code.

The generated messages and stubs live in the `talentshare` package, one module per
.proto file (`talentshare.order.v1.order_pb2`, `..._pb2_grpc`, and the shared statuses
and error reasons in `talentshare.common.v1`). This package adds:

- `channel(target, token)`: a channel whose every call carries
  `authorization: Bearer <token>` (a token, or a function returning the current one);
- `decode_error(rpc_error)`: a failed call's code, message and `google.rpc` details
  (`reason`, field and precondition violations, retry delay) as a `TalentshareError`.
"""

from talentshare_sdk._auth import TokenSource, channel
from talentshare_sdk._errors import (
    DOMAIN,
    FieldViolation,
    PreconditionViolation,
    TalentshareError,
    decode_error,
    reason_enum,
)

__all__ = [
    "DOMAIN",
    "FieldViolation",
    "PreconditionViolation",
    "TalentshareError",
    "TokenSource",
    "channel",
    "decode_error",
    "reason_enum",
]

__version__ = "0.1.0"
