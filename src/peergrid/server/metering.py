"""From raw meter readings to the interval values a slot settles on (docs/live.md, "Meter data").

A smart meter reports its import and export registers (cumulative kWh) at slot boundaries; the
reading at boundary b is the register at the start of slot b. When slot s settles, each
participant's metered net energy (export positive) is:

- **measured**: both boundaries of s have a reading: Δexport − Δimport over the slot;
- **trued-up**: the reading at the end of s exists but the last one before it is at an earlier
  boundary b < s: the slots b … s − 1 were settled on estimates, so s gets what the registers
  say about b … s minus those estimates (the estimate's error is corrected at the next real
  reading, as a billing true-up);
- **estimated**: no reading at the end of s (or none ever before it): the participant's
  commitment for s, so a missing reading neither creates nor hides a deviation until the next
  real reading trues it up.

Raw readings stay as received (`schema.readings`); the values settled on, with their quality,
are `schema.meter_intervals`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from peergrid.server.schema import meter_intervals, readings

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

MEASURED, TRUED_UP, ESTIMATED = "measured", "trued-up", "estimated"


def metered_net(
    conn: Connection, participant_id: IntArray, slot: int, committed_kwh: FloatArray
) -> tuple[FloatArray, list[str]]:
    """Each member's net energy in `slot` and its quality (module docstring), (P,) [kWh]."""
    n = participant_id.size
    index = {int(p): i for i, p in enumerate(participant_id.tolist())}
    r = readings.c
    end_imp = np.full(n, np.nan)
    end_exp = np.full(n, np.nan)
    for row in conn.execute(
        select(r.participant_id, r.import_register_kwh, r.export_register_kwh).where(
            r.boundary == slot + 1
        )
    ):
        i = index.get(int(row.participant_id))
        if i is not None:
            end_imp[i], end_exp[i] = row.import_register_kwh, row.export_register_kwh
    # the last reading at or before the slot's start, per participant
    last = (
        select(r.participant_id, func.max(r.boundary).label("b"))
        .where(r.boundary <= slot)
        .group_by(r.participant_id)
        .subquery()
    )
    start_b = np.full(n, -1, dtype=np.int64)
    start_imp = np.full(n, np.nan)
    start_exp = np.full(n, np.nan)
    for start in conn.execute(
        select(r.participant_id, r.boundary, r.import_register_kwh, r.export_register_kwh).join(
            last, and_(last.c.participant_id == r.participant_id, last.c.b == r.boundary)
        )
    ):
        i = index.get(int(start.participant_id))
        if i is not None:
            start_b[i] = start.boundary
            start_imp[i], start_exp[i] = start.import_register_kwh, start.export_register_kwh
    net = np.array(committed_kwh, dtype=np.float64, copy=True)
    quality = [ESTIMATED] * n
    have = np.isfinite(end_imp) & (start_b >= 0)
    if not np.count_nonzero(have):
        return net, quality
    m = meter_intervals.c
    earliest = int(start_b[have].min())
    estimated = np.zeros(n)
    for row in conn.execute(
        select(m.participant_id, m.slot, m.net_kwh).where(m.slot >= earliest, m.slot < slot)
    ):
        i = index.get(int(row.participant_id))
        if i is not None and row.slot >= start_b[i]:
            estimated[i] += row.net_kwh
    total = (end_exp - start_exp) - (end_imp - start_imp)
    for i in np.flatnonzero(have).tolist():
        net[i] = total[i] - estimated[i]
        quality[i] = MEASURED if start_b[i] == slot else TRUED_UP
    return net, quality
