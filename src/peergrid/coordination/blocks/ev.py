"""Electric vehicles in the schedule LP (the physics of `assets/ev.py`).

An EV charges (and with v2h discharges) only in plugged slots, with the battery's SoC update
(`blocks.battery`) and SoC in [0, capacity]. A trip's energy leaves the battery at the first slot
of the return (`ev_trip_kwh`); what the battery cannot supply is `ev_unserved_kwh` (the
after-trip state is max(soc − trip, 0) as in `ev.apply_trip`, with the unserved energy
penalised). At each departure inside the horizon (plugged in slot d − 1, away in slot d)
soc_d ≥ min(target, capacity); with `ev_target_at_horizon_end` an EV still plugged in at the
last slot is assumed to leave at the horizon's end, as `ev.session_slots` assumes. The target
is soft: a shortfall costs the energy penalty and is reported. A v2h EV keeps soc_min as a
reserve while plugged in (soft, same penalty); physics only forbids v2h discharge below
soc_min, but "discharge only above soc_min" is not convex, so the LP asks the coordinator to
restore the reserve at once after a trip that left the EV below it. Without such trips the two
coincide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from peergrid.assets import ev
from peergrid.assets.params import FloatArray, IntArray
from peergrid.coordination.blocks.base import (
    StorageColumns,
    add_to_balance,
    safe_eta,
    scatter,
    storage_terms,
)
from peergrid.coordination.problem import ScheduleOptions, ScheduleProblem
from peergrid.optim.highs import LpModel, column_values


class EvPlan(NamedTuple):
    """The EVs' part of a solution, per participant.

    Attributes:
        charge_kwh, discharge_kwh: (H, P) [kWh].
        soc_kwh: (H + 1, P) [kWh]; row 0 the state before the trip of slot 0.
        shortfall_kwh: missing energy at departures, (H + 1, P) [kWh].
        unserved_kwh: trip energy the battery could not supply, (H, P) [kWh].
        reserve_shortfall_kwh: v2h EV below soc_min while plugged in, (H + 1, P) [kWh].
    """

    charge_kwh: FloatArray
    discharge_kwh: FloatArray
    soc_kwh: FloatArray
    shortfall_kwh: FloatArray
    unserved_kwh: FloatArray
    reserve_shortfall_kwh: FloatArray


@dataclass(frozen=True, eq=False)
class EvColumns:
    """The EVs' columns: their storage, and the soft constraints' columns, (H, K) for the K
    participants `storage.who` that have an EV; −1 where absent.

    Attributes:
        storage: charge, discharge and state of charge (`StorageColumns`).
        unserved: trip energy the battery does not supply [kWh].
        shortfall: missing energy at a departure, in the row before it [kWh].
        reserve: v2h reserve below soc_min [kWh].
    """

    storage: StorageColumns
    unserved: IntArray
    shortfall: IntArray
    reserve: IntArray

    def read(self, x: FloatArray) -> EvPlan:
        """The EVs' part of a solution `x`."""
        charge, discharge, soc = self.storage.read(x)
        who = self.storage.who
        h, p = charge.shape
        shortfall = np.zeros((h + 1, p))
        shortfall[1:, who] = column_values(x, self.shortfall)
        reserve = np.zeros((h + 1, p))
        reserve[1:, who] = column_values(x, self.reserve)
        return EvPlan(
            charge_kwh=charge,
            discharge_kwh=discharge,
            soc_kwh=soc,
            shortfall_kwh=shortfall,
            unserved_kwh=scatter(h, p, who, column_values(x, self.unserved)),
            reserve_shortfall_kwh=reserve,
        )


def add_ev(
    m: LpModel, problem: ScheduleProblem, opts: ScheduleOptions, pen: float, balance: IntArray
) -> EvColumns:
    """The EVs' columns and rows; unserved trip energy, departure shortfall and reserve
    shortfall cost `pen` [currency/kWh], throughput `opts.wear_per_kwh`."""
    e = problem.assets.ev
    h, dt = problem.n_slots, problem.dt_h
    has_e = (e.capacity_kwh > 0.0) & (e.power_kw > 0.0)
    ei = np.flatnonzero(has_e)
    he = np.ones((h, ei.size), dtype=bool)
    plugged = np.asarray(problem.ev_plugged[:, ei], dtype=bool)
    v2h = np.asarray(e.v2h[ei], dtype=bool)
    trips = np.asarray(problem.ev_trip_kwh[:, ei], dtype=np.float64)
    soc0_e = np.asarray(problem.ev_soc_kwh, dtype=np.float64)[ei]
    cap_e = np.maximum(e.capacity_kwh[ei], soc0_e)
    eta_c_e, eta_d_e = safe_eta(e.efficiency_charge[ei]), safe_eta(e.efficiency_discharge[ei])
    e_max_e = e.power_kw[ei] * dt
    target = ev.reachable_target_kwh(e.target_kwh[ei], e.capacity_kwh[ei])
    e_ch = m.cols(plugged, 0.0, e_max_e, opts.wear_per_kwh)
    e_dis = m.cols(plugged & v2h, 0.0, e_max_e, opts.wear_per_kwh)
    e_soc = m.cols(he, 0.0, cap_e, 0.0)
    has_trip = trips > 0.0
    e_uns = m.cols(has_trip, 0.0, trips, pen)
    rhs = -trips
    rhs[0] += soc0_e
    e_dyn = m.rows(he, rhs, rhs)
    m.coef(e_dyn, e_soc, 1.0)
    m.coef(e_dyn[1:], e_soc[:-1], -1.0)
    m.coef(e_dyn, e_ch, -eta_c_e)
    m.coef(e_dyn, e_dis, 1.0 / eta_d_e)
    m.coef(e_dyn, e_uns, -1.0)
    # the after-trip state is >= 0: soc_t + unserved_t >= trip_t (slot 0: soc0 is data)
    trip_lo = trips.copy()
    trip_lo[0] -= soc0_e
    e_trip = m.rows(has_trip, trip_lo, np.inf)
    m.coef(e_trip, e_uns, 1.0)
    m.coef(e_trip[1:], e_soc[:-1], 1.0)
    terms = storage_terms(ei, e_ch, e_dis)
    add_to_balance(m, balance, terms)
    # departures: soc at state d (1..H) >= target, soft
    leaves = np.zeros((h, ei.size), dtype=bool)  # row d − 1 <-> state d
    leaves[:-1] = plugged[:-1] & ~plugged[1:]
    if opts.ev_target_at_horizon_end:
        leaves[-1] = plugged[-1]
    leaves &= target[None, :] > 0.0
    e_short = m.cols(leaves, 0.0, target, pen)
    e_dep = m.rows(leaves, target, np.inf)
    m.coef(e_dep, e_soc, 1.0)
    m.coef(e_dep, e_short, 1.0)
    # v2h reserve while plugged in, soft
    soc_min_e = np.asarray(e.soc_min_kwh[ei], dtype=np.float64)
    reserve = plugged & v2h & (soc_min_e > 0.0)
    e_res = m.cols(reserve, 0.0, soc_min_e, pen)
    e_resrow = m.rows(reserve, soc_min_e, np.inf)
    m.coef(e_resrow, e_soc, 1.0)
    m.coef(e_resrow, e_res, 1.0)
    soc_initial = np.asarray(problem.ev_soc_kwh, dtype=np.float64)
    storage = StorageColumns(ei, e_ch, e_dis, e_soc, soc_initial, terms)
    return EvColumns(storage, unserved=e_uns, shortfall=e_short, reserve=e_res)
