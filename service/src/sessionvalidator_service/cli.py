"""``sessionvalidator``: serve, mint, check, healthcheck and mint-key.

Exit statuses:

* ``serve``: 0 after a clean shutdown, 1 when it cannot listen, 2 on bad configuration.
* ``mint``: 0, 1 when the store cannot be written, 2 on bad configuration.
* ``check``: 0 VALID, 4 BAD_SIGNATURE, 5 MALFORMED, 6 EXPIRED, 7 MISSING,
  3 when the call fails (UNAVAILABLE, deadline, no server) or the verdict is one
  this version does not know (UNSPECIFIED, or a newer one), 2 on bad usage.
* ``healthcheck``: 0 SERVING, 1 anything else (Docker's HEALTHCHECK contract).
* ``mint-key``: 0, 1 when the file exists or cannot be written.

``mint``, ``check`` and ``healthcheck`` take ``--env-file FILE``: ``NAME=VALUE`` lines
(``SESSIONVALIDATOR_*`` settings) used for the variables the environment leaves unset, so
they reach the same store and service as the ``serve`` those settings started. Every
error says what failed, where (the store URL without its password, the address), and
what to do; none prints a secret or a cookie.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sessionvalidator_service.config import ConfigError, Settings, redact_url
from sessionvalidator_service.variables import PREFIX

if TYPE_CHECKING:
    import grpc

__all__ = ["CHECK_EXIT", "check_exit", "main"]

CHECK_EXIT = {
    "VERDICT_VALID": 0,
    "VERDICT_BAD_SIGNATURE": 4,
    "VERDICT_MALFORMED": 5,
    "VERDICT_EXPIRED": 6,
    "VERDICT_MISSING": 7,
}
EXIT_RPC_FAILED = 3
EXIT_CONFIG = 2
_DETAIL_MAX = 200  # characters of a store library's message that an error repeats


def _local_target(listen: str) -> str:
    """Turn a listen address (``[::]:50051``) into one to dial."""
    host, _, port = listen.rpartition(":")
    if host in {"[::]", "0.0.0.0", ""}:  # noqa: S104 - translating, not binding
        host = "localhost"
    return f"{host}:{port}"


def _settings(env: Mapping[str, str], *, require_secrets: bool = True) -> Settings:
    try:
        return Settings.from_env(env, require_secrets=require_secrets)
    except ConfigError as exc:
        hint = ""
        if exc.variable == f"{PREFIX}SECRETS" and not env.get(f"{PREFIX}SECRETS_FILE"):
            hint = " (set it to the Express app's secret, or pass --env-file with the service's settings)"
        print(f"sessionvalidator: configuration error: {exc}{hint}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


# Variables that name one setting two ways: the environment setting either one keeps the file's out.
_ALTERNATIVES = ({"STORE_URL", "REDIS_URL"}, {"SECRETS", "SECRETS_FILE"})


def read_env_file(path: str) -> dict[str, str]:
    """Read ``NAME=VALUE`` lines: blank lines and ``#`` comments skipped, one pair of matching quotes removed.

    No expansion and no escapes, as Docker's ``--env-file`` reads them; only ``SESSIONVALIDATOR_*``
    names are kept, so the file an orchestrator passes to ``serve`` (systemd's ``EnvironmentFile``)
    can be shared. Raises :class:`ValueError` naming the file and line (never a value).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror if isinstance(exc, OSError) else 'not UTF-8'}") from None
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.removeprefix("export ").partition("=")
        name = name.strip()
        if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"{path}, line {number}: not NAME=VALUE")
        if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if name.startswith(PREFIX):
            found[name] = value
    return found


def with_env_file(env: Mapping[str, str], path: str | None) -> Mapping[str, str]:
    """``env``, with the file's settings for the ones it leaves unset (or empty)."""
    if path is None:
        return env
    merged = dict(env)
    for name, value in read_env_file(path).items():
        bare = name.removeprefix(PREFIX)
        same = next((group for group in _ALTERNATIVES if bare in group), {bare})
        if not any(env.get(PREFIX + other) for other in same):
            merged[name] = value
    return merged


def _serve(env: Mapping[str, str]) -> int:
    settings = _settings(env)
    from sessionvalidator_service.logs import configure_logging

    configure_logging(settings.log_level)
    if settings.workers > 1:
        from sessionvalidator_service.workers import run_workers

        return run_workers(settings)
    import uvloop  # grpc.aio runs on uvloop: 10-20 % less CPU per call

    from sessionvalidator_service.server import serve

    try:
        uvloop.run(serve(settings))
    except OSError as exc:
        import logging

        logging.getLogger("sessionvalidator.server").critical(str(exc), extra={"event": "listen_failed"})
        return 1
    return 0


def _mint_timeout_s(settings: Settings) -> float:
    """``mint`` waits at least 2 s for the store: a person is waiting, not a caller's deadline."""
    return max(settings.store_timeout_s, 2.0)


async def _mint_async(settings: Settings, args: argparse.Namespace) -> list[str]:
    import dataclasses

    from sessionvalidator_service.mint import mint_session
    from sessionvalidator_service.signature import Signer
    from sessionvalidator_service.stores import open_store

    signer = Signer(settings.secrets)
    options = dataclasses.replace(settings.store_options, timeout_s=_mint_timeout_s(settings))
    store = open_store(settings.store_url, options)
    extra: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    if not args.anonymous:
        kwargs["user"] = json.loads(args.user)
    else:
        extra["views"] = 1  # an anonymous session is only saved once it holds something
    lines = []
    try:
        for index in range(args.count):
            session = mint_session(
                signer,
                max_age_s=None if args.max_age == 0 else args.max_age,
                session_id=args.sid if args.count == 1 else None,
                extra=extra or None,
                disable_ttl=args.no_ttl,
                **kwargs,
            )
            await store.write_session(session.session_id, session.stored_json, ttl_s=session.ttl_s)
            header = session.cookie_header(settings.cookie_name)
            if args.json:
                lines.append(
                    json.dumps(
                        {
                            "index": index,
                            "session_id": session.session_id,
                            "cookie": header,
                            "value": session.cookie_value,
                        }
                    )
                )
            else:
                lines.append(header)
    finally:
        await store.aclose()
    return lines


def _store_failure(settings: Settings, env: Mapping[str, str], exc: Exception) -> str:
    """Say what went wrong writing to the store, where, and what to do (never the URL's password)."""
    from sessionvalidator_service.stores import StoreTimeoutError

    where = redact_url(settings.store_url)
    if not (env.get(f"{PREFIX}STORE_URL") or env.get(f"{PREFIX}REDIS_URL")):
        where += f" (the default: {PREFIX}STORE_URL is unset)"
    # The library's own words, without an object dump (redis-py appends its client's repr) and short.
    detail = str(exc).split(" : <", 1)[0].split("\n", 1)[0]
    detail = detail if len(detail) <= _DETAIL_MAX else detail[:_DETAIL_MAX] + "..."
    if re.fullmatch(r"[A-Za-z]+(Error|Exception|Failure)", detail):  # a bare class name says nothing
        detail = ""
    if isinstance(exc, StoreTimeoutError):
        what = f"no answer within {_mint_timeout_s(settings):g} s" + (f" ({detail})" if detail else "")
    else:
        what = detail or "refused, unreachable or answered with an error"
    return (
        f"sessionvalidator mint: cannot write to the session store at {where}: {what}.\n"
        f"  Is the store running there? Set {PREFIX}STORE_URL to the store your Express app uses, "
        "or pass --env-file with the service's settings."
    )


def _mint(env: Mapping[str, str], args: argparse.Namespace) -> int:
    settings = _settings(env)
    from sessionvalidator_service.stores import StoreError

    try:
        json.loads(args.user)
    except ValueError:
        print('sessionvalidator mint: --user must be JSON, such as \'"42"\', 42 or \'{"id":"42"}\'', file=sys.stderr)
        return EXIT_CONFIG
    if args.max_age < 0 or args.count < 1:
        print("sessionvalidator mint: --max-age must be >= 0 and --count >= 1", file=sys.stderr)
        return EXIT_CONFIG
    try:
        lines = asyncio.run(_mint_async(settings, args))
    except StoreError as exc:
        print(_store_failure(settings, env, exc), file=sys.stderr)
        return 1
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


def _channel(target: str, args: argparse.Namespace, env: Mapping[str, str]) -> grpc.Channel:
    """Open a channel to the service: TLS when a CA (or a client certificate) is given."""
    import grpc

    def option(name: str) -> str | None:
        value = getattr(args, "tls_" + name)
        return value if value is not None else (env.get(f"{PREFIX}CHECK_TLS_{name.upper()}") or None)

    ca, cert, key, server_name = option("ca"), option("cert"), option("key"), option("server_name")
    if ca is None and cert is None:
        return grpc.insecure_channel(target)

    def read(path: str | None) -> bytes | None:
        return None if path is None else Path(path).read_bytes()

    credentials = grpc.ssl_channel_credentials(read(ca), read(key), read(cert))
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(target, credentials, options=options)


def _check(env: Mapping[str, str], args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import json_format

    from sessionvalidator.v1 import session_validator_service_pb2 as pb
    from sessionvalidator.v1 import session_validator_service_pb2_grpc as pb_grpc

    target = args.address or _local_target(_settings(env, require_secrets=False).listen)
    if args.value is not None:
        request = pb.ValidateSessionRequest(signed_value=args.value)
    else:
        request = pb.ValidateSessionRequest(cookie_header_text=args.cookie)
    with _channel(target, args, env) as channel:
        try:
            response = pb_grpc.SessionValidatorStub(channel).ValidateSession(request, timeout=args.timeout)
        except grpc.RpcError as exc:
            reason = _error_reason(exc)
            print(json.dumps({"error": exc.code().name, "reason": reason, "message": exc.details()}))
            print(f"sessionvalidator check: {_call_failure(target, exc.code().name, reason, args)}", file=sys.stderr)
            return EXIT_RPC_FAILED
    print(json_format.MessageToJson(response, preserving_proto_field_name=True, indent=None))
    if response.reason == pb.REASON_COOKIE_NOT_FOUND and args.cookie is not None:
        # Name the cookie the service looked for, never the text given.
        if "=" not in args.cookie:
            print(
                f"sessionvalidator check: --cookie takes a Cookie header ({response.cookie_name}=s%3A...); "
                "that text has no name=, so it names no cookie. For the cookie's value alone use --value.",
                file=sys.stderr,
            )
        else:
            print(
                f"sessionvalidator check: the header holds no cookie named {response.cookie_name!r} "
                f"(the service's {PREFIX}COOKIE_NAME; names are case-sensitive).",
                file=sys.stderr,
            )
    return check_exit(response.verdict)


def _call_failure(target: str, code: str, reason: str | None, args: argparse.Namespace) -> str:
    """Say what a failed call means: where it went and what to try."""
    if reason in {"STORE_UNAVAILABLE", "STORE_TIMEOUT"}:
        return (
            f"the service at {target} cannot reach its session store ({reason}): is the store it was started "
            f"with ({PREFIX}STORE_URL) running? The service's log names it."
        )
    if reason == "OVERLOADED":
        return f"the service at {target} is overloaded (OVERLOADED): try again in a moment."
    if reason == "RATE_LIMITED":
        return (
            f"the service at {target} refused: too many bad cookies from this address (RATE_LIMITED); wait and retry."
        )
    if code == "UNAVAILABLE":
        return (
            f"no service answers at {target} (UNAVAILABLE): is it running there? Start it with "
            "`sessionvalidator serve`, or pass --address host:port (or --env-file with its settings); "
            "a TLS service needs --tls-ca."
        )
    if code == "DEADLINE_EXCEEDED":
        return (
            f"no answer from {target} within {args.timeout:g} s (DEADLINE_EXCEEDED): is it a SessionValidator, "
            "and is it up? --timeout waits longer."
        )
    if code == "UNIMPLEMENTED":
        return f"what answers at {target} is not a SessionValidator (UNIMPLEMENTED): check --address."
    return f"the call to {target} failed ({code}{', ' + reason if reason else ''}); the service's log says more."


def check_exit(verdict: int) -> int:
    """Return ``check``'s exit status for a verdict number: 3 for one this version does not know."""
    from sessionvalidator.v1 import session_validator_service_pb2 as pb

    name = next((name for name, number in pb.Verdict.items() if number == verdict), None)
    if name not in CHECK_EXIT:
        print(f"sessionvalidator: unknown verdict {verdict}: treated as not valid", file=sys.stderr)
        return EXIT_RPC_FAILED
    return CHECK_EXIT[name]


def _error_reason(exc: Any) -> str | None:
    """Return the google.rpc.ErrorInfo reason of a failed call, if the status carries one."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    try:
        status = rpc_status.from_call(exc)
    except ValueError:
        return None
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
            return str(info.reason)
    return None


def _healthcheck(env: Mapping[str, str], args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    target = args.address or _local_target(_settings(env, require_secrets=False).listen)
    with _channel(target, args, env) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            print(
                f"sessionvalidator healthcheck: {_call_failure(target, exc.code().name, None, args)}", file=sys.stderr
            )
            return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(f"{target} {args.service or '(server)'}: {name}")
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


def _mint_key(args: argparse.Namespace) -> int:
    """Write a new private key readable by its owner only, and print its ``kid`` (never the key)."""
    from sessionvalidator_service.tokens import kid_of_pem, new_private_key_pem

    pem = new_private_key_pem(args.alg)
    try:
        descriptor = os.open(args.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        print(f"sessionvalidator mint-key: cannot create {args.path!r}: {exc.strerror}", file=sys.stderr)
        return 1
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    print(kid_of_pem(args.path))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sessionvalidator",
        description="Validate express-session cookies over gRPC. Configuration comes from "
        f"{PREFIX}* environment variables (see the README).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the gRPC service")

    settings_file = argparse.ArgumentParser(add_help=False)
    settings_file.add_argument(
        "--env-file",
        metavar="FILE",
        help=f"a file of NAME=VALUE lines: the {PREFIX}* settings the environment leaves unset",
    )
    mint = sub.add_parser(
        "mint", parents=[settings_file], help="write a session as connect-redis would and print its cookie"
    )
    mint.add_argument("--user", default='"42"', help="passport.user as JSON (default '\"42\"')")
    mint.add_argument("--anonymous", action="store_true", help="a session without a Passport user")
    mint.add_argument(
        "--max-age",
        type=float,
        default=86400.0,
        help="cookie maxAge in seconds; 0 for a browser-session cookie (default 86400)",
    )
    mint.add_argument("--sid", help="session id to use (default: a random 32-character id)")
    mint.add_argument("--count", type=int, default=1, help="how many sessions to write (default 1)")
    mint.add_argument("--no-ttl", action="store_true", help="store without a TTL, as connect-redis disableTTL")
    mint.add_argument("--json", action="store_true", help="print one JSON object per session")

    check = sub.add_parser(
        "check", parents=[settings_file], help="ask a running service about a cookie; exit status by verdict"
    )
    what = check.add_mutually_exclusive_group(required=True)
    what.add_argument("--cookie", help="a Cookie header, such as 'connect.sid=s%%3A...'")
    what.add_argument("--value", help="just the cookie's value")
    check.add_argument("--address", help="host:port of the service (default: from SESSIONVALIDATOR_LISTEN)")
    check.add_argument("--timeout", type=float, default=2.0, help="deadline in seconds (default 2)")

    key = sub.add_parser("mint-key", help="create a session-token signing key (PEM, mode 0600) and print its kid")
    key.add_argument("path", help="where to write the private key; an existing file is never overwritten")
    key.add_argument("--alg", choices=("EdDSA", "ES256", "RS256"), default="EdDSA", help="algorithm (default EdDSA)")

    hc = sub.add_parser("healthcheck", parents=[settings_file], help="grpc.health.v1 Check; exit 0 when SERVING")
    hc.add_argument("--address", help="host:port of the service (default: from SESSIONVALIDATOR_LISTEN)")
    hc.add_argument(
        "--service",
        default="sessionvalidator.v1.SessionValidator",
        help="service to check; '' for the process (default: readiness)",
    )
    hc.add_argument("--timeout", type=float, default=2.0, help="deadline in seconds (default 2)")
    for command in (check, hc):
        tls = command.add_argument_group("TLS (defaults from SESSIONVALIDATOR_CHECK_TLS_CA/CERT/KEY/SERVER_NAME)")
        tls.add_argument("--tls-ca", help="CA certificate that signed the service's certificate (turns TLS on)")
        tls.add_argument("--tls-cert", help="client certificate, for mutual TLS")
        tls.add_argument("--tls-key", help="client certificate's key, for mutual TLS")
        tls.add_argument("--tls-server-name", help="name to verify in the service's certificate")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run one command and return its exit status."""
    args = _parser().parse_args(argv)
    env = os.environ if env is None else env
    if args.command == "serve":
        return _serve(env)
    if args.command == "mint-key":
        return _mint_key(args)
    try:
        env = with_env_file(env, args.env_file)
    except ValueError as exc:
        print(f"sessionvalidator {args.command}: --env-file: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "mint":
        return _mint(env, args)
    if args.command == "check":
        return _check(env, args)
    return _healthcheck(env, args)


def main_entry() -> None:
    """Console-script entry point."""
    raise SystemExit(main())
