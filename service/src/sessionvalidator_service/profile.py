"""The user profile: which fields of a Passport user record callers see.

Passport apps often serialize the whole user document into the session or a
user record (password hashes, salts, reset tokens, API keys). The profile
copies the well-known fields (id, username, display name, email, roles) and,
as ``attributes``, the rest of the record with every key that names a secret
removed at any depth, or only the keys an operator allows
(``SESSIONVALIDATOR_PROFILE_ATTRIBUTES``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sessionvalidator_service.domain import UserRecord
from sessionvalidator_service.jsemu import parse_json

__all__ = ["MAX_ATTRIBUTE_DEPTH", "SECRET_KEY_WORDS", "AttributePolicy", "Profile", "build_profile"]

# A record nested deeper than this keeps its profile fields but no attributes:
# every level of a protobuf Struct is two messages deep, and clients' parsers
# (limit 100) would refuse the whole response.
MAX_ATTRIBUTE_DEPTH = 16
# A key is dropped when, lower-cased with '_', '-' and '.' removed, it contains one of these.
SECRET_KEY_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "hash",
    "salt",
    "token",
    "secret",
    "apikey",
    "privatekey",
    "credential",
)
_SEPARATORS = re.compile(r"[_\-.\s]")


def names_secret(key: str) -> bool:
    """Whether a record key looks like it holds a secret (``passwordHash``, ``reset_token``, ``apiKey``…)."""
    folded = _SEPARATORS.sub("", key.lower())
    return any(word in folded for word in SECRET_KEY_WORDS)


@dataclass(frozen=True, slots=True)
class AttributePolicy:
    """Which record keys reach ``attributes``.

    ``allow`` ``None``: every key except those naming secrets; a set: only
    those top-level keys (secret-named keys below them are still dropped);
    empty: no attributes at all.
    """

    allow: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """The Passport user as callers see it."""

    id: str
    username: str = ""
    display_name: str = ""
    email: str = ""
    roles: tuple[str, ...] = ()
    attributes: Mapping[str, Any] | None = None


def _strings(value: Any) -> list[str]:
    """Roles from a list of strings, a JSON list in a hash field, or a comma list."""
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    if isinstance(value, str) and value:
        if value.startswith("["):
            try:
                # parse_json: lone surrogates scrubbed, deep nesting refused.
                return _strings(parse_json(value.encode("utf-8", "surrogatepass")))
            except ValueError:
                pass
        return [part.strip() for part in value.split(",") if part.strip()]
    return []


def _depth(value: Any) -> int:
    """How deeply ``value`` nests objects and arrays, counted without recursion (stops past the limit)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            if level > MAX_ATTRIBUTE_DEPTH:
                break
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children)
    return deepest


def _redact(value: Any) -> Any:
    """``value`` without secret-named keys at any depth (depth is bounded by the caller)."""
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items() if not (isinstance(k, str) and names_secret(k))}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def _attributes(record: Mapping[str, Any], policy: AttributePolicy) -> Mapping[str, Any] | None:
    if policy.allow is not None:
        if not policy.allow:
            return None
        chosen = {k: _redact(v) for k, v in record.items() if k in policy.allow}
    else:
        chosen = _redact(dict(record))
    return chosen


def _first_string(record: Mapping[str, Any], *keys: str) -> str:
    for key in keys:
        value = record.get(key)
        if isinstance(value, str):
            return value
    return ""


def build_profile(user: UserRecord, record: Mapping[str, Any] | None, policy: AttributePolicy) -> Profile:
    """Turn a Passport user (and its record, if any) into the profile callers see."""
    if record is None:
        return Profile(id=user.user_id)
    email = _first_string(record, "email")
    if not email:
        emails = record.get("emails")
        if isinstance(emails, list) and emails and isinstance(emails[0], dict):
            first = emails[0].get("value")
            email = first if isinstance(first, str) else ""
    roles = record.get("roles")
    return Profile(
        id=user.user_id,
        username=_first_string(record, "username"),
        display_name=_first_string(record, "displayName", "display_name", "name"),
        email=email,
        roles=tuple(_strings(roles) if roles is not None else _strings(record.get("role"))),
        attributes=None if _depth(record) > MAX_ATTRIBUTE_DEPTH else _attributes(record, policy),
    )
