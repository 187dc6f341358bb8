"""Home batteries in the schedule LP (the physics of `assets/battery.py`).

    soc_{t+1} = soc_t + η_c·ch_t − dis_t/η_d,    soc in [soc_min, soc_max],    ch, dis ≤ power·Δt

with [soc_min, soc_max] widened to include the initial state, which is never pushed further
out. No binary forbids simultaneous charge and discharge: with the wear cost > 0 (and
η_c·η_d ≤ 1) doing both never pays, except to burn a surplus that cannot be exported (export
limit); the executing EMS nets the two anyway (`battery.dispatch`).
"""

from __future__ import annotations

import numpy as np

from peergrid.assets.params import IntArray
from peergrid.coordination.blocks.base import (
    StorageColumns,
    add_to_balance,
    safe_eta,
    storage_terms,
)
from peergrid.coordination.problem import ScheduleProblem
from peergrid.optim.highs import LpModel


def add_battery(
    m: LpModel, problem: ScheduleProblem, wear_per_kwh: float, balance: IntArray
) -> StorageColumns:
    """Charge, discharge and state columns with their dynamics, for every battery that can
    move energy; throughput costs `wear_per_kwh` [currency/kWh]."""
    b = problem.assets.battery
    h, dt = problem.n_slots, problem.dt_h
    has_b = (b.capacity_kwh > 0.0) & (b.power_kw > 0.0) & (b.soc_max_kwh > b.soc_min_kwh)
    bi = np.flatnonzero(has_b)
    hb = np.ones((h, bi.size), dtype=bool)
    soc0_b = np.asarray(problem.battery_soc_kwh, dtype=np.float64)
    eta_c_b, eta_d_b = safe_eta(b.efficiency_charge[bi]), safe_eta(b.efficiency_discharge[bi])
    e_max_b = b.power_kw[bi] * dt
    b_ch = m.cols(hb, 0.0, e_max_b, wear_per_kwh)
    b_dis = m.cols(hb, 0.0, e_max_b, wear_per_kwh)
    b_soc = m.cols(
        hb,
        np.minimum(b.soc_min_kwh[bi], soc0_b[bi]),
        np.maximum(b.soc_max_kwh[bi], soc0_b[bi]),
        0.0,
    )
    rhs = np.zeros((h, bi.size))
    rhs[0] = soc0_b[bi]
    b_dyn = m.rows(hb, rhs, rhs)
    m.coef(b_dyn, b_soc, 1.0)
    m.coef(b_dyn[1:], b_soc[:-1], -1.0)
    m.coef(b_dyn, b_ch, -eta_c_b)
    m.coef(b_dyn, b_dis, 1.0 / eta_d_b)
    terms = storage_terms(bi, b_ch, b_dis)
    add_to_balance(m, balance, terms)
    return StorageColumns(bi, b_ch, b_dis, b_soc, soc0_b, terms)
