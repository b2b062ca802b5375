"""Secrets that must not sign sessions: too short, too repetitive, or published.

express-session's README says to use a long, random secret; its own sample
(``keyboard cat``) and the test secrets of cookie-signature and cookie-parser
are in attackers' word lists (badsecrets ships express-session secret lists
and brute-forces cookies with them).
"""

from __future__ import annotations

__all__ = ["MIN_SECRET_BYTES", "weakness"]

MIN_SECRET_BYTES = 32
_MIN_DISTINCT_CHARACTERS = 8

# Published samples and the commonest passwords, compared case-insensitively
# with surrounding whitespace removed. Most are also caught by the length
# rule; they are listed so the error names the real problem.
_KNOWN = frozenset(
    {
        "keyboard cat",  # express-session README sample
        "nyan cat",  # cookie-parser tests
        "tobiiscool",  # cookie-signature tests
        "actual sekrit password",  # cookie-signature tests
        "secret",
        "secretkey",
        "secret key",
        "session secret",
        "sessionsecret",
        "your secret key",
        "your_secret_key",
        "yoursecretkey",
        "mysecret",
        "my secret",
        "my-secret",
        "supersecret",
        "super secret",
        "super-secret",
        "changeme",
        "change me",
        "changeit",
        "password",
        "passw0rd",
        "letmein",
        "qwerty",
        "123456",
        "12345678",
        "123456789",
        "admin",
        "shhhhh",
        "shhhh",
        "ssshhhhh",
        "express",
        "expresssecret",
        "express secret",
        "this is a secret",
        "thisisasecret",
        "your-secret-key-here",
        "replace-with-the-express-session-secret",
        "replace me",
        "replaceme",
    }
)


def weakness(secret: str) -> str | None:
    """Why ``secret`` is weak, or ``None`` when it is acceptable."""
    if secret.strip().lower() in _KNOWN:
        return "is a published sample or a common password"
    if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
        return f"is shorter than {MIN_SECRET_BYTES} bytes"
    if len(set(secret)) < _MIN_DISTINCT_CHARACTERS:
        return f"uses fewer than {_MIN_DISTINCT_CHARACTERS} distinct characters"
    return None
