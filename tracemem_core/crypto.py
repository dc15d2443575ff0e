"""Encryption of stored secrets at rest (Fernet): data-source DSNs, Slack tokens, webhook secrets.

The key comes from ``TRACEMEM_ENCRYPTION_KEY``; the embedded default generates one once under
``VAR_DIR`` with 0600 permissions, like the Django secret key. Losing the key makes stored secrets
unreadable (re-enter them), never readable by someone else.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any

import rfc8785
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.utils.crypto import salted_hmac

from tracemem_core.errors import InvalidState
from tracemem_verify.chain import canonical_json

KEY_ENV = "TRACEMEM_ENCRYPTION_KEY"


@lru_cache(maxsize=1)
def _fernet() -> Fernet:
    raw = os.environ.get(KEY_ENV, "").strip()
    if not raw:
        path = settings.VAR_DIR / "encryption_key"
        if not path.exists():
            # O_EXCL: two processes starting together must not write two different keys.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(Fernet.generate_key().decode())
        raw = path.read_text().strip()
    try:
        return Fernet(raw.encode())
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            f"{KEY_ENV} must be a Fernet key (32 url-safe base64-encoded bytes); "
            "generate one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        ) from None


# Fixed salt: the digests must stay comparable across processes and restarts (same SECRET_KEY).
_DIGEST_SALT = "tracemem.keyed_digest.v1"


def keyed_digest(value: Any) -> str:
    """HMAC-SHA256 (keyed from ``SECRET_KEY``) of the RFC 8785 canonical JSON of ``value``.

    Identifies *unredacted* data in the trace (an evaluation's inputs, a read's records) without
    storing it: equal data gives equal digests, while the key stops anyone holding only the trace
    from confirming a guessed secret by hashing candidates.
    """
    try:
        material = canonical_json(value)
    except rfc8785.CanonicalizationError:
        # Business data read from a source can hold what RFC 8785 cannot express (integers beyond
        # 2^53, NaN); such data is only ever compared with itself, so a deterministic fallback
        # serialisation (marked so it can never equal a canonical one) is enough.
        material = (
            b"\x00"
            + json.dumps(
                value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
            ).encode()
        )
    return salted_hmac(_DIGEST_SALT, material, algorithm="sha256").hexdigest()


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str, *, what: str = "a stored secret") -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise InvalidState(
            f"{what} cannot be decrypted with the current {KEY_ENV}; an admin must re-enter it"
        ) from None


class EncryptedTextField(models.TextField):
    """A text column holding a secret: encrypted on the way into the database, decrypted on the way out.

    The ciphertext is randomised, so the column cannot be filtered on, which is fine for secrets.
    """

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        return decrypt(value, what=f"{self.model.__name__}.{self.name}")

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)
