"""Proofs a participant checks without the database (`peergrid ledger prove / check-proof`).

An inclusion proof (RFC 6962 §2.1.1) shows that entry N, with exactly these bytes, is in the
tree the operator signed: the entry's bytes, its leaf hash, the audit path, the root, the signed
tree head's bytes and signature, and the operator's public key. A consistency proof
(§2.1.2) shows that a later signed tree head extends an earlier one — the log was only ever
appended to. Checking either needs only this module's pure functions and the operator's key
(which a participant should pin: the key inside a proof is only what the proof claims).

JSON, version 1 (the field names the issue and docs/ledger.md fix):
``{"entry", "payload_b64", "leaf_hash", "leaf_index", "tree_size", "audit_path", "root_hash",
"tree_head_b64", "tree_head_signature_b64", "operator_public_key"}``; a consistency proof has
``{"type": "consistency", "old_size", "new_size", "old_root", "new_root", "proof",
"old_tree_head_b64", "old_tree_head_signature_b64", "new_tree_head_b64",
"new_tree_head_signature_b64", "operator_public_key"}``.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

from peergrid.ledger import encoding as enc
from peergrid.ledger.keys import load_public_key, verify
from peergrid.ledger.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from peergrid.ledger.store import LedgerStore, iter_entries, open_store


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _leaves_and_entry(st: LedgerStore, entry: int | None) -> tuple[list[bytes], bytes | None]:
    leaves: list[bytes] = []
    payload = None
    for i, data in iter_entries(st):
        leaves.append(leaf_hash(data))
        if i == entry:
            payload = data
    return leaves, payload


def _head_for(
    heads: list[tuple[int, int, bytes, bytes]], size: int | None
) -> tuple[int, int, bytes, bytes]:
    if not heads:
        raise ValueError("the ledger has no signed tree head")
    if size is None:
        return heads[-1]
    for h in heads:
        if h[0] == size:
            return h
    raise ValueError(f"no signed tree head of size {size}")


def prove(
    path: str | Path | LedgerStore, entry: int, tree_size: int | None = None
) -> dict[str, Any]:
    """An inclusion proof of `entry` against the signed head of `tree_size` (default: the
    latest).

    Raises:
        ValueError: no such entry or tree head, or the entry is not in that tree.
    """
    st = open_store(path)
    try:
        meta = st.meta()
        head = _head_for(st.heads(), tree_size)
        leaves, payload = _leaves_and_entry(st, entry)
    finally:
        if st is not path:
            st.close()
    size, _, head_bytes, signature = head
    if payload is None or not 0 <= entry < size:
        raise ValueError(f"entry {entry} is not in the tree of size {size}")
    _, _, _, root = enc.read_tree_head(bytes(head_bytes))
    return {
        "type": "inclusion",
        "version": 1,
        "entry": entry,
        "payload_b64": _b64(payload),
        "leaf_hash": leaves[entry].hex(),
        "leaf_index": entry,
        "tree_size": size,
        "audit_path": [h.hex() for h in inclusion_proof(leaves, entry, size)],
        "root_hash": root.hex(),
        "tree_head_b64": _b64(bytes(head_bytes)),
        "tree_head_signature_b64": _b64(bytes(signature)),
        "operator_public_key": meta["operator_public_key"].hex(),
    }


def prove_consistency(
    path: str | Path | LedgerStore, old_size: int, new_size: int | None = None
) -> dict[str, Any]:
    """A consistency proof between the signed heads of `old_size` and `new_size` (default: the
    latest)."""
    st = open_store(path)
    try:
        meta = st.meta()
        heads = st.heads()
        old = _head_for(heads, old_size)
        new = _head_for(heads, new_size)
        leaves, _ = _leaves_and_entry(st, None)
    finally:
        if st is not path:
            st.close()
    if old[0] > new[0]:
        raise ValueError(f"the old tree ({old[0]}) is larger than the new one ({new[0]})")
    old_root = enc.read_tree_head(bytes(old[2]))[3]
    new_root = enc.read_tree_head(bytes(new[2]))[3]
    return {
        "type": "consistency",
        "version": 1,
        "old_size": old[0],
        "new_size": new[0],
        "old_root": old_root.hex(),
        "new_root": new_root.hex(),
        "proof": [h.hex() for h in consistency_proof(leaves, old[0], new[0])],
        "old_tree_head_b64": _b64(bytes(old[2])),
        "old_tree_head_signature_b64": _b64(bytes(old[3])),
        "new_tree_head_b64": _b64(bytes(new[2])),
        "new_tree_head_signature_b64": _b64(bytes(new[3])),
        "operator_public_key": meta["operator_public_key"].hex(),
    }


class ProofInvalid(ValueError):
    """A proof that does not check."""


def _field(doc: dict[str, Any], name: str) -> Any:
    if name not in doc:
        raise ProofInvalid(f"missing field {name!r}")
    return doc[name]


def _hex(doc: dict[str, Any], name: str, size: int | None = 32) -> bytes:
    try:
        out = bytes.fromhex(str(_field(doc, name)))
    except ValueError as e:
        raise ProofInvalid(f"{name}: not hex") from e
    if size is not None and len(out) != size:
        raise ProofInvalid(f"{name}: {len(out)} bytes, expected {size}")
    return out


def _unb64(doc: dict[str, Any], name: str) -> bytes:
    try:
        return base64.b64decode(str(_field(doc, name)), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ProofInvalid(f"{name}: not base64") from e


def _int(doc: dict[str, Any], name: str) -> int:
    v = _field(doc, name)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ProofInvalid(f"{name}: not a non-negative integer")
    return v


def _signed_head(
    doc: dict[str, Any], head_field: str, sig_field: str, key: Any, size: int, root: bytes
) -> None:
    head = _unb64(doc, head_field)
    try:
        _, h_size, _, h_root = enc.read_tree_head(head)
    except enc.FormatError as e:
        raise ProofInvalid(f"{head_field}: {e}") from e
    if h_size != size or h_root != root:
        raise ProofInvalid(f"{head_field}: the signed head is not of this size and root")
    if not verify(key, _unb64(doc, sig_field), head):
        raise ProofInvalid(f"{sig_field}: not the operator's signature of the tree head")


def check_proof(doc: dict[str, Any], operator_public_key: bytes | None = None) -> str:
    """Check a proof document; returns a one-line description of what holds.

    `operator_public_key` pins the key the proof must be signed with (else the proof's own).

    Raises:
        ProofInvalid: what does not hold.
    """
    if not isinstance(doc, dict):
        raise ProofInvalid("a proof is a JSON object")
    key_raw = _hex(doc, "operator_public_key")
    if operator_public_key is not None and key_raw != operator_public_key:
        raise ProofInvalid("operator_public_key: not the pinned operator key")
    try:
        key = load_public_key(key_raw)
    except ValueError as e:
        raise ProofInvalid(f"operator_public_key: {e}") from e
    if doc.get("type", "inclusion") == "consistency":
        old_size, new_size = _int(doc, "old_size"), _int(doc, "new_size")
        old_root, new_root = _hex(doc, "old_root"), _hex(doc, "new_root")
        proof = [bytes.fromhex(str(h)) for h in _field(doc, "proof")]
        _signed_head(
            doc, "old_tree_head_b64", "old_tree_head_signature_b64", key, old_size, old_root
        )
        _signed_head(
            doc, "new_tree_head_b64", "new_tree_head_signature_b64", key, new_size, new_root
        )
        if not verify_consistency(old_size, new_size, old_root, new_root, proof):
            raise ProofInvalid("the consistency proof does not link the two roots")
        return f"consistent: the tree of {new_size} entries extends the tree of {old_size}"
    payload = _unb64(doc, "payload_b64")
    leaf = _hex(doc, "leaf_hash")
    if leaf_hash(payload) != leaf:
        raise ProofInvalid("leaf_hash is not SHA-256(0x00 ‖ payload)")
    index, size = _int(doc, "leaf_index"), _int(doc, "tree_size")
    if _int(doc, "entry") != index:
        raise ProofInvalid("entry and leaf_index differ")
    root = _hex(doc, "root_hash")
    path = _field(doc, "audit_path")
    if not isinstance(path, list):
        raise ProofInvalid("audit_path: not a list")
    try:
        audit = [bytes.fromhex(str(h)) for h in path]
    except ValueError as e:
        raise ProofInvalid("audit_path: not hex") from e
    if not verify_inclusion(leaf, index, size, audit, root):
        raise ProofInvalid("the audit path does not lead from the leaf to the root")
    _signed_head(doc, "tree_head_b64", "tree_head_signature_b64", key, size, root)
    try:
        kind, slot, _ = enc.read_header(payload)
        what = f"{kind.name} entry of slot {slot}"
    except enc.FormatError:
        what = "entry"
    return f"included: {what} is leaf {index} of the signed tree of {size} entries"
