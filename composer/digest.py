"""sha256 without hashlib: hashlib loads OpenSSL (~3-7 ms of every start);
the interpreter's builtin module is enough for our small digests."""

from __future__ import annotations

try:
    from _sha2 import sha256  # Python >= 3.12
except ImportError:
    try:
        from _sha256 import sha256  # Python 3.11
    except ImportError:  # pragma: no cover - an interpreter built without it
        from hashlib import sha256


def sha256_hex(data: bytes) -> str:
    return sha256(data).hexdigest()
