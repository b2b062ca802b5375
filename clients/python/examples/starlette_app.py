"""A Starlette app whose pages need an Express login: SessionValidatorMiddleware in front of every route.

Run it next to a SessionValidator (the address comes from the environment):

    pip install ./clients/python starlette uvicorn   # from the root of a clone of this repository
    SESSIONVALIDATOR_ADDR=localhost:50051 python examples/starlette_app.py   # PORT=8001 to serve elsewhere
    curl -b 'connect.sid=s%3A...' http://127.0.0.1:8000/me

FastAPI is Starlette underneath: ``app.add_middleware(SessionValidatorMiddleware, ...)``
and ``request.state.session_user`` work the same there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from sessionvalidator import AsyncClient, SessionValidatorMiddleware, User, Validation

# The middleware's warnings (a validator that cannot decide: 503) with their time and level.
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

# Built at import time; the channel opens on the first request, in uvicorn's event loop.
validator = AsyncClient(os.environ["SESSIONVALIDATOR_ADDR"])


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:  # noqa: ARG001 - Starlette's signature
    """Close the validator's channel when the server stops."""
    yield
    await validator.aclose()


async def me(request: Request) -> JSONResponse:
    """Who is calling: only reached with a valid session of a logged-in user."""
    user: User = request.state.session_user
    validation: Validation = request.state.session_validation
    return JSONResponse(
        {
            "id": user.id,
            "username": user.username,
            "display_name": user.display_name,
            "email": user.email,
            "roles": list(user.roles),
            "session_expires": validation.expire_time.isoformat() if validation.expire_time else None,
        }
    )


async def healthz(request: Request) -> PlainTextResponse:  # noqa: ARG001 - Starlette's signature
    """Open to all: excluded from validation."""
    return PlainTextResponse("ok")


app = Starlette(
    routes=[Route("/me", me), Route("/healthz", healthz)],
    middleware=[
        Middleware(
            SessionValidatorMiddleware,
            client=validator,
            # Only sessions of logged-in Passport users get through (the default).
            exclude_paths=("/healthz",),
        )
    ],
    lifespan=lifespan,
)

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")))
