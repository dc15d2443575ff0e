"""Secret formats: agent keys ``tmem_…`` and personal access tokens ``tmpat_…``.

A secret is the prefix plus 40 base62 characters; the last 6 are a CRC32 checksum of the
first 34, so secret scanners (and our own 401 "malformed" answer) can tell a real-looking key
from a typo without a database lookup. Only the SHA-256 is stored, with a short public prefix
used to find the row; the comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import zlib

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
BODY_LEN = 34
CHECKSUM_LEN = 6
LOOKUP_CHARS = 8

AGENT_KEY_PREFIX = "tmem_"
PERSONAL_TOKEN_PREFIX = "tmpat_"


def _base62(number: int, width: int) -> str:
    chars = []
    while number:
        number, rem = divmod(number, 62)
        chars.append(BASE62[rem])
    return "".join(reversed(chars)).rjust(width, "0")


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LEN)


def generate(prefix: str) -> str:
    body = "".join(secrets.choice(BASE62) for _ in range(BODY_LEN))
    return f"{prefix}{body}{_checksum(body)}"


# BODY_LEN + CHECKSUM_LEN characters of BASE62 (a regular expression: checked on every request).
_REST = re.compile(rf"[0-9A-Za-z]{{{BODY_LEN + CHECKSUM_LEN}}}\Z")


def is_well_formed(secret: str, prefix: str) -> bool:
    if not secret.startswith(prefix):
        return False
    rest = secret[len(prefix) :]
    if _REST.match(rest) is None:
        return False
    return hmac.compare_digest(_checksum(rest[:BODY_LEN]), rest[BODY_LEN:])


def lookup_prefix(secret: str, prefix: str) -> str:
    """The public part stored in clear and shown in lists, e.g. ``tmem_Ab12Cd34``."""
    return secret[: len(prefix) + LOOKUP_CHARS]


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
