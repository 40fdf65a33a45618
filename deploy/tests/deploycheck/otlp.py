"""A minimal OTLP/gRPC trace receiver on loopback: what the chart-as-cluster run maps a
rendered OTEL_EXPORTER_OTLP_ENDPOINT to (the collector a cluster would have).

It answers TraceService/Export with an empty ExportTraceServiceResponse and keeps each
request's bytes; it decodes only the resources' `service.name` (enough to tell which
service exported), so it needs no OTLP protobuf classes.
"""
from __future__ import annotations

import concurrent.futures
import threading

import grpc

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, i
        shift += 7


def _fields(buf: bytes):
    """(field number, wire type, value) of one protobuf message; length-delimited values as bytes."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i : i + size], i + size
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield number, wire, value


def service_names(request: bytes) -> list[str]:
    """`service.name` of each ResourceSpans in an ExportTraceServiceRequest.

    ExportTraceServiceRequest{1: ResourceSpans{1: Resource{1: KeyValue{1: key,
    2: AnyValue{1: string_value}}}}}."""
    names = []
    for n, w, resource_spans in _fields(request):
        if n != 1 or w != 2:
            continue
        for n2, w2, resource in _fields(resource_spans):
            if n2 != 1 or w2 != 2:
                continue
            for n3, w3, kv in _fields(resource):
                if n3 != 1 or w3 != 2:
                    continue
                fields = {f: v for f, wt, v in _fields(kv) if wt == 2}
                if fields.get(1) == b"service.name":
                    value = {f: v for f, wt, v in _fields(fields.get(2, b"")) if wt == 2}
                    names.append(value.get(1, b"").decode())
    return names


class Receiver:
    """OTLP/gRPC on 127.0.0.1:<port> (plaintext, like a collector's 4317 inside a cluster)."""

    def __init__(self):
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        self._server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            TRACE_SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(self._export)}
        )
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def _export(self, request: bytes, context) -> bytes:
        with self._lock:
            self.requests.append(request)
        return b""  # an empty ExportTraceServiceResponse: everything accepted

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def services(self) -> set[str]:
        """Every service.name that exported spans so far."""
        with self._lock:
            requests = list(self.requests)
        return {name for r in requests for name in service_names(r)}

    def stop(self) -> None:
        self._server.stop(grace=None)
