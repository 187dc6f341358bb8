"""Gate closure: when the orders for each delivery slot are due.

Two kinds, written in a scenario's `[market] gate_closure`:

- ``"day-ahead HH:MM"`` — every slot of local day D closes at HH:MM local time on D − 1 (the
  day-ahead auctions of the wholesale markets close at 12:00; Liu et al. 2017 schedule their
  community a day ahead). The time must fall on a slot boundary.
- ``"intraday K"`` — each slot closes K slots before it starts (Elecbay, Zhang et al. 2018,
  closes one hour before each half-hourly slot); ``"intraday 0"`` closes each slot at its own
  start, which with perfect forecasts is the one-call slot step of parts 1–3.

Gates are slot indices on the run's grid: a gate at g happens at the start of slot g, when the
meters have reported every slot before g. Gates of the first slots lie before the run
(negative g).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from peergrid.errors import InputError
from peergrid.timegrid import SlotGrid

IntArray = NDArray[np.int64]

_DAY_AHEAD = re.compile(r"^day-ahead\s+([01]\d|2[0-3]):([0-5]\d)$")
_INTRADAY = re.compile(r"^intraday\s+(\d{1,5})$")


@dataclass(frozen=True)
class GateClosure:
    """A parsed gate-closure rule.

    Attributes:
        kind: "day-ahead" or "intraday".
        local_minute: day-ahead: the local clock time of the gate [min after midnight].
        slots_ahead: intraday: how many slots before delivery the gate closes [slots].
    """

    kind: Literal["day-ahead", "intraday"]
    local_minute: int = 0
    slots_ahead: int = 0

    def __str__(self) -> str:
        if self.kind == "day-ahead":
            return f"day-ahead {self.local_minute // 60:02d}:{self.local_minute % 60:02d}"
        return f"intraday {self.slots_ahead}"


def gate_closure_problem(text: str, slot_minutes: int) -> str | None:
    """Why `text` is not a gate closure on `slot_minutes` slots, or None if it is one."""
    value = " ".join(str(text).split())
    m = _DAY_AHEAD.match(value)
    if m is not None:
        if (int(m[1]) * 60 + int(m[2])) % slot_minutes:
            return f"{value!r} is not on the {slot_minutes}-minute slot grid"
        return None
    if _INTRADAY.match(value) is not None:
        return None
    return (
        "must be 'day-ahead HH:MM' (local time on the day before) or 'intraday K' (K slots "
        f"before each slot), got {text!r}"
    )


def parse_gate_closure(text: str, slot_minutes: int) -> GateClosure:
    """Parse ``"day-ahead HH:MM"`` or ``"intraday K"``.

    Raises:
        InputError: any other text, or a day-ahead time off the slot grid (the message names
            `market.gate_closure`).
    """
    problem = gate_closure_problem(text, slot_minutes)
    if problem is not None:
        raise InputError(f"market.gate_closure: {problem}")
    value = " ".join(str(text).split())
    m = _DAY_AHEAD.match(value)
    if m is not None:
        return GateClosure("day-ahead", local_minute=int(m[1]) * 60 + int(m[2]))
    m = _INTRADAY.match(value)
    assert m is not None
    return GateClosure("intraday", slots_ahead=int(m[1]))


def default_gate_closure(slot_minutes: int) -> str:
    """One hour before each slot (rounded up to whole slots), as Elecbay closes its gate."""
    return f"intraday {-(-60 // slot_minutes)}"


@dataclass(frozen=True, eq=False)
class GateSchedule:
    """Every gate of a run, in time order.

    Attributes:
        gate_slot: the slot at whose start each gate closes, ascending, (G,) (may be < 0).
        first_slot: the first delivery slot each gate closes, (G,).
        stop_slot: one past the last delivery slot it closes, (G,).
        gate_of_slot: the gate slot of every delivery slot, (T,).
        closure: the rule.
    """

    gate_slot: IntArray
    first_slot: IntArray
    stop_slot: IntArray
    gate_of_slot: IntArray
    closure: GateClosure

    @property
    def n_gates(self) -> int:
        return int(self.gate_slot.size)

    @property
    def lead_slots(self) -> IntArray:
        """Slots between each delivery slot and its gate, (T,)."""
        return np.arange(self.gate_of_slot.size, dtype=np.int64) - self.gate_of_slot


def gate_schedule(grid: SlotGrid, closure: GateClosure) -> GateSchedule:
    """The gates of a run on `grid` (module docstring)."""
    n = grid.n_slots
    slots = np.arange(n, dtype=np.int64)
    if closure.kind == "intraday":
        gate = slots - closure.slots_ahead
        return GateSchedule(gate, slots.copy(), slots + 1, gate, closure)
    tz = ZoneInfo(grid.timezone)
    start_ns = int(grid.starts_utc[0].value)
    slot_ns = grid.slot_minutes * 60 * 10**9
    first = grid.day_first_slot[:-1].astype(np.int64)
    stop = grid.day_first_slot[1:].astype(np.int64)
    hh, mm = divmod(closure.local_minute, 60)
    gates = np.empty(grid.days, dtype=np.int64)
    for d in range(grid.days):
        day_before = grid.start_local + dt.timedelta(days=d - 1)
        when = pd.Timestamp(dt.datetime.combine(day_before, dt.time(hh, mm), tzinfo=tz))
        offset = int(when.tz_convert("UTC").value) - start_ns
        gates[d] = offset // slot_ns
    gate_of_slot = np.repeat(gates, stop - first)
    return GateSchedule(gates, first, stop, gate_of_slot, closure)
