"""Reading requests whose text fields are not valid UTF-8.

proto3 ``string`` fields must hold UTF-8, and the generated parser refuses a
request that breaks this before any handler runs (the caller gets UNKNOWN,
not a verdict). ``bytes`` is wire-compatible with ``string``, so a private
twin of the request messages with ``bytes`` fields reads such a request; its
text is then taken as latin-1, exactly as ``cookie_header`` bytes are (and as
Node reads header bytes). Requests that parse normally never touch the twin. A body that is not a
protobuf message at all is handed on as ``None``, and the servicer answers
INVALID_ARGUMENT instead of gRPC's generic deserialisation failure.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from sessionvalidator.v1 import session_validator_service_pb2 as pb

__all__ = ["read_batch_request", "read_request"]

_FIELD = descriptor_pb2.FieldDescriptorProto


def _twins() -> tuple[type[Message], type[Message]]:
    file = descriptor_pb2.FileDescriptorProto(
        name="sessionvalidator/lenient.proto", package="sessionvalidator.lenient", syntax="proto3"
    )
    request = file.message_type.add(name="Request")
    request.oneof_decl.add(name="credential")
    for field in pb.ValidateSessionRequest.DESCRIPTOR.oneofs_by_name["credential"].fields:
        request.field.add(
            name=field.name, number=field.number, type=_FIELD.TYPE_BYTES, label=_FIELD.LABEL_OPTIONAL, oneof_index=0
        )
    issue_token = pb.ValidateSessionRequest.DESCRIPTOR.fields_by_name["issue_token"]
    request.field.add(
        name=issue_token.name, number=issue_token.number, type=_FIELD.TYPE_BOOL, label=_FIELD.LABEL_OPTIONAL
    )
    batch = file.message_type.add(name="Batch")
    batch.field.add(
        name="requests",
        number=pb.ValidateSessionsRequest.DESCRIPTOR.fields_by_name["requests"].number,
        type=_FIELD.TYPE_MESSAGE,
        label=_FIELD.LABEL_REPEATED,
        type_name=".sessionvalidator.lenient.Request",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("sessionvalidator.lenient.Request")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("sessionvalidator.lenient.Batch")),
    )


_Request, _Batch = _twins()


def _from_twin(twin: Message) -> pb.ValidateSessionRequest:
    kind = twin.WhichOneof("credential")
    issue_token: bool = twin.issue_token  # type: ignore[attr-defined]
    if kind is None:
        return pb.ValidateSessionRequest(issue_token=issue_token)
    raw: bytes = getattr(twin, kind)
    if kind == "cookie_header":
        return pb.ValidateSessionRequest(cookie_header=raw, issue_token=issue_token)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if kind == "cookie_header_text":
        return pb.ValidateSessionRequest(cookie_header_text=text, issue_token=issue_token)
    return pb.ValidateSessionRequest(signed_value=text, issue_token=issue_token)


def read_request(data: bytes) -> pb.ValidateSessionRequest | None:
    """Parse a ValidateSessionRequest, reading non-UTF-8 text as latin-1; ``None`` if it is not one."""
    try:
        return pb.ValidateSessionRequest.FromString(data)
    except DecodeError:
        pass
    try:
        return _from_twin(_Request.FromString(data))
    except DecodeError:
        return None


def read_batch_request(data: bytes) -> pb.ValidateSessionsRequest | None:
    """Parse a ValidateSessionsRequest, reading non-UTF-8 text as latin-1; ``None`` if it is not one."""
    try:
        return pb.ValidateSessionsRequest.FromString(data)
    except DecodeError:
        pass
    try:
        twin = _Batch.FromString(data)
    except DecodeError:
        return None
    return pb.ValidateSessionsRequest(requests=[_from_twin(item) for item in twin.requests])  # type: ignore[attr-defined]
