"""Server construction and lifecycle: health, readiness, reflection, shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator_service import ext_authz
from sessionvalidator_service.config import ConfigError, Settings, redact_url
from sessionvalidator_service.http_auth import HttpAuthServer
from sessionvalidator_service.metrics import Metrics, serve_metrics
from sessionvalidator_service.overload import LoopLag
from sessionvalidator_service.serverkind import resolve
from sessionvalidator_service.servicer import SessionValidatorServicer, serialize_response
from sessionvalidator_service.stores import SessionStore, StoreError, open_store, store_kind
from sessionvalidator_service.stores.coalesce import CoalescingStore
from sessionvalidator_service.tls import server_credentials
from sessionvalidator_service.tokens import TokenError, TokenIssuer, load_keys
from sessionvalidator_service.tracing import TracedStore, Tracing, tracing_from_env
from sessionvalidator_service.validator import Validator
from sessionvalidator_service.wire import read_batch_request, read_request

__all__ = ["READINESS_SERVICE", "HealthServicer", "ReadinessMonitor", "Service", "default_store", "serve"]

log = logging.getLogger("sessionvalidator.server")

READINESS_SERVICE = pb.DESCRIPTOR.services_by_name["SessionValidator"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthServicer(health.aio.HealthServicer):  # type: ignore[misc,name-defined]
    """grpc.health.v1 with ``List``, which grpcio-health-checking's aio servicer lacks."""

    async def List(  # noqa: N802 - gRPC method name
        self,
        request: health_pb2.HealthListRequest,  # noqa: ARG002 - part of the signature
        context: grpc.aio.ServicerContext[Any, Any],  # noqa: ARG002 - part of the signature
    ) -> health_pb2.HealthListResponse:
        """Return a snapshot of every registered service's status."""
        statuses = dict(self._server_status)
        return health_pb2.HealthListResponse(
            statuses={name: health_pb2.HealthCheckResponse(status=status) for name, status in statuses.items()}
        )


class ReflectionServicer(reflection.aio.ReflectionServicer):  # type: ignore[misc,name-defined]
    """Server reflection that also resolves method names (``pkg.Service.Method``).

    ghz asks for the file containing the *method*; with protobuf's upb
    descriptor pool grpcio-reflection cannot find methods
    (grpc/grpc#34743), so ghz failed without a proto file. A method name that
    is not found is answered with the file of the service that holds it.
    """

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        response = super()._file_containing_symbol(request, fully_qualified_name)
        if response.HasField("error_response") and "." in fully_qualified_name:
            owner = fully_qualified_name.rpartition(".")[0]
            if owner in self._service_names:
                return super()._file_containing_symbol(request, owner)
        return response


class ReadinessMonitor:
    """Pings the store and drives the readiness service's health status.

    Two failed pings in a row mean NOT_SERVING (one slow ping under load is
    not an outage); one good ping means SERVING again. With the defaults a
    refused connection is noticed in about 0.5 s and a hung store in about
    1.5 s, both inside the 2 s promised to orchestrators.
    """

    def __init__(
        self,
        health_servicer: HealthServicer,
        store: SessionStore,
        metrics: Metrics,
        *,
        interval_s: float = 0.25,
        ping_timeout_s: float = 0.5,
        failures_to_flip: int = 2,
        services: tuple[str, ...] = (READINESS_SERVICE,),
    ) -> None:
        self._health = health_servicer
        self._services = services
        self._store = store
        self._metrics = metrics
        self._interval = interval_s
        self._ping_timeout = ping_timeout_s
        self._failures_to_flip = failures_to_flip
        self._serving: bool | None = None
        self._stopped = False

    @property
    def serving(self) -> bool:
        """Whether the store answered the last pings (readiness SERVING)."""
        return self._serving is True

    async def _set(self, status: Any) -> None:
        for service in self._services:
            await self._health.set(service, status)

    def stop(self) -> None:
        """Stop at the next step, whatever the store client does with a cancellation (see Service.stop)."""
        self._stopped = True

    async def run(self) -> None:
        """Ping until stopped (or cancelled)."""
        failures = 0
        while not self._stopped:
            try:
                await self._store.ping(timeout_s=self._ping_timeout)
            except StoreError as exc:
                failures += 1
                if failures >= self._failures_to_flip and self._serving is not False:
                    self._serving = False
                    log.error(  # noqa: TRY400 - an outage, not a bug: no traceback
                        "session store unreachable; readiness is NOT_SERVING",
                        extra={"event": "readiness", "serving": False, "error": type(exc).__name__},
                    )
                    self._metrics.ready.set(0)
                    await self._set(NOT_SERVING)
            else:
                failures = 0
                if self._serving is not True:
                    self._serving = True
                    log.info(
                        "session store reachable; readiness is SERVING", extra={"event": "readiness", "serving": True}
                    )
                    self._metrics.ready.set(1)
                    await self._set(SERVING)
            await asyncio.sleep(self._interval)


def _add_servicer(servicer: SessionValidatorServicer, server: grpc.aio.Server, tracing: Tracing | None) -> None:
    """Register the servicer as the generated code does, with lenient request parsing (see wire.py).

    While tracing, each validating method runs in a span (tracing.py); otherwise as it is.
    """
    validate_one: Any = servicer.ValidateSession
    validate_many: Any = servicer.ValidateSessions
    if tracing is not None:
        validate_one = tracing.grpc(validate_one, READINESS_SERVICE, "ValidateSession")
        validate_many = tracing.grpc(validate_many, READINESS_SERVICE, "ValidateSessions")
    handlers = {
        "ValidateSession": grpc.unary_unary_rpc_method_handler(
            validate_one,
            request_deserializer=read_request,
            response_serializer=serialize_response,
        ),
        "ValidateSessions": grpc.unary_unary_rpc_method_handler(
            validate_many,
            request_deserializer=read_batch_request,
            response_serializer=pb.ValidateSessionsResponse.SerializeToString,
        ),
        "GetJwks": grpc.unary_unary_rpc_method_handler(
            servicer.GetJwks,
            request_deserializer=pb.GetJwksRequest.FromString,
            response_serializer=pb.GetJwksResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(READINESS_SERVICE, handlers),))
    server.add_registered_method_handlers(READINESS_SERVICE, handlers)  # type: ignore[attr-defined]  # stubs predate it


def default_store(settings: Settings, tracing: Tracing | None = None) -> SessionStore:
    """Build the store ``settings`` name, coalescing concurrent lookups where that is safe.

    While tracing, each round trip is a span: beneath the coalescing, so a shared round trip is one span.
    """
    store = open_store(settings.store_url, settings.store_options)
    if tracing is not None:
        store = TracedStore(store, tracing, store_kind(settings.store_url))
    if settings.coalesce and store.coalescable:
        return CoalescingStore(store, tracing)
    return store


class Service:
    """A running SessionValidator: the gRPC server, its store and its health."""

    def __init__(
        self,
        *,
        metrics: Metrics,
        settings: Settings,
        server: grpc.aio.Server,
        port: int,
        store: SessionStore,
        validator: Validator,
        health_servicer: HealthServicer,
        monitor: ReadinessMonitor,
        monitor_task: asyncio.Task[None],
        loop_lag: LoopLag,
        http: HttpAuthServer | None = None,
        tokens: TokenIssuer | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.metrics = metrics
        self.settings = settings
        self.server = server
        self.port = port
        self.store = store
        self.validator = validator
        self.health = health_servicer
        self._monitor = monitor
        self._monitor_task = monitor_task
        self.http = http
        self.tokens = tokens
        self.tracing = tracing
        self._loop_lag = loop_lag

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        store: SessionStore | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] | None = None,
        reuse_port: bool = False,
    ) -> Service:
        """Bind, register every service and start serving; return the running service.

        The parts are injected (tests pass an in-memory store and a private
        metrics registry); what is not given is built from ``settings``.
        ``reuse_port`` lets several worker processes share the port; a lone
        process refuses to share it, so a second instance fails to bind.
        """
        kind, why = resolve(settings.server, tls=settings.tls is not None)
        tracing = tracing_from_env(os.environ, server_kind=kind.name)
        store = store if store is not None else default_store(settings, tracing)
        metrics = metrics if metrics is not None else Metrics()
        loop_lag = LoopLag()
        validator = Validator(
            secrets=settings.secrets,
            store=store,
            cookie_name=settings.cookie_name,
            metrics=metrics,
            rate_limit=settings.rate_limit,
            attribute_policy=settings.attribute_policy,
            max_in_flight=settings.max_in_flight,
            loop_lag=loop_lag,
            store_timeout_s=settings.store_timeout_s,
            tracing=tracing,
            **({"clock": clock} if clock is not None else {}),
        )
        tokens = TokenIssuer(settings.tokens, load_keys(settings.tokens)) if settings.tokens is not None else None
        servicer = SessionValidatorServicer(
            validator,
            tokens=tokens,
            metrics=metrics,
            peer_header=settings.rate_limit_peer_header,
            retry_pushback=kind.retry_pushback,
            identify=settings.rate_limit is not None,
        )
        server = kind.new_server(reuse_port=reuse_port, max_concurrent_streams=settings.max_concurrent_streams)
        _add_servicer(servicer, server, tracing)
        peer_header, identify = settings.rate_limit_peer_header, settings.rate_limit is not None
        ext_authz.add_to_server(
            ext_authz.AuthorizationServicer(
                validator,
                metrics=metrics,
                policy=settings.gateway,
                peer_header=peer_header,
                identify=identify,
                tokens=tokens,
            ),
            server,
            tracing,
        )
        health_servicer = HealthServicer()
        # Not ready until the first good ping.
        for name in (READINESS_SERVICE, ext_authz.SERVICE_NAME):
            await health_servicer.set(name, NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            ReflectionServicer(
                (
                    READINESS_SERVICE,
                    ext_authz.SERVICE_NAME,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                )
            ),
            server,
        )
        try:
            if settings.tls is not None:
                port = server.add_secure_port(settings.listen, server_credentials(settings.tls))
            else:
                port = server.add_insecure_port(settings.listen)
        except RuntimeError as exc:
            await store.aclose()
            msg = f"cannot listen on {settings.listen}: {exc}"
            raise OSError(msg) from exc
        monitor = ReadinessMonitor(
            health_servicer, store, metrics, services=(READINESS_SERVICE, ext_authz.SERVICE_NAME)
        )
        http = None
        if settings.http_listen is not None:
            http = HttpAuthServer(
                validator,
                metrics=metrics,
                policy=settings.gateway,
                ready=lambda: monitor.serving,
                peer_header=peer_header,
                identify=identify,
                limits=settings.http_limits,
                tokens=tokens,
                tracing=tracing,
            )
            try:
                await http.start(settings.http_listen, reuse_port=reuse_port)
            except OSError as exc:
                await store.aclose()
                msg = f"cannot listen on {settings.http_listen}: {exc}"
                raise OSError(msg) from exc
        await server.start()
        metrics.serving_on(kind.name, why)
        loop_lag.start()
        metrics.start_flushing()
        task = asyncio.get_running_loop().create_task(monitor.run(), name="readiness-monitor")
        log.info(
            "serving",
            extra={
                "event": "serving",
                "listen": settings.listen,
                "port": port,
                "server": kind.name,
                "server_reason": why,
                "store_url": redact_url(settings.store_url),
                "cookie_name": settings.cookie_name,
                "key_prefix": settings.key_prefix,
                "secrets": len(settings.secrets),
                "pid": os.getpid(),
                "tls": "off" if settings.tls is None else ("mutual" if settings.tls.client_ca else "on"),
                "http_port": http.port if http is not None else None,
                "token_kid": tokens.keys.current.kid if tokens is not None else None,
            },
        )
        return cls(
            metrics=metrics,
            settings=settings,
            server=server,
            port=port,
            store=store,
            validator=validator,
            health_servicer=health_servicer,
            monitor=monitor,
            monitor_task=task,
            loop_lag=loop_lag,
            http=http,
            tokens=tokens,
            tracing=tracing,
        )

    def reload_secrets(self, env: Mapping[str, str]) -> bool:
        """Re-read the secrets and the token keys (SIGHUP); on any problem keep the current ones.

        Turning tokens on or off, or changing their issuer, audience or lifetime, needs a restart.
        """
        try:
            fresh = Settings.from_env(env)
            keys = load_keys(fresh.tokens) if self.tokens is not None and fresh.tokens is not None else None
        except (ConfigError, TokenError) as exc:
            log.error(  # noqa: TRY400 - a configuration mistake, not a bug: no traceback
                "secrets not reloaded; the current ones stay in use",
                extra={"event": "secrets_reload_failed", "error": str(exc)},
            )
            self.metrics.secrets_reloaded(ok=False)
            return False
        if self.tokens is not None and keys is not None:
            self.tokens.use_keys(keys)
            log.info(
                "token keys reloaded",
                extra={"event": "token_keys_reloaded", "kid": keys.current.kid, "retired": len(keys.retired)},
            )
        self.validator.use_secrets(fresh.secrets)
        self.metrics.secrets_reloaded(ok=True)
        log.info("secrets reloaded", extra={"event": "secrets_reloaded", "secrets": len(fresh.secrets)})
        return True

    async def stop(self, *, delay_s: float = 0.0) -> None:
        """Drain: NOT_SERVING everywhere at once, then refuse new calls and finish in-flight ones.

        For ``delay_s`` (at most half the grace) new calls are still served
        while load balancers and clients watching health move away; calls in
        flight then have the rest of the grace.
        """
        grace = self.settings.shutdown_grace_s
        delay = min(delay_s, grace / 2)
        log.info("shutting down", extra={"event": "shutdown", "grace_s": grace, "delay_s": delay})
        await self.health.enter_graceful_shutdown()
        # A cancellation that lands while the store client is timing out a
        # ping can be turned into that timeout by the client library, and the
        # loop would go on pinging: it also stops at its next step, and
        # shutdown waits for it only briefly, so SIGTERM always ends in time.
        self._monitor.stop()
        self._monitor_task.cancel()
        await asyncio.wait({self._monitor_task}, timeout=1.0)
        if delay > 0:
            await asyncio.sleep(delay)
        grace -= delay
        if self.http is not None:
            await asyncio.gather(self.http.stop(grace), self.server.stop(grace))
        else:
            await self.server.stop(grace)
        await self._loop_lag.stop()
        await self.metrics.stop_flushing()
        try:
            async with asyncio.timeout(2.0):
                await self.store.aclose()
        except TimeoutError:
            log.warning("the store's connections did not close in time", extra={"event": "store_close_timeout"})
        if self.tracing is not None:
            self.tracing.shutdown()  # exports what is buffered
        log.info("stopped", extra={"event": "stopped"})


async def serve(settings: Settings, *, reuse_port: bool = False) -> None:
    """Run until SIGTERM or SIGINT, then drain within the grace period."""
    service = await Service.start(settings, reuse_port=reuse_port)
    if settings.metrics_listen is not None and not reuse_port:
        # A lone process serves its own metrics; workers' supervisor serves theirs merged.
        serve_metrics(settings.metrics_listen)
    stop = asyncio.Event()
    signals: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        signals.append(signum)
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, service.reload_secrets, os.environ)
    await stop.wait()
    # An orchestrator's SIGTERM keeps serving through the delay; an operator's Ctrl-C (SIGINT) does not wait.
    await service.stop(delay_s=settings.shutdown_delay_s if signals[0] == signal.SIGTERM else 0.0)
