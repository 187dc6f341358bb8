"""Ed25519 keys of the ledger: the operator's (signs tree heads) and each participant's (signs
its orders), with the `cryptography` package.

In a simulation every key is derived from the scenario seed, so a run is reproducible and its
ledger verifiable by anyone holding the scenario: **simulation-only** — anybody who knows the
seed can sign for every participant. A live community generates keys on the participants' own
devices (`generate_private_key`) and registers only the public key.

Derivation: the 32-byte private key of a role is SHA-256(b"peergrid-sim-key/v1" ‖ seed as 8
bytes big-endian ‖ role as UTF-8), role "operator" or "participant/<index>".
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

#: Bytes of an Ed25519 public key and of a signature.
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64

_SIM_TAG = b"peergrid-sim-key/v1"


def simulation_key(seed: int, role: str) -> Ed25519PrivateKey:
    """The simulation-only private key of `role` derived from the scenario seed (module
    docstring)."""
    material = hashlib.sha256(
        _SIM_TAG + (seed & (2**64 - 1)).to_bytes(8, "big") + role.encode("utf-8")
    ).digest()
    return Ed25519PrivateKey.from_private_bytes(material)


def operator_key(seed: int) -> Ed25519PrivateKey:
    """The market operator's simulation key."""
    return simulation_key(seed, "operator")


def participant_keys(seed: int, n_participants: int) -> list[Ed25519PrivateKey]:
    """Every participant's simulation key, in participant order."""
    return [simulation_key(seed, f"participant/{i}") for i in range(n_participants)]


def generate_private_key() -> Ed25519PrivateKey:
    """A fresh random key (a live participant's device)."""
    return Ed25519PrivateKey.generate()


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_public_key(raw: bytes) -> Ed25519PublicKey:
    """A public key from its 32 raw bytes.

    Raises:
        ValueError: not 32 bytes or not a valid point.
    """
    if len(raw) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key has {PUBLIC_KEY_SIZE} bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """True when `signature` is `public_key`'s signature of `message`."""
    if len(signature) != SIGNATURE_SIZE:
        return False
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
