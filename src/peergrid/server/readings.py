"""Accepting smart-meter readings (`POST /v1/readings`, MQTT; docs/live.md "Meter data").

A reading is a meter's import and export registers (cumulative energy since the meter was
installed) at a slot boundary, in the unit it declares (kWh or Wh; stored in kWh). A batch is
accepted whole or not at all; every refusal names the reading and the reason:

- a register that is NaN or infinite, or negative (registers count up from zero);
- a unit other than kWh or Wh;
- a timestamp without a UTC offset, in the future (beyond `CLOCK_SKEW_S`), off the market's
  slot grid, or outside the market's period;
- a register lower than an earlier reading's, or higher than a later one's (registers never
  decrease; where the two differ by a factor near 1000 the message says the unit looks wrong);
- energy between two readings above what the connection can carry in that time (where
  dividing by 1000 would fit, the message says the reading looks like Wh sent as kWh).

A reading identical to one stored is a no-op (reported as a duplicate); a different reading
for the same meter and instant is refused (409). A reading whose slot has settled already is
stored and marked late: it trues up the next slot settled (`server.metering`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)
from sqlalchemy import and_, insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from peergrid.server.db import writing
from peergrid.server.market import MarketSetup
from peergrid.server.schema import readings, slots

#: How far a meter's clock may run ahead of the server's [s].
CLOCK_SKEW_S = 5.0
#: How far from a slot boundary a reading's timestamp may lie, as a share of the slot [-].
GRID_TOLERANCE = 1e-3
#: The most readings one batch may carry.
MAX_READINGS = 1000


class ReadingIn(BaseModel):
    """A meter's registers at a slot boundary (strict: numbers are JSON numbers, the
    timestamp an ISO 8601 string)."""

    model_config = ConfigDict(extra="forbid")

    timestamp: dt.datetime = Field(description="the slot boundary, ISO 8601 with its UTC offset")
    import_register: StrictFloat | StrictInt = Field(
        description="energy imported since installation"
    )
    export_register: StrictFloat | StrictInt = Field(
        description="energy exported since installation"
    )
    unit: StrictStr = Field(description="'kWh' or 'Wh'")

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso_text(cls, v: Any) -> Any:
        if not isinstance(v, str | dt.datetime):
            raise ValueError("give the instant as ISO 8601 text with its UTC offset")
        return v


class ReadingsIn(BaseModel):
    """A batch of one meter's readings."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "readings": [
                        {
                            "timestamp": "2026-12-06T21:15:00+00:00",
                            "import_register": 5231.25,
                            "export_register": 1802.5,
                            "unit": "kWh",
                        }
                    ]
                }
            ]
        },
    )

    readings: list[ReadingIn] = Field(min_length=1, max_length=MAX_READINGS)


class ReadingsStored(BaseModel):
    """What a batch did: readings stored, duplicates ignored, and of the stored the late ones."""

    stored: int
    duplicates: int
    late: int


@dataclass(frozen=True)
class Checked:
    """A reading that passed the checks that need no database: its boundary and registers in
    kWh."""

    row: int
    boundary: int
    import_kwh: float
    export_kwh: float
    unit: str


class ReadingRefused(Exception):
    """A batch refused: the HTTP status and why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def check_reading(setup: MarketSetup, row: int, r: ReadingIn, now_s: float) -> Checked:
    """The checks of one reading on its own (module docstring).

    Raises:
        ReadingRefused: the first problem found (422).
    """
    where = f"readings[{row}]"
    for name in ("import_register", "export_register"):
        v = getattr(r, name)
        if not math.isfinite(v):
            raise ReadingRefused(422, f"{where}.{name}: {v} is not a finite number")
        if v < 0:
            raise ReadingRefused(
                422, f"{where}.{name}: {v} is negative; registers count up from zero"
            )
    if r.unit not in ("kWh", "Wh"):
        raise ReadingRefused(422, f"{where}.unit: must be 'kWh' or 'Wh', got {r.unit!r}")
    if r.timestamp.tzinfo is None or r.timestamp.utcoffset() is None:
        raise ReadingRefused(422, f"{where}.timestamp: {r.timestamp.isoformat()} has no UTC offset")
    cal = setup.calendar
    t = r.timestamp.timestamp()
    if t > now_s + CLOCK_SKEW_S:
        raise ReadingRefused(
            422,
            f"{where}.timestamp: {r.timestamp.isoformat()} is {t - now_s:.1f} s in the future",
        )
    b_float = (t - cal.start_unix_s) / cal.slot_seconds
    b = round(b_float)
    if abs(b_float - b) > GRID_TOLERANCE:
        raise ReadingRefused(
            422,
            f"{where}.timestamp: {r.timestamp.isoformat()} is not on the slot grid (boundaries "
            f"every {cal.slot_seconds:g} s from {cal.as_utc(cal.start_unix_s).isoformat()})",
        )
    if not 0 <= b <= cal.n_slots:
        raise ReadingRefused(
            422, f"{where}.timestamp: {r.timestamp.isoformat()} is outside the market's period"
        )
    scale = 1.0 if r.unit == "kWh" else 1e-3
    return Checked(row, b, r.import_register * scale, r.export_register * scale, r.unit)


def _order_problem(
    setup: MarketSetup, index: int, a: tuple[int, float, float], b: tuple[int, float, float]
) -> str | None:
    """Why two readings of a meter (boundary, import, export; a before b) cannot both be true."""
    span = b[0] - a[0]
    cap = float(setup.connection_kw[index]) * setup.calendar.dt_h * span
    for k, name in ((1, "import"), (2, "export")):
        lo, hi = a[k], b[k]
        if hi < lo - 1e-9:
            hint = ""
            if hi > 0 and 500 < lo / hi < 2000:
                hint = " (a factor near 1000: a kWh/Wh mix-up?)"
            return (
                f"the {name} register decreases from {lo:g} kWh at boundary {a[0]} to {hi:g} kWh "
                f"at boundary {b[0]}{hint}"
            )
        if hi - lo > cap * (1 + 1e-9):
            hint = ""
            if (hi - lo) / 1000 <= cap:
                hint = "; it looks like Wh sent as kWh"
            return (
                f"the {name} register rises by {hi - lo:g} kWh between boundaries {a[0]} and "
                f"{b[0]}, above what the connection carries ({cap:g} kWh){hint}"
            )
    return None


def store_readings(
    engine: Engine,
    setup: MarketSetup,
    participant_id: int,
    batch: ReadingsIn,
    now_s: float,
    source: Literal["http", "mqtt"] = "http",
) -> ReadingsStored:
    """Check and store a batch of one meter's readings (module docstring).

    Raises:
        ReadingRefused: the batch is refused (nothing stored).
    """
    index = setup.index_of(participant_id)
    if index is None:
        raise ReadingRefused(403, "this account is not a member of the market")
    checked = [check_reading(setup, i, r, now_s) for i, r in enumerate(batch.readings)]
    received = dt.datetime.fromtimestamp(now_s, tz=dt.UTC)
    try:
        with writing(engine, lock="shared") as conn:
            return _store(conn, setup, participant_id, index, checked, source, received)
    except IntegrityError:
        # the same meter's same instant arrived at the same moment by another way (HTTP and
        # MQTT, or two servers): once again, it is a duplicate or a conflict
        with writing(engine, lock="shared") as conn:
            return _store(conn, setup, participant_id, index, checked, source, received)


def _store(
    conn: Connection,
    setup: MarketSetup,
    participant_id: int,
    index: int,
    checked: list[Checked],
    source: str,
    received: dt.datetime,
) -> ReadingsStored:
    r = readings.c
    lo = min(c.boundary for c in checked)
    hi = max(c.boundary for c in checked)
    known: dict[int, tuple[float, float]] = {}
    # the stored readings in the batch's span and its nearest neighbours on either side
    for cond, order in (
        (and_(r.boundary >= lo, r.boundary <= hi), None),
        (r.boundary < lo, r.boundary.desc()),
        (r.boundary > hi, r.boundary.asc()),
    ):
        q = select(r.boundary, r.import_register_kwh, r.export_register_kwh).where(
            and_(r.participant_id == participant_id, cond)
        )
        if order is not None:
            q = q.order_by(order).limit(1)
        for row in conn.execute(q):
            known[int(row.boundary)] = (row.import_register_kwh, row.export_register_kwh)
    new: dict[int, Checked] = {}
    duplicates = 0
    for c in checked:
        old = known.get(c.boundary)
        mine = new.get(c.boundary)
        if old is not None or mine is not None:
            ref = old if old is not None else (mine.import_kwh, mine.export_kwh)  # type: ignore[union-attr]
            if ref == (c.import_kwh, c.export_kwh):
                duplicates += 1
                continue
            raise ReadingRefused(
                409,
                f"readings[{c.row}]: a different reading for boundary {c.boundary} is already "
                f"stored ({ref[0]:g} / {ref[1]:g} kWh)",
            )
        new[c.boundary] = c
    everything = sorted(
        [(b, v[0], v[1], -1) for b, v in known.items()]
        + [(c.boundary, c.import_kwh, c.export_kwh, c.row) for c in new.values()]
    )
    for a, b in itertools.pairwise(everything):
        if a[3] < 0 and b[3] < 0:
            continue
        problem = _order_problem(setup, index, a[:3], b[:3])
        if problem is not None:
            which = b[3] if b[3] >= 0 else a[3]
            raise ReadingRefused(422, f"readings[{which}]: {problem}")
    if not new:
        return ReadingsStored(stored=0, duplicates=duplicates, late=0)
    settled = {
        int(x.slot)
        for x in conn.execute(
            select(slots.c.slot).where(
                and_(
                    slots.c.slot.in_([b - 1 for b in new]),
                    slots.c.settled_at.is_not(None),
                )
            )
        )
    }
    rows: list[dict[str, Any]] = [
        {
            "participant_id": participant_id,
            "boundary": c.boundary,
            "import_register_kwh": c.import_kwh,
            "export_register_kwh": c.export_kwh,
            "unit": c.unit,
            "source": source,
            "late": (c.boundary - 1) in settled,
            "received_at": received,
        }
        for c in new.values()
    ]
    conn.execute(insert(readings), rows)
    return ReadingsStored(
        stored=len(rows), duplicates=duplicates, late=sum(bool(x["late"]) for x in rows)
    )
