"""The operator's registry of participants: add one (its key and a fresh API token), list them.

A token is 32 random bytes (URL-safe base64), shown once when the participant is added; the
database keeps only its SHA-256 (`schema.participants.token_sha256`), so a leaked database does
not leak credentials.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from peergrid.errors import InputError
from peergrid.ledger.keys import load_public_key
from peergrid.server.schema import ROLES, participants

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def token_digest(token: str) -> str:
    """The stored form of an API token: SHA-256, hex."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Registered:
    """A participant just added: its id, name and the token it alone will hold."""

    id: int
    name: str
    role: str
    token: str


def parse_public_key(text: str) -> bytes:
    """32 raw bytes from the hex of an Ed25519 public key.

    Raises:
        InputError: not 64 hex digits, or not a valid Ed25519 point.
    """
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError as e:
        raise InputError("not hex", source="--public-key") from e
    try:
        load_public_key(raw)
    except ValueError as e:
        raise InputError(f"not an Ed25519 public key ({e})", source="--public-key") from e
    return raw


def add_participant(
    engine: Engine, name: str, role: str = "participant", public_key_hex: str | None = None
) -> Registered:
    """Register an account and return its token (shown once).

    Raises:
        InputError: a bad name, role or key, a participant without a key, or a name taken.
    """
    if not _NAME.match(name):
        raise InputError(
            "1–64 letters, digits, '_', '.', '-', starting with a letter or digit", source="--name"
        )
    if role not in ROLES:
        raise InputError(f"one of {', '.join(ROLES)}, got {role!r}", source="--role")
    key = None if public_key_hex is None else parse_public_key(public_key_hex)
    if role == "participant" and key is None:
        raise InputError(
            "a participant signs its orders: its public key is needed", source="--public-key"
        )
    token = secrets.token_urlsafe(32)
    row = {
        "name": name,
        "role": role,
        "public_key": key,
        "token_sha256": token_digest(token),
        "created_at": dt.datetime.now(dt.UTC),
    }
    try:
        with engine.begin() as conn:
            new_id = conn.execute(insert(participants).values(**row)).inserted_primary_key
    except IntegrityError as e:
        raise InputError(f"{name!r} is already registered", source="--name") from e
    assert new_id is not None
    return Registered(int(new_id[0]), name, role, token)


def list_participants(engine: Engine) -> list[dict[str, object]]:
    """Every account: id, name, role, public key (hex) and when it was added; no tokens."""
    cols = participants.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(cols.id, cols.name, cols.role, cols.public_key, cols.created_at).order_by(
                cols.id
            )
        ).all()
    return [
        {
            "id": r.id,
            "name": r.name,
            "role": r.role,
            "public_key": "" if r.public_key is None else bytes(r.public_key).hex(),
            "created_at": r.created_at.isoformat() if r.created_at is not None else "",
        }
        for r in rows
    ]


def authenticate(engine: Engine, token: str) -> dict[str, object] | None:
    """The account a token belongs to (id, name, role), or None."""
    cols = participants.c
    with engine.connect() as conn:
        r = conn.execute(
            select(cols.id, cols.name, cols.role).where(cols.token_sha256 == token_digest(token))
        ).first()
    return None if r is None else {"id": r.id, "name": r.name, "role": r.role}
