"""The EMS state as bytes: a documented, versioned encoding a server can store.

`encode_state(value) -> bytes` and `decode_state(bytes) -> value` round-trip the lifecycle's
`EmsRuntime` (and any EMS policy state inside it): frozen dataclasses of numpy arrays,
numbers, strings, tuples, lists, dicts and None. Only the classes in `STATE_TYPES` are written
or read, so decoding never imports or builds anything else.

Format, version 1:

    b"PGST" | version: u8 = 1 | header length: u32 little-endian | header | padding | blobs

The header is UTF-8 JSON describing the value as a tree of nodes:

- ``{"t": "dc", "c": NAME, "f": {field: node, ...}}`` — a dataclass from `STATE_TYPES`;
- ``{"t": "nd", "d": DTYPE, "s": [shape], "o": offset, "n": bytes}`` — a numpy array, its raw
  little-endian bytes at `offset` in the blob area (C order; offsets are 8-byte aligned);
- ``{"t": "f", "v": "0x1.8p+1"}`` — a float as C99 hex (exact, and NaN / ±inf as "nan",
  "inf", "-inf"); ``{"t": "i", "v": 3}``, ``{"t": "b", "v": true}``, ``{"t": "s", "v": "x"}``,
  ``{"t": "n"}`` — int, bool, str, None;
- ``{"t": "tu" | "li", "v": [node, ...]}``, ``{"t": "di", "v": {key: node}}`` — tuple,
  list, dict with string keys;
- ``{"t": "jl", "v": [[node of jobs, slot], ...]}`` — a `JobLog` chain, oldest first (written
  as a list, so a year of appliance starts needs no deep recursion).

Per-run caches that are derived from the assets (`ems.common.Constants`) are written as None;
the policies rebuild them at their next step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from typing import Any

import numpy as np

from peergrid.ems.base import Dispatch, PhysicalState
from peergrid.ems.common import Constants, JobLog, JobQueue, LimitPrices, PolicyState
from peergrid.ems.coordinated import CoordinatedState
from peergrid.ems.coordinated import Plan as CoordinatedPlan
from peergrid.ems.deliver import PlannedSlot
from peergrid.ems.price_aware import JobPlan, PriceAwareState
from peergrid.ems.price_aware import Plan as PriceAwarePlan
from peergrid.ems.stackelberg import StackelbergState
from peergrid.engine.lifecycle import EmsRuntime
from peergrid.markets.base import ClearingResult, OrderBook

MAGIC = b"PGST"
VERSION = 1
_ALIGN = 8

#: The classes the codec writes and reads, by the name stored in the header.
STATE_TYPES: dict[str, type] = {
    "EmsRuntime": EmsRuntime,
    "PlannedSlot": PlannedSlot,
    "PhysicalState": PhysicalState,
    "Dispatch": Dispatch,
    "PolicyState": PolicyState,
    "PriceAwareState": PriceAwareState,
    "PriceAwarePlan": PriceAwarePlan,
    "JobPlan": JobPlan,
    "JobQueue": JobQueue,
    "LimitPrices": LimitPrices,
    "CoordinatedState": CoordinatedState,
    "CoordinatedPlan": CoordinatedPlan,
    "StackelbergState": StackelbergState,
    # a live slot's book and clearing, kept between its gate and its settlement
    "OrderBook": OrderBook,
    "ClearingResult": ClearingResult,
}
_NAME_OF: dict[type, str] = {cls: name for name, cls in STATE_TYPES.items()}


class StateCodecError(ValueError):
    """Bytes that are not an EMS state of a version this peergrid reads."""


def _float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return float(x).hex()


class _Writer:
    def __init__(self) -> None:
        self.blobs: list[bytes] = []
        self.size = 0

    def array(self, a: np.ndarray) -> dict[str, Any]:
        if a.dtype.hasobject:
            raise TypeError("object arrays cannot be encoded")
        data = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
        pad = (-self.size) % _ALIGN
        if pad:
            self.blobs.append(b"\0" * pad)
            self.size += pad
        node: dict[str, Any] = {"t": "nd", "d": a.dtype.newbyteorder("<").str}
        node |= {"s": list(a.shape), "o": self.size, "n": len(data)}
        self.blobs.append(data)
        self.size += len(data)
        return node

    def node(self, v: Any) -> dict[str, Any]:
        if v is None or isinstance(v, Constants):
            return {"t": "n"}
        if isinstance(v, bool | np.bool_):
            return {"t": "b", "v": bool(v)}
        if isinstance(v, int | np.integer):
            return {"t": "i", "v": int(v)}
        if isinstance(v, float | np.floating):
            return {"t": "f", "v": _float(float(v))}
        if isinstance(v, str):
            return {"t": "s", "v": v}
        if isinstance(v, np.ndarray):
            return self.array(v)
        if isinstance(v, JobLog):
            chain = []
            node: JobLog | None = v
            while node is not None:
                chain.append([self.array(node.jobs), int(node.slot)])
                node = node.previous
            return {"t": "jl", "v": chain[::-1]}
        if isinstance(v, tuple | list):
            return {"t": "tu" if isinstance(v, tuple) else "li", "v": [self.node(x) for x in v]}
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise TypeError("only dicts with string keys can be encoded")
            return {"t": "di", "v": {k: self.node(x) for k, x in v.items()}}
        name = _NAME_OF.get(type(v))
        if name is None or not dataclasses.is_dataclass(v):
            raise TypeError(f"cannot encode a {type(v).__name__} (not in STATE_TYPES)")
        fields = {f.name: self.node(getattr(v, f.name)) for f in dataclasses.fields(v)}
        return {"t": "dc", "c": name, "f": fields}


def encode_state(value: Any) -> bytes:
    """The bytes of an EMS state (module docstring)."""
    w = _Writer()
    header = json.dumps(w.node(value), separators=(",", ":")).encode("utf-8")
    head = MAGIC + struct.pack("<BI", VERSION, len(header)) + header
    head += b"\0" * ((-len(head)) % _ALIGN)
    return head + b"".join(w.blobs)


def decode_state(data: bytes) -> Any:
    """The EMS state written by `encode_state`.

    Raises:
        StateCodecError: not such bytes, another version, or a class this peergrid does not
            know.
    """
    if len(data) < 9 or data[:4] != MAGIC:
        raise StateCodecError("not an encoded peergrid EMS state (bad magic)")
    version, n_header = struct.unpack_from("<BI", data, 4)
    if version != VERSION:
        raise StateCodecError(f"EMS state version {version}; this peergrid reads {VERSION}")
    start = 9 + n_header
    try:
        tree = json.loads(data[9:start].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateCodecError(f"EMS state header is not valid JSON: {exc}") from None
    blobs = memoryview(data)[start + (-start) % _ALIGN :]

    def array(n: dict[str, Any]) -> np.ndarray:
        o, size = int(n["o"]), int(n["n"])
        if o + size > len(blobs):
            raise StateCodecError("EMS state is truncated")
        a = np.frombuffer(blobs[o : o + size], dtype=np.dtype(n["d"])).reshape(n["s"])
        return a.astype(a.dtype.newbyteorder("="), copy=True)

    def node(n: dict[str, Any]) -> Any:
        t = n["t"]
        if t == "n":
            return None
        if t in ("b", "i", "s"):
            return n["v"]
        if t == "f":
            return float.fromhex(n["v"]) if n["v"] not in ("nan", "inf", "-inf") else float(n["v"])
        if t == "nd":
            return array(n)
        if t == "jl":
            log = None
            for jobs, slot in n["v"]:
                log = JobLog(jobs=array(jobs), slot=int(slot), previous=log)
            return log
        if t in ("tu", "li"):
            items = [node(x) for x in n["v"]]
            return tuple(items) if t == "tu" else items
        if t == "di":
            return {k: node(x) for k, x in n["v"].items()}
        if t == "dc":
            cls = STATE_TYPES.get(n["c"])
            if cls is None:
                raise StateCodecError(f"unknown EMS state class {n['c']!r}")
            return cls(**{k: node(x) for k, x in n["f"].items()})
        raise StateCodecError(f"unknown node type {t!r}")

    try:
        return node(tree)
    except (KeyError, TypeError) as exc:
        raise StateCodecError(f"malformed EMS state: {exc}") from None
