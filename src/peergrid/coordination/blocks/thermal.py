"""Heat pumps and air conditioners in the schedule LP: the exact 1R1C discretisation of
`assets/thermal.py`.

    T_{t+1} = a·T_t + (1 − a)·T_out,t ± COP_t·g·e_t,    e_t ≤ p_max·Δt

with a, g from `thermal.response` and COP_t from `thermal.cop` at the slot's outdoor
temperature. The comfort band [t_min, t_max] bounds T at every state point 1..H. Where the band
cannot be held (too little power, a start outside it, an outdoor temperature past the edge the
asset cannot act on) a penalised "virtual heat" slack [K] in the dynamics keeps the LP feasible;
the reported `indoor_temp_c` is the physical trajectory of the planned energy (without the
slack) and `comfort_violation_k` its distance from the band. The slacks exist only for
buildings where the band is not provably holdable (from inside it, full power holds the near
edge and no power the far edge in every slot), which keeps the LP small. A kelvin of virtual
heat costs `penalty_factor` × the dearest price / the building's smallest ±COP·g [K/kWh], i.e.
more than heating it for real at the dearest price.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from peergrid.assets import thermal
from peergrid.assets.params import FloatArray, IntArray
from peergrid.coordination.blocks.base import NetTerm, add_to_balance, scatter
from peergrid.coordination.problem import ScheduleOptions, ScheduleProblem
from peergrid.optim.highs import LpModel, column_values

_HOLD_TOL_K = 1e-9  # a band counts as holdable with this much to spare [K]


class ThermalPlan(NamedTuple):
    """The thermal assets' part of a solution, per participant.

    Attributes:
        energy_kwh: electricity of the heat pumps / air conditioners, (H, P) [kWh].
        indoor_temp_c: the physical trajectory of that energy, (H + 1, P) [°C].
        comfort_violation_k: distance outside the comfort band, (H + 1, P) [K].
        penalty: the virtual heat's cost, (H, K) for the participants `ThermalColumns.who`
            [currency].
    """

    energy_kwh: FloatArray
    indoor_temp_c: FloatArray
    comfort_violation_k: FloatArray
    penalty: FloatArray


@dataclass(frozen=True, eq=False)
class ThermalColumns:
    """The thermal assets' columns, (H, K) for the K participants `who` that can control one.

    Attributes:
        who: participants with a controllable heat pump or air conditioner, (K,).
        energy: electricity per slot [kWh].
        too_cold, too_hot: virtual heat below t_min / above t_max [K]; −1 where the band is
            provably holdable.
        comfort_cost: price of a kelvin of virtual heat [currency/K].
        decay: every participant's a, (P,) [-].
        effect: ±COP·g, (H, K) [K/kWh].
        t_min_c, t_max_c: the comfort band, (K,) [°C].
        terms: the thermal assets' net export.
    """

    who: IntArray
    energy: IntArray
    too_cold: IntArray
    too_hot: IntArray
    comfort_cost: FloatArray
    decay: FloatArray
    effect: FloatArray
    t_min_c: FloatArray
    t_max_c: FloatArray
    terms: list[NetTerm]

    def read(self, x: FloatArray, problem: ScheduleProblem) -> ThermalPlan:
        """The thermal assets' part of a solution `x`."""
        h, p, ki = problem.n_slots, problem.n_participants, self.who
        thermal_kwh = scatter(h, p, ki, column_values(x, self.energy))
        temp_traj = _indoor_temperatures(problem, self.decay, ki, self.effect, thermal_kwh)
        comfort = np.zeros((h + 1, p))
        t_k = temp_traj[1:, ki]
        comfort[1:, ki] = np.maximum(self.t_min_c - t_k, 0.0) + np.maximum(t_k - self.t_max_c, 0.0)
        slack = column_values(x, self.too_cold) + column_values(x, self.too_hot)
        return ThermalPlan(thermal_kwh, temp_traj, comfort, slack * self.comfort_cost)


def add_thermal(
    m: LpModel,
    problem: ScheduleProblem,
    opts: ScheduleOptions,
    price_scale: float,
    balance: IntArray,
) -> ThermalColumns:
    """The thermal assets' columns and rows; virtual heat costs `opts.comfort_penalty_per_k`,
    or is scaled from `price_scale` [currency/kWh] per building (module docstring)."""
    th = problem.assets.thermal
    h, dt = problem.n_slots, problem.dt_h
    sign = thermal.heat_sign(th.kind)
    decay, gain = thermal.response(th.ua_kw_per_k, th.capacity_kwh_per_k, dt)
    valid = (sign != 0.0) & (th.cop > 0.0) & (gain > 0.0) & (th.p_max_kw > 0.0)
    ki = np.flatnonzero(valid)
    hk = np.ones((h, ki.size), dtype=bool)
    temp_out = np.asarray(problem.temp_out_c, dtype=np.float64)
    cop = np.stack([thermal.cop(th.cop[ki], th.kind[ki], float(x)) for x in temp_out]).reshape(
        h, ki.size
    )
    effect = thermal.effect_k_per_kwh(sign[ki], cop, gain[ki])  # (H, K) [K/kWh]
    a_k = decay[ki]
    t0_k = np.asarray(problem.indoor_temp_c, dtype=np.float64)[ki]
    e_max_k = th.p_max_kw[ki] * dt
    t_min_k, t_max_k = th.t_min_c[ki], np.maximum(th.t_max_c[ki], th.t_min_c[ki])
    k_e = m.cols(hk, 0.0, e_max_k, 0.0)
    # the band as bounds; "virtual heat" slacks [K] in the dynamics keep it feasible where it
    # cannot be held, and are left out where it provably can (by induction over the slots:
    # from inside the band, full power keeps the near edge and no power the far edge)
    k_t = m.cols(hk, t_min_k, t_max_k, 0.0)
    gap_lo = (1.0 - a_k)[None, :] * (t_min_k[None, :] - temp_out[:, None])  # heat to hold t_min
    gap_hi = (1.0 - a_k)[None, :] * (temp_out[:, None] - t_max_k[None, :])  # cooling for t_max
    reach = np.abs(effect) * e_max_k[None, :] - _HOLD_TOL_K
    heating = sign[ki] > 0.0
    need_lo = np.where(heating, (gap_lo > reach).any(axis=0), (gap_lo > 0.0).any(axis=0))
    need_hi = np.where(heating, (gap_hi > 0.0).any(axis=0), (gap_hi > reach).any(axis=0))
    need_lo |= t0_k < t_min_k
    need_hi |= t0_k > t_max_k
    comfort_cost = (
        np.full((h, ki.size), opts.comfort_penalty_per_k)
        if opts.comfort_penalty_per_k is not None
        else opts.penalty_factor * price_scale / np.maximum(np.abs(effect).min(axis=0), 1e-9)
    )
    k_lo = m.cols(hk & need_lo[None, :], 0.0, np.inf, comfort_cost)
    k_hi = m.cols(hk & need_hi[None, :], 0.0, np.inf, comfort_cost)
    rhs = (1.0 - a_k)[None, :] * temp_out[:, None]
    rhs[0] += a_k * t0_k
    k_dyn = m.rows(hk, rhs, rhs)
    m.coef(k_dyn, k_t, 1.0)
    m.coef(k_dyn[1:], k_t[:-1], -a_k)
    m.coef(k_dyn, k_e, -effect)
    m.coef(k_dyn, k_lo, -1.0)
    m.coef(k_dyn, k_hi, 1.0)
    terms: list[NetTerm] = [(np.arange(h)[:, None], ki[None, :], k_e, -1.0)]
    add_to_balance(m, balance, terms)
    return ThermalColumns(
        who=ki,
        energy=k_e,
        too_cold=k_lo,
        too_hot=k_hi,
        comfort_cost=comfort_cost,
        decay=decay,
        effect=effect,
        t_min_c=t_min_k,
        t_max_c=t_max_k,
        terms=terms,
    )


def _indoor_temperatures(
    problem: ScheduleProblem,
    decay: FloatArray,
    ki: IntArray,
    effect: FloatArray,
    thermal_kwh: FloatArray,
) -> FloatArray:
    """Indoor temperatures (H + 1, P) [°C] of the planned thermal energy, by the physics of
    `assets/thermal.py` (free drift where nothing is controlled)."""
    h = problem.n_slots
    out = np.empty((h + 1, problem.n_participants))
    out[0] = problem.indoor_temp_c
    temp_out = np.asarray(problem.temp_out_c, dtype=np.float64)
    eff = np.zeros((h, problem.n_participants))
    eff[:, ki] = effect
    for t in range(h):  # a first-order recurrence over slots, vectorised across participants
        free = thermal.free_temperature_c(out[t], float(temp_out[t]), decay)
        out[t + 1] = thermal.next_temperature_c(free, thermal_kwh[t], eff[t])
    return out
