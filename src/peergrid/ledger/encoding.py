"""The ledger's canonical encoding, format version 1 (docs/ledger.md).

Every entry is bytes fixed by this module, never re-serialised JSON: integers big-endian of a
fixed width, reals IEEE 754 binary64 big-endian (exactly the value the engine used), strings
UTF-8 with a u16 length, arrays columnar (one column after the other) behind a u32 count. An
entry starts with the header ``b"PG" ‖ u8 version ‖ u8 kind ‖ i64 slot``; the Merkle leaf is
SHA-256(0x00 ‖ entry). Decoding is strict: unknown versions or kinds, short data and trailing
bytes are `FormatError`s, so two different byte strings never decode to the same entry.

Signed messages carry a domain tag and the ledger's id, so a signature cannot be replayed in
another ledger or taken for another kind of message:

- order message: ``b"peergrid-orders/v1" ‖ ledger_id[16] ‖ u32 participant ‖ i64 gate_slot ‖
  u32 n ‖ i64 slot[n] ‖ u8 side[n] ‖ f64 quantity_kwh[n] ‖ f64 limit_price[n]`` — all of one
  participant's orders of one gate closure, signed once;
- tree head: ``b"peergrid-sth/v1" ‖ ledger_id[16] ‖ u64 tree_size ‖ i64 slot ‖ root[32]``,
  signed by the operator.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

MAGIC = b"PG"
FORMAT_VERSION = 1
HEADER = struct.Struct(">2sBBq")
ORDER_TAG = b"peergrid-orders/v1"
TREE_HEAD_TAG = b"peergrid-sth/v1"
LEDGER_ID_SIZE = 16
ROOT_SIZE = 32

_U8, _U16, _U32, _I32, _I64, _F64 = ">u1", ">u2", ">u4", ">i4", ">i8", ">f8"


class FormatError(ValueError):
    """Bytes that are not a valid version-1 entry or message."""


class Kind(IntEnum):
    """What an entry records."""

    GENESIS = 0  # the ledger's parameters and every participant's public key
    ORDERS = 1  # one participant's signed orders of one gate closure
    REJECTED = 2  # a submission whose signature did not verify, kept as evidence
    CLEARING = 3  # one slot's book, fills, trades and commitments
    METER = 4  # one slot's meter readings
    SETTLEMENT = 5  # one slot's deviations and postings
    CHARGES = 6  # network and loss charges of a period, and their postings
    PERIOD = 7  # an end-of-period settlement (bill sharing, allocation rules) and its postings


class Account(IntEnum):
    """Posting accounts other than participants (a participant's account is its index ≥ 0)."""

    RETAILER = -1
    OPERATOR = -2
    NETWORK_OPERATOR = -3
    POOL = -4
    ROUNDING = -5


class Memo(IntEnum):
    """What a posting is for."""

    ENERGY = 1  # the slot's energy: fills, the schedule with the retailer, the deviation
    DAILY = 2  # the retailer's fixed charge per participant and day
    NETWORK = 3  # network usage charges
    LOSS = 4  # losses allocated to trades
    PERIOD = 5  # an end-of-period settlement's adjustment
    ROUNDING = 6  # the rounding residue of an entry


ACCOUNT_NAMES = {a.value: a.name.lower().replace("_", " ") for a in Account}


def account_name(account: int, names: list[str] | None = None) -> str:
    """A readable account name."""
    if account >= 0:
        return names[account] if names is not None and account < len(names) else f"#{account}"
    return ACCOUNT_NAMES.get(account, f"account {account}")


# --- writing -------------------------------------------------------------------------------


def _str(s: str) -> bytes:
    raw = s.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return len(raw).to_bytes(2, "big") + raw


def _col(a: NDArray[np.generic], dtype: str) -> bytes:
    return np.ascontiguousarray(a, dtype=dtype).tobytes()


def _f64(x: float) -> bytes:
    return struct.pack(">d", x)


def _u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def entry(kind: Kind, slot: int, body: bytes) -> bytes:
    """An entry: the header and its body."""
    return HEADER.pack(MAGIC, FORMAT_VERSION, int(kind), slot) + body


@dataclass(frozen=True, eq=False)
class Postings:
    """Double-entry postings, columnar: amount > 0 means the account receives money.

    Attributes:
        account: participant index (≥ 0) or an `Account` (< 0), (n,).
        memo: `Memo` codes, (n,).
        amount_minor: money in integer minor units of the currency (cents), (n,).
        energy_wh: energy in integer Wh (export positive for participants), (n,).
    """

    account: IntArray
    memo: NDArray[np.uint8]
    amount_minor: IntArray
    energy_wh: IntArray

    @property
    def n(self) -> int:
        return int(self.account.shape[0])

    def encode(self) -> bytes:
        return (
            _u32(self.n)
            + _col(self.account, _I32)
            + _col(self.memo, _U8)
            + _col(self.amount_minor, _I64)
            + _col(self.energy_wh, _I64)
        )


@dataclass(frozen=True)
class Genesis:
    """The GENESIS entry: the ledger's parameters and every participant's public key.

    Attributes:
        ledger_id: 16 bytes naming the ledger (signed messages carry it).
        operator_public_key: the operator's Ed25519 key, 32 raw bytes (signs tree heads).
        currency, minor_exponent: the currency and its ISO 4217 minor-unit exponent.
        start_unix_s, slot_seconds, n_slots: the slot grid (UTC).
        scenario: the scenario's name.
        names, public_keys: every participant's name and Ed25519 key (32 raw bytes), in
            participant order.
    """

    ledger_id: bytes
    operator_public_key: bytes
    currency: str
    minor_exponent: int
    start_unix_s: int
    slot_seconds: int
    n_slots: int
    scenario: str
    names: tuple[str, ...]
    public_keys: tuple[bytes, ...]

    def encode(self) -> bytes:
        """The GENESIS entry's body."""
        if len(self.ledger_id) != LEDGER_ID_SIZE or len(self.operator_public_key) != 32:
            raise ValueError("ledger id must have 16 bytes and the operator key 32")
        out = [
            self.ledger_id,
            self.operator_public_key,
            _str(self.currency),
            bytes([self.minor_exponent]),
            struct.pack(">qII", self.start_unix_s, self.slot_seconds, self.n_slots),
            _str(self.scenario),
            _u32(len(self.names)),
        ]
        for name, key in zip(self.names, self.public_keys, strict=True):
            if len(key) != 32:
                raise ValueError("a participant's public key must have 32 bytes")
            out += [_str(name), key]
        return b"".join(out)


def order_message(
    ledger_id: bytes,
    participant: int,
    gate_slot: int,
    slot: IntArray,
    side: NDArray[np.int8],
    quantity_kwh: FloatArray,
    limit_price: FloatArray,
) -> bytes:
    """One participant's orders of one gate closure, the bytes it signs (module docstring)."""
    return (
        ORDER_TAG
        + ledger_id
        + struct.pack(">Iq", participant, gate_slot)
        + _u32(int(slot.shape[0]))
        + _col(slot, _I64)
        + _col(side, _U8)
        + _col(quantity_kwh, _F64)
        + _col(limit_price, _F64)
    )


def order_messages(
    ledger_id: bytes,
    gate_slot: int,
    participant: IntArray,
    slot: IntArray,
    side: NDArray[np.int8],
    quantity_kwh: FloatArray,
    limit_price: FloatArray,
) -> tuple[IntArray, list[bytes]]:
    """Every participant's order message of one gate closure.

    The orders (n,) may come in any order; each participant's orders keep their relative order.
    Returns the participants with orders, ascending, and their messages (equal to
    `order_message` for each). When every participant has the same number of orders the
    messages are built as one structured array (a gate of a year-long run builds 100 messages
    in microseconds)."""
    order = np.argsort(participant, kind="stable")
    who = participant[order]
    owners, first, counts = np.unique(who, return_index=True, return_counts=True)
    if owners.size == 0:
        return owners.astype(np.int64), []
    m = int(counts[0])
    if np.all(counts == m):
        dtype = np.dtype(
            [
                ("tag", f"S{len(ORDER_TAG)}"),
                ("id", f"S{LEDGER_ID_SIZE}"),
                ("participant", _U32),
                ("gate", _I64),
                ("n", _U32),
                ("slot", _I64, (m,)),
                ("side", _U8, (m,)),
                ("q", _F64, (m,)),
                ("price", _F64, (m,)),
            ]
        )
        rec = np.zeros(owners.size, dtype=dtype)
        rec["tag"] = ORDER_TAG
        rec["id"] = ledger_id
        rec["participant"] = owners
        rec["gate"] = gate_slot
        rec["n"] = m
        shape = (owners.size, m)
        rec["slot"] = slot[order].reshape(shape)
        rec["side"] = side[order].reshape(shape)
        rec["q"] = quantity_kwh[order].reshape(shape)
        rec["price"] = limit_price[order].reshape(shape)
        raw = rec.tobytes()
        size = dtype.itemsize
        return owners.astype(np.int64), [raw[i : i + size] for i in range(0, len(raw), size)]
    msgs = []
    for p, a, k in zip(owners.tolist(), first.tolist(), counts.tolist(), strict=True):
        sel = order[a : a + k]
        msgs.append(
            order_message(
                ledger_id, p, gate_slot, slot[sel], side[sel], quantity_kwh[sel], limit_price[sel]
            )
        )
    return owners.astype(np.int64), msgs


def orders_body(message: bytes, signature: bytes) -> bytes:
    """The ORDERS entry's body: the signed message and its signature."""
    return _u32(len(message)) + message + signature


def rejected_body(participant: int, reason: str, message: bytes, signature: bytes) -> bytes:
    """The REJECTED entry's body: who submitted what, and why it was refused."""
    return (
        _u32(participant)
        + _str(reason)
        + _u32(len(message))
        + message
        + _u32(len(signature))
        + signature
    )


@dataclass(frozen=True, eq=False)
class ClearingRecord:
    """One slot's clearing as the ledger stores it.

    The book is not repeated: it is the slot's orders in the participants' signed ORDERS
    entries, participant by participant (ascending), each participant's orders in the order it
    signed them; `filled_kwh` and `price` follow that order.

    Attributes:
        mechanism: the market mechanism's name.
        clearing_price, buy_price, sell_price: the mechanism's published prices
            [currency/kWh] (NaN where it has none).
        operator_surplus: Σ buyer payments − Σ seller receipts [currency].
        filled_kwh, price: each order's fill [kWh] and its price [currency/kWh], (n,).
        trade_buy, trade_sell, trade_kwh, trade_price: bilateral trades (positions into the
            book), (k,).
        committed_kwh: each participant's commitment (export positive) [kWh], (P,).
    """

    mechanism: str
    clearing_price: float
    buy_price: float
    sell_price: float
    operator_surplus: float
    filled_kwh: FloatArray
    price: FloatArray
    trade_buy: IntArray
    trade_sell: IntArray
    trade_kwh: FloatArray
    trade_price: FloatArray
    committed_kwh: FloatArray

    def encode(self) -> bytes:
        n, k, p = self.filled_kwh.shape[0], self.trade_buy.shape[0], self.committed_kwh.shape[0]
        return b"".join(
            [
                _str(self.mechanism),
                struct.pack(
                    ">dddd",
                    self.clearing_price,
                    self.buy_price,
                    self.sell_price,
                    self.operator_surplus,
                ),
                _u32(n),
                _col(self.filled_kwh, _F64),
                _col(self.price, _F64),
                _u32(k),
                _col(self.trade_buy, _U32),
                _col(self.trade_sell, _U32),
                _col(self.trade_kwh, _F64),
                _col(self.trade_price, _F64),
                _u32(p),
                _col(self.committed_kwh, _F64),
            ]
        )


def meter_body(net_kwh: FloatArray) -> bytes:
    """The METER entry's body: every participant's metered net energy (export positive)."""
    return _u32(int(net_kwh.shape[0])) + _col(net_kwh, _F64)


def settlement_body(
    rule: str,
    retail_price: float,
    feed_in_price: float,
    deviation_kwh: FloatArray,
    cost: FloatArray,
    postings: Postings,
) -> bytes:
    """The SETTLEMENT entry's body: the rule, the tariff, deviations, float costs, postings."""
    return (
        _str(rule)
        + struct.pack(">dd", retail_price, feed_in_price)
        + _u32(int(cost.shape[0]))
        + _col(deviation_kwh, _F64)
        + _col(cost, _F64)
        + postings.encode()
    )


def charges_body(
    last_slot: int, network_charge: FloatArray, loss_charge: FloatArray, postings: Postings
) -> bytes:
    """The CHARGES entry's body: charges of slots [entry slot, last_slot] per participant."""
    return (
        struct.pack(">q", last_slot)
        + _u32(int(network_charge.shape[0]))
        + _col(network_charge, _F64)
        + _col(loss_charge, _F64)
        + postings.encode()
    )


def period_body(what: str, adjustment: FloatArray, postings: Postings) -> bytes:
    """The PERIOD entry's body: what was settled, each participant's adjustment, postings."""
    return _str(what) + _u32(int(adjustment.shape[0])) + _col(adjustment, _F64) + postings.encode()


def tree_head(ledger_id: bytes, tree_size: int, slot: int, root: bytes) -> bytes:
    """The bytes of a tree head (module docstring); the operator signs them."""
    if len(root) != ROOT_SIZE:
        raise ValueError("a root has 32 bytes")
    return TREE_HEAD_TAG + ledger_id + struct.pack(">Qq", tree_size, slot) + root


# --- reading -------------------------------------------------------------------------------


class Reader:
    """A strict cursor over bytes."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise FormatError(f"truncated: wanted {n} bytes at offset {self.pos}")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def i64(self) -> int:
        return int.from_bytes(self.take(8), "big", signed=True)

    def f64(self) -> float:
        return float(struct.unpack(">d", self.take(8))[0])

    def text(self) -> str:
        n = int.from_bytes(self.take(2), "big")
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError as e:
            raise FormatError("a string is not UTF-8") from e

    def col(self, dtype: str, n: int, native: str) -> NDArray[Any]:
        size = np.dtype(dtype).itemsize * n
        return np.frombuffer(self.take(size), dtype=dtype).astype(native)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise FormatError(f"{len(self.data) - self.pos} trailing bytes")


def read_header(data: bytes) -> tuple[Kind, int, Reader]:
    """The kind and slot of an entry and a reader at its body."""
    if len(data) < HEADER.size:
        raise FormatError("shorter than an entry header")
    magic, version, kind, slot = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise FormatError("not a peergrid ledger entry (bad magic)")
    if version != FORMAT_VERSION:
        raise FormatError(f"unknown format version {version}")
    try:
        k = Kind(kind)
    except ValueError as e:
        raise FormatError(f"unknown entry kind {kind}") from e
    return k, int(slot), Reader(data, HEADER.size)


def read_postings(r: Reader) -> Postings:
    n = r.u32()
    return Postings(
        account=r.col(_I32, n, "i8"),
        memo=r.col(_U8, n, "u1"),
        amount_minor=r.col(_I64, n, "i8"),
        energy_wh=r.col(_I64, n, "i8"),
    )


def read_genesis(r: Reader) -> Genesis:
    ledger_id, op = r.take(LEDGER_ID_SIZE), r.take(32)
    currency, exponent = r.text(), r.u8()
    start, seconds, n_slots = struct.unpack(">qII", r.take(16))
    scenario = r.text()
    n = r.u32()
    names, keys = [], []
    for _ in range(n):
        names.append(r.text())
        keys.append(r.take(32))
    r.end()
    return Genesis(
        ledger_id, op, currency, exponent, start, seconds, n_slots, scenario, tuple(names),
        tuple(keys),
    )  # fmt: skip


@dataclass(frozen=True, eq=False)
class OrderMessage:
    """An order message, decoded."""

    ledger_id: bytes
    participant: int
    gate_slot: int
    slot: IntArray
    side: NDArray[np.int8]
    quantity_kwh: FloatArray
    limit_price: FloatArray


def read_order_message(message: bytes) -> OrderMessage:
    r = Reader(message)
    if r.take(len(ORDER_TAG)) != ORDER_TAG:
        raise FormatError("not an order message (bad tag)")
    ledger_id = r.take(LEDGER_ID_SIZE)
    participant, gate = struct.unpack(">Iq", r.take(12))
    n = r.u32()
    out = OrderMessage(
        ledger_id,
        participant,
        gate,
        r.col(_I64, n, "i8"),
        r.col(_U8, n, "i1"),
        r.col(_F64, n, "f8"),
        r.col(_F64, n, "f8"),
    )
    r.end()
    return out


def read_orders(r: Reader) -> tuple[bytes, bytes]:
    """An ORDERS body: (message, signature)."""
    n = r.u32()
    message, signature = r.take(n), r.take(64)
    r.end()
    return message, signature


def read_rejected(r: Reader) -> tuple[int, str, bytes, bytes]:
    participant, reason = r.u32(), r.text()
    message = r.take(r.u32())
    signature = r.take(r.u32())
    r.end()
    return participant, reason, message, signature


def read_clearing(r: Reader) -> ClearingRecord:
    mechanism = r.text()
    cp, bp, sp, surplus = struct.unpack(">dddd", r.take(32))
    n = r.u32()
    filled, price = r.col(_F64, n, "f8"), r.col(_F64, n, "f8")
    k = r.u32()
    tb, ts = r.col(_U32, k, "i8"), r.col(_U32, k, "i8")
    tk, tp = r.col(_F64, k, "f8"), r.col(_F64, k, "f8")
    p = r.u32()
    committed = r.col(_F64, p, "f8")
    r.end()
    return ClearingRecord(mechanism, cp, bp, sp, surplus, filled, price, tb, ts, tk, tp, committed)


def read_meter(r: Reader) -> FloatArray:
    n = r.u32()
    out: FloatArray = r.col(_F64, n, "f8")
    r.end()
    return out


@dataclass(frozen=True, eq=False)
class SettlementRecord:
    """A SETTLEMENT entry, decoded."""

    rule: str
    retail_price: float
    feed_in_price: float
    deviation_kwh: FloatArray
    cost: FloatArray
    postings: Postings


def read_settlement(r: Reader) -> SettlementRecord:
    rule = r.text()
    retail, feed_in = struct.unpack(">dd", r.take(16))
    p = r.u32()
    dev, cost = r.col(_F64, p, "f8"), r.col(_F64, p, "f8")
    postings = read_postings(r)
    r.end()
    return SettlementRecord(rule, retail, feed_in, dev, cost, postings)


def read_charges(r: Reader) -> tuple[int, FloatArray, FloatArray, Postings]:
    last = r.i64()
    p = r.u32()
    net, loss = r.col(_F64, p, "f8"), r.col(_F64, p, "f8")
    postings = read_postings(r)
    r.end()
    return last, net, loss, postings


def read_period(r: Reader) -> tuple[str, FloatArray, Postings]:
    what = r.text()
    p = r.u32()
    adj = r.col(_F64, p, "f8")
    postings = read_postings(r)
    r.end()
    return what, adj, postings


def entry_postings(data: bytes) -> Postings | None:
    """The postings an entry carries, if any."""
    kind, _, r = read_header(data)
    if kind is Kind.SETTLEMENT:
        return read_settlement(r).postings
    if kind is Kind.CHARGES:
        return read_charges(r)[3]
    if kind is Kind.PERIOD:
        return read_period(r)[2]
    return None


def read_tree_head(data: bytes) -> tuple[bytes, int, int, bytes]:
    """(ledger_id, tree_size, slot, root) of tree-head bytes."""
    r = Reader(data)
    if r.take(len(TREE_HEAD_TAG)) != TREE_HEAD_TAG:
        raise FormatError("not a tree head (bad tag)")
    ledger_id = r.take(LEDGER_ID_SIZE)
    size, slot = struct.unpack(">Qq", r.take(16))
    root = r.take(ROOT_SIZE)
    r.end()
    return ledger_id, int(size), int(slot), root
