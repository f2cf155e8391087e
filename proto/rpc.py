"""Client callables and server handlers of the services in ``cipherome.proto``, read from its descriptor.

This replaces the ``cipherome_pb2_grpc.py`` that ``grpc_tools.protoc --grpc_python_out``
writes (a stub class, a servicer class, a registration function and an experimental
class per service, the same dozen lines again for every RPC). Everything those lines
spell out is in the service descriptor that ``cipherome_pb2`` already carries
(``DESCRIPTOR.services_by_name``): an RPC's path is ``/<package>.<Service>/<Method>``, its
kind follows from ``client_streaming``/``server_streaming`` (unary_unary, unary_stream,
stream_unary, stream_stream), and its request/response classes are the message classes
of ``cipherome_pb2`` named by the method's input/output types, serialised with
``SerializeToString`` and parsed with ``FromString``. So one function makes the client
callable of any RPC (``channel.<kind>(path, ...)``) and one the server handler
(``grpc.<kind>_rpc_method_handler``), and a service's generic handler is
``grpc.method_handlers_generic_handler`` over its methods. Either side may replace a
(de)serialiser, e.g. to send pre-encoded bytes (``request_serializer=None``).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

import grpc

from . import cipherome_pb2

__all__ = ["Rpc", "rpc", "client_callable", "stub", "method_handler", "generic_handler"]

#: "keep the message class's own (de)serialiser"
_OWN: Any = object()


@dataclass(frozen=True)
class Rpc:
    """One RPC of a service in ``cipherome.proto``: its path, kind and message classes."""

    service: str  #: full service name, e.g. ``cipherome.v1.Control``
    name: str  #: method name, e.g. ``Health``
    request: type
    response: type
    client_streaming: bool
    server_streaming: bool

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def kind(self) -> str:
        """``unary_unary``, ``unary_stream``, ``stream_unary`` or ``stream_stream``."""
        return ("stream" if self.client_streaming else "unary") + "_" + ("stream" if self.server_streaming else "unary")


def _service(service: str):
    try:
        return cipherome_pb2.DESCRIPTOR.services_by_name[service]
    except KeyError:
        raise KeyError(f"cipherome.proto has no service {service!r}") from None


def rpc(service: str, name: str) -> Rpc:
    """The RPC ``name`` of ``service`` (short name, e.g. ``rpc("Peer", "Exchange")``)."""
    s = _service(service)
    m = s.methods_by_name.get(name)
    if m is None:
        raise KeyError(f"service {s.full_name} has no method {name!r}")
    return Rpc(s.full_name, m.name, getattr(cipherome_pb2, m.input_type.name), getattr(cipherome_pb2, m.output_type.name),
               m.client_streaming, m.server_streaming)


def client_callable(channel: grpc.Channel, service: str, name: str,
                    request_serializer: Callable | None = _OWN, response_deserializer: Callable | None = _OWN):
    """The multi-callable of one RPC on ``channel`` (``channel.unary_unary(path, ...)`` etc.)."""
    r = rpc(service, name)
    return getattr(channel, r.kind)(
        r.path,
        request_serializer=r.request.SerializeToString if request_serializer is _OWN else request_serializer,
        response_deserializer=r.response.FromString if response_deserializer is _OWN else response_deserializer,
    )


def stub(channel: grpc.Channel, service: str) -> SimpleNamespace:
    """Every RPC of ``service`` as an attribute of one object (what protoc's ``<Service>Stub`` is)."""
    names = _service(service).methods_by_name
    return SimpleNamespace(**{n: client_callable(channel, service, n) for n in names})


def method_handler(service: str, name: str, behaviour: Callable,
                   request_deserializer: Callable | None = _OWN, response_serializer: Callable | None = _OWN):
    """The server side of one RPC: ``behaviour(request or request_iterator, context)`` behind its (de)serialisers."""
    r = rpc(service, name)
    return getattr(grpc, r.kind + "_rpc_method_handler")(
        behaviour,
        request_deserializer=r.request.FromString if request_deserializer is _OWN else request_deserializer,
        response_serializer=r.response.SerializeToString if response_serializer is _OWN else response_serializer,
    )


def generic_handler(service: str, handlers: dict[str, Callable | grpc.RpcMethodHandler]) -> grpc.GenericRpcHandler:
    """A service's generic handler for ``server.add_generic_rpc_handlers``.

    ``handlers``: method name -> its behaviour (wrapped by :func:`method_handler`) or a
    ready ``grpc.RpcMethodHandler`` (from :func:`method_handler` with other (de)serialisers).
    A name the service does not define is an error; a method left out answers UNIMPLEMENTED.
    """
    s = _service(service)
    out = {}
    for name, h in handlers.items():
        if name not in s.methods_by_name:
            raise KeyError(f"service {s.full_name} has no method {name!r}")
        out[name] = h if isinstance(h, grpc.RpcMethodHandler) else method_handler(service, name, h)
    return grpc.method_handlers_generic_handler(s.full_name, out)
