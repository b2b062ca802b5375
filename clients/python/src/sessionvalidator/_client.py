"""``Client`` (blocking) and ``AsyncClient`` (asyncio) for ``sessionvalidator.v1.SessionValidator``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import grpc

from sessionvalidator._channel import (
    DEFAULT_TIMEOUT,
    ChannelOption,
    channel_credentials,
    channel_options,
    check_timeout,
    normalize_target,
)
from sessionvalidator._errors import SessionValidatorError, from_item_error, from_rpc_error
from sessionvalidator._models import BatchItem, Validation, from_response
from sessionvalidator._requests import Headers, cookie_header_request, headers_request, signed_value_request
from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc

__all__ = ["AsyncClient", "Client"]


class _Settings:
    """What both clients are configured with; checked once, at construction."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float,
        root_certificates: bytes | None,
        certificate_chain: bytes | None,
        private_key: bytes | None,
        credentials: grpc.ChannelCredentials | None,
        options: Sequence[ChannelOption],
    ) -> None:
        self.target = normalize_target(target)
        self.timeout = check_timeout(timeout)
        self.credentials = channel_credentials(
            root_certificates=root_certificates,
            certificate_chain=certificate_chain,
            private_key=private_key,
            credentials=credentials,
        )
        self.options = channel_options(options, target=self.target)

    def deadline(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else check_timeout(timeout)


#: The most credentials one batch may carry (more is INVALID_ARGUMENT, BATCH_TOO_LARGE).
MAX_BATCH = 256


def _batch_items(
    requests: Sequence[pb.ValidateSessionRequest], response: pb.ValidateSessionsResponse
) -> list[BatchItem]:
    if len(response.responses) != len(requests):
        msg = f"the service answered {len(response.responses)} of {len(requests)} credentials"
        raise SessionValidatorError(msg, code=grpc.StatusCode.INTERNAL)
    return [
        BatchItem(from_response(item), from_item_error(item.error) if item.HasField("error") else None)
        for item in response.responses
    ]


class Client:
    """A blocking client; one per process is enough (the channel is thread-safe).

    ``target`` is ``host:port`` (resolved through DNS, every address used in
    turn) or any gRPC target URI (``dns:///``, ``ipv4:``, ``unix:``...).

    Keyword options:

    * ``timeout``: the deadline of each call in seconds (default 0.15, below
      Envoy ext_authz's 200 ms); every method also takes ``timeout=``.
    * ``root_certificates``, ``certificate_chain``, ``private_key``: PEM bytes
      for TLS (a private CA) or mutual TLS (chain and key together).
    * ``credentials``: ready-made :class:`grpc.ChannelCredentials` instead.
    * ``options``: extra gRPC channel options; one with the name of a default
      (``grpc.service_config``, ``grpc.keepalive_time_ms``...) replaces it.

    With no TLS option the channel is **plaintext**: only for a validator on
    the same host or behind a mesh that encrypts (mTLS sidecars).
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        root_certificates: bytes | None = None,
        certificate_chain: bytes | None = None,
        private_key: bytes | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[ChannelOption] = (),
    ) -> None:
        self._settings = _Settings(
            target,
            timeout=timeout,
            root_certificates=root_certificates,
            certificate_chain=certificate_chain,
            private_key=private_key,
            credentials=credentials,
            options=options,
        )
        settings = self._settings
        if settings.credentials is None:
            self._channel = grpc.insecure_channel(settings.target, options=settings.options)
        else:
            self._channel = grpc.secure_channel(settings.target, settings.credentials, options=settings.options)
        self._stub = pb_grpc.SessionValidatorStub(self._channel)

    @property
    def target(self) -> str:
        """The gRPC target the channel dials."""
        return self._settings.target

    @property
    def timeout(self) -> float:
        """The default per-call deadline in seconds."""
        return self._settings.timeout

    def _call(self, request: pb.ValidateSessionRequest, timeout: float | None, issue_token: bool = False) -> Validation:
        request.issue_token = issue_token
        try:
            response = self._stub.ValidateSession(request, timeout=self._settings.deadline(timeout))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        return from_response(response)

    def validate_cookie_header(
        self, header: bytes | str | None, *, timeout: float | None = None, issue_token: bool = False
    ) -> Validation:
        """Judge a Cookie header: its bytes, or its latin-1 text (``None``: there was no header)."""
        return self._call(cookie_header_request(header), timeout, issue_token)

    def validate_headers(
        self, headers: Headers, *, timeout: float | None = None, issue_token: bool = False
    ) -> Validation:
        """Judge the Cookie headers among ``headers`` (ASGI-style ``(name, value)`` pairs)."""
        return self._call(headers_request(headers), timeout, issue_token)

    def validate_signed_value(
        self, value: str, *, timeout: float | None = None, issue_token: bool = False
    ) -> Validation:
        """Judge a bare cookie value, such as ``s%3A<sid>.<signature>``."""
        return self._call(signed_value_request(value), timeout, issue_token)

    def validate_batch(
        self, requests: Sequence[pb.ValidateSessionRequest], *, timeout: float | None = None
    ) -> list[BatchItem]:
        """Judge up to 256 credentials in one call and one store round trip, in order.

        An exception means the whole call failed (store down, overload, a banned
        client, too many credentials); a credential refused on its own gets a
        :class:`BatchItem` with ``error``.
        """
        try:
            response = self._stub.ValidateSessions(
                pb.ValidateSessionsRequest(requests=requests), timeout=self._settings.deadline(timeout)
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        return _batch_items(requests, response)

    def validate_cookie_headers(
        self, headers: Sequence[bytes | str | None], *, timeout: float | None = None
    ) -> list[BatchItem]:
        """:meth:`validate_batch` for Cookie headers (each as :meth:`validate_cookie_header` takes it)."""
        return self.validate_batch([cookie_header_request(h) for h in headers], timeout=timeout)

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.target!r}, timeout={self.timeout})"


class AsyncClient:
    """An asyncio client, for ASGI apps; same options as :class:`Client`.

    The channel is opened on first use, in the running event loop, so the
    client can be built at import time (before uvicorn starts its loop). It
    then belongs to that loop: using it from another loop raises
    :class:`RuntimeError`; build one client per loop.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        root_certificates: bytes | None = None,
        certificate_chain: bytes | None = None,
        private_key: bytes | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[ChannelOption] = (),
    ) -> None:
        self._settings = _Settings(
            target,
            timeout=timeout,
            root_certificates=root_certificates,
            certificate_chain=certificate_chain,
            private_key=private_key,
            credentials=credentials,
            options=options,
        )
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.SessionValidatorAsyncStub | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def target(self) -> str:
        """The gRPC target the channel dials."""
        return self._settings.target

    @property
    def timeout(self) -> float:
        """The default per-call deadline in seconds."""
        return self._settings.timeout

    def _connected(self) -> pb_grpc.SessionValidatorAsyncStub:
        if self._closed:
            raise RuntimeError("this AsyncClient is closed")
        loop = asyncio.get_running_loop()
        if self._stub is None:
            settings = self._settings
            if settings.credentials is None:
                self._channel = grpc.aio.insecure_channel(settings.target, options=settings.options)
            else:
                self._channel = grpc.aio.secure_channel(settings.target, settings.credentials, options=settings.options)
            self._stub = pb_grpc.SessionValidatorStub(self._channel)
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError("this AsyncClient is bound to the event loop it was first used in; make one per loop")
        return self._stub

    async def _call(
        self, request: pb.ValidateSessionRequest, timeout: float | None, issue_token: bool = False
    ) -> Validation:
        request.issue_token = issue_token
        stub = self._connected()
        try:
            response = await stub.ValidateSession(request, timeout=self._settings.deadline(timeout))
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc
        return from_response(response)

    async def validate_cookie_header(
        self, header: bytes | str | None, *, timeout: float | None = None, issue_token: bool = False
    ) -> Validation:
        """Judge a Cookie header: its bytes, or its latin-1 text (``None``: there was no header)."""
        return await self._call(cookie_header_request(header), timeout, issue_token)

    async def validate_headers(
        self, headers: Headers, *, timeout: float | None = None, issue_token: bool = False
    ) -> Validation:
        """Judge the Cookie headers among ``headers`` (ASGI ``scope["headers"]``)."""
        return await self._call(headers_request(headers), timeout, issue_token)

    async def validate_signed_value(
        self, value: str, *, timeout: float | None = None, issue_token: bool = False
    ) -> Validation:
        """Judge a bare cookie value, such as ``s%3A<sid>.<signature>``."""
        return await self._call(signed_value_request(value), timeout, issue_token)

    async def validate_batch(
        self, requests: Sequence[pb.ValidateSessionRequest], *, timeout: float | None = None
    ) -> list[BatchItem]:
        """Judge up to 256 credentials in one call (see :meth:`Client.validate_batch`)."""
        stub = self._connected()
        try:
            response = await stub.ValidateSessions(
                pb.ValidateSessionsRequest(requests=requests), timeout=self._settings.deadline(timeout)
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc
        return _batch_items(requests, response)

    async def validate_cookie_headers(
        self, headers: Sequence[bytes | str | None], *, timeout: float | None = None
    ) -> list[BatchItem]:
        """:meth:`validate_batch` for Cookie headers (each as :meth:`validate_cookie_header` takes it)."""
        return await self.validate_batch([cookie_header_request(h) for h in headers], timeout=timeout)

    async def aclose(self) -> None:
        """Close the channel (if it was opened); calls in flight are cancelled."""
        self._closed = True
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close(grace=None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncClient({self.target!r}, timeout={self.timeout})"
