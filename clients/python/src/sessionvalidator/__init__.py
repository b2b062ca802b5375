"""Python client for SessionValidator: is this express-session ``connect.sid`` cookie valid, and whose is it.

* :class:`Client` / :class:`AsyncClient`: call the service (production
  defaults: 150 ms deadline, keepalive, round-robin, retry on UNAVAILABLE).
* :class:`SessionValidatorMiddleware`: ASGI middleware for Starlette, FastAPI
  or any ASGI app.
* :func:`validate_environ`: for WSGI apps.

Every cookie gets a :class:`Validation` (check ``.valid``); an exception
(:class:`SessionValidatorError` and its subclasses) only ever means the
validator could not decide. The generated protobuf and gRPC modules live in
:mod:`sessionvalidator.v1`.
"""

from sessionvalidator._asgi import SessionValidatorMiddleware
from sessionvalidator._channel import DEFAULT_TIMEOUT
from sessionvalidator._client import AsyncClient, Client
from sessionvalidator._errors import (
    RateLimitedError,
    SessionValidatorError,
    StoreUnavailableError,
    ValidatorTimeoutError,
)
from sessionvalidator._models import BatchItem, User, Validation
from sessionvalidator._wsgi import validate_environ

__all__ = [
    "DEFAULT_TIMEOUT",
    "AsyncClient",
    "BatchItem",
    "Client",
    "RateLimitedError",
    "SessionValidatorError",
    "SessionValidatorMiddleware",
    "StoreUnavailableError",
    "User",
    "Validation",
    "ValidatorTimeoutError",
    "validate_environ",
]
