"""Error fingerprints: which dead jobs failed the same way (Sentry-style grouping).

"Order 1234 not found" and "Order 5678 not found" are one failure a hundred times, not a
hundred failures: before grouping, the variable parts of an error message (UUIDs, e-mail
addresses, timestamps, hex values, quoted values, numbers) are replaced by placeholders.
A fingerprint is the SHA-1 of the actor, the exception class and that normalised
message, so the same message from two actors, or from two exception classes, stays apart.

Pure functions, no Django: the batch writer calls `fingerprint` for every failed attempt
it writes, and migrations may import it.
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

# The first line is the message (`jobs.middleware.describe` writes "Class: message");
# more is kept for the example, not for grouping.
MESSAGE_LIMIT = 1000

# Order matters: the specific shapes first, so that an id inside a quoted value or an
# e-mail address is not half-replaced by the number rule.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"), "<date>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    # A run of hex digits with at least one digit and one letter, 8 long or more (hashes, tokens).
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I), "<hex>"),
    (re.compile(r"'(?:[^'\\\n]|\\.)*'"), "'<str>'"),
    (re.compile(r'"(?:[^"\\\n]|\\.)*"'), '"<str>"'),
    # Numbers, also glued to letters ("order-1234", "v2"): ids in slugs vary as much.
    (re.compile(r"(?<![\w<])[-+]?\d+(?:[.,]\d+)*|(?<=[A-Za-z_-])\d+"), "<num>"),
)
# "module.ClassName: message", as `jobs.middleware.describe` writes an exception.
_CLASS = re.compile(r"^([A-Za-z_][\w.]*):(?:\s+|$)(.*)$", re.S)


class Signature(NamedTuple):
    """What a group of errors has in common, as shown on the dead-letters page."""

    actor_name: str
    exception: str  # "" when the error names no exception class
    message: str  # normalised
    fingerprint: str


def split_error(error: str) -> tuple[str, str]:
    """("SMTPServerDisconnected", "relay gone") from "SMTPServerDisconnected: relay gone"."""
    text = error.strip()
    match = _CLASS.match(text)
    if match is None:
        return "", text
    return match.group(1), match.group(2)


def normalise(message: str) -> str:
    """The message with its variable parts replaced by placeholders, whitespace folded."""
    text = message.strip().splitlines()[0] if message.strip() else ""
    text = text[:MESSAGE_LIMIT]
    for pattern, placeholder in _RULES:
        text = pattern.sub(placeholder, text)
    return " ".join(text.split())


def signature(actor_name: str, error: str) -> Signature:
    exception, message = split_error(error)
    normalised = normalise(message)
    digest = hashlib.sha1(f"{actor_name}\0{exception}\0{normalised}".encode(), usedforsecurity=False)
    return Signature(actor_name, exception, normalised, digest.hexdigest())


def fingerprint(actor_name: str, error: str) -> str:
    """40 hex characters naming the group of this error of this actor ("" without an error)."""
    return signature(actor_name, error).fingerprint if error else ""
