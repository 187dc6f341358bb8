"""A home's Ed25519 private key in a file: the hex of its 32-byte seed and a newline, readable by
its owner only (mode 0600). `peergrid keygen` writes one and prints the public key, which the
operator registers (`peergrid admin add-participant --public-key`); the agent signs its orders
with it. The key never leaves the home.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peergrid.errors import InputError
from peergrid.ledger.keys import generate_private_key

#: Bytes of an Ed25519 private key's seed.
SEED_SIZE = 32


def write_key_file(path: str | Path) -> Ed25519PrivateKey:
    """Write a new key to `path` (created with mode 0600) and return it.

    Raises:
        InputError: the file exists (a key is never overwritten) or cannot be created.
    """
    path = Path(path)
    key = generate_private_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as e:
        raise InputError(
            "exists; a key is never overwritten (remove it first if you mean to)",
            source=str(path),
        ) from e
    except OSError as e:
        raise InputError(f"cannot create the key file ({e.strerror})", source=str(path)) from e
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key.private_bytes_raw().hex() + "\n")
    return key


def read_key_file(path: str | Path) -> Ed25519PrivateKey:
    """The key in `path`.

    Raises:
        InputError: no such file, or not the hex of a 32-byte Ed25519 seed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError as e:
        raise InputError("no such key file (peergrid keygen --out FILE)", source=str(path)) from e
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the key file ({e})", source=str(path)) from e
    try:
        raw = bytes.fromhex(text)
    except ValueError as e:
        raise InputError("not a key file: expected 64 hex digits", source=str(path)) from e
    if len(raw) != SEED_SIZE:
        raise InputError(
            f"not a key file: expected {SEED_SIZE} bytes of hex, got {len(raw)}", source=str(path)
        )
    return Ed25519PrivateKey.from_private_bytes(raw)
