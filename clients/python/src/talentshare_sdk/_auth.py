"""Channels whose every call carries `authorization: Bearer <token>`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar, Union

import grpc

#: A token, or a function returning the current one (called before every call, so a
#: token refreshed by it is used as soon as it returns the new value).
TokenSource = Union[str, Callable[[], str]]

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_Metadata = tuple[tuple[str, Union[str, bytes]], ...]


def _current(token: TokenSource) -> str:
    value = token() if callable(token) else token
    if not value:
        raise ValueError("talentshare_sdk: the token is empty")
    return value


def _bearer(token: TokenSource) -> tuple[str, str]:
    return ("authorization", f"Bearer {_current(token)}")


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: _Metadata | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _ClientCallDetails(_CallDetails, grpc.ClientCallDetails):
    """grpc.ClientCallDetails is abstract; this is the usual concrete form."""


class _BearerInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the bearer token to the metadata of every call (for channels without TLS,
    where gRPC refuses call credentials). A call that already sends `authorization`
    metadata keeps its own."""

    def __init__(self, token: TokenSource) -> None:
        self._token = token

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata: _Metadata = tuple(details.metadata or ())
        if not any(key.lower() == "authorization" for key, _ in metadata):
            metadata = (*metadata, _bearer(self._token))
        return _ClientCallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, _Request], Any],
        client_call_details: grpc.ClientCallDetails,
        request: _Request,
    ) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, _Request], Any],
        client_call_details: grpc.ClientCallDetails,
        request: _Request,
    ) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Iterator[_Request]], Any],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterator[_Request],
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Iterator[_Request]], Any],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterator[_Request],
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)


class _BearerCredentials(grpc.AuthMetadataPlugin):
    """Call credentials for TLS channels: gRPC asks for the metadata before each call."""

    def __init__(self, token: TokenSource) -> None:
        self._token = token

    def __call__(self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback) -> None:
        try:
            header = _bearer(self._token)
        except Exception as error:  # the token source failed: the call fails with it
            callback((), error)
        else:
            callback((header,), None)


def channel(
    target: str,
    token: TokenSource,
    *,
    secure: bool = False,
    root_certificates: bytes | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, Any]] | None = None,
) -> grpc.Channel:
    """A channel to a talentshare service (`host:port`) whose every call carries
    `authorization: Bearer <token>`.

    `token` is the token itself, or a function that returns the current token (called
    before every call, so a refreshed token is picked up without a new channel).

    With `secure=True` the channel uses TLS (`credentials`, or the system roots or
    `root_certificates`) and sends the token as call credentials. Otherwise it is a
    plaintext channel (local development, or inside a mesh that adds mTLS) and an
    interceptor adds the token, since gRPC sends call credentials only over TLS.
    Stubs work on either: `OrderServiceStub(channel(...))`.
    """
    if secure:
        tls = credentials or grpc.ssl_channel_credentials(root_certificates=root_certificates)
        both = grpc.composite_channel_credentials(
            tls, grpc.metadata_call_credentials(_BearerCredentials(token), name="talentshare-bearer")
        )
        return grpc.secure_channel(target, both, options=options)
    if credentials is not None or root_certificates is not None:
        raise ValueError("talentshare_sdk.channel: credentials need secure=True")
    return grpc.intercept_channel(grpc.insecure_channel(target, options=options), _BearerInterceptor(token))
