"""The framework floor: a bare echo served exactly as ours is, with the same cookie check and no store.

Same server kind (``SESSIONVALIDATOR_SERVER``), server options, lenient
request parsing, reflection and event loop as the service; each call parses
the Cookie header, percent-decodes and verifies the signature, then answers
VALID with the session id (or the cookie's own verdict) without reading any
store. Its CPU per call is what the framework costs; ours minus this is our
own cost (``bench.py --echo``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

import grpc
import uvloop
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from sessionvalidator.v1 import session_validator_service_pb2 as pb
from sessionvalidator_service.domain import read_credential
from sessionvalidator_service.server import READINESS_SERVICE, ReflectionServicer
from sessionvalidator_service.serverkind import kind_named
from sessionvalidator_service.servicer import REASONS, VERDICTS, credential_input
from sessionvalidator_service.signature import Signer
from sessionvalidator_service.wire import read_batch_request, read_request


async def serve() -> None:
    signer = Signer(json.loads(os.environ["SESSIONVALIDATOR_SECRETS"]))
    name = os.environ.get("SESSIONVALIDATOR_COOKIE_NAME", "connect.sid")
    kind = kind_named(os.environ.get("SESSIONVALIDATOR_SERVER", "grpcio"))

    def answer(request: pb.ValidateSessionRequest) -> pb.ValidateSessionResponse:
        what, text = credential_input(request)
        credential = read_credential(signer, name, **{what: text})
        if credential.reason is not None:
            return pb.ValidateSessionResponse(
                verdict=VERDICTS[credential.reason.verdict], reason=REASONS[credential.reason], cookie_name=name
            )
        return pb.ValidateSessionResponse(
            verdict=pb.VERDICT_VALID,
            reason=pb.REASON_SESSION_ACTIVE,
            session_id=credential.session_id or "",
            cookie_name=name,
        )

    async def validate(request: pb.ValidateSessionRequest, _: Any) -> pb.ValidateSessionResponse:
        return answer(request)

    async def validate_many(request: pb.ValidateSessionsRequest, _: Any) -> pb.ValidateSessionsResponse:
        return pb.ValidateSessionsResponse(responses=[answer(item) for item in request.requests])

    server = kind.new_server(reuse_port=False)
    handlers = {
        "ValidateSession": grpc.unary_unary_rpc_method_handler(
            validate,
            request_deserializer=read_request,
            response_serializer=pb.ValidateSessionResponse.SerializeToString,
        ),
        "ValidateSessions": grpc.unary_unary_rpc_method_handler(
            validate_many,
            request_deserializer=read_batch_request,
            response_serializer=pb.ValidateSessionsResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(READINESS_SERVICE, handlers),))
    # Registered too, as the service registers its handlers (server._add_servicer): pygrpc-native serves
    # registered methods natively and generic ones through a slower path.
    server.add_registered_method_handlers(READINESS_SERVICE, handlers)  # type: ignore[attr-defined]
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        ReflectionServicer((READINESS_SERVICE, reflection.SERVICE_NAME)), server
    )
    port = server.add_insecure_port(os.environ.get("SESSIONVALIDATOR_LISTEN", "127.0.0.1:0"))
    await server.start()
    print(json.dumps({"event": "serving", "port": port, "server": kind.name}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


if __name__ == "__main__":
    uvloop.run(serve())
