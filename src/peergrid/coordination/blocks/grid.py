"""The community's connection in the schedule LP: grid import G⁺ and export G⁻, their limits,
and the community balance that every asset's net export enters.

    Σ_n (base − pv + bat_ch − bat_dis + ev_ch − ev_dis + thermal + shiftable)_n,t
        = G⁺_t − G⁻_t                                                 community balance [kWh]

G⁺ costs λ_buy,t (retail), G⁻ earns λ_sell,t (feed-in). In a slot with λ_sell > λ_buy the
coordinator values export at λ_buy (`feed_in` is clipped to retail): importing and exporting at
once would otherwise be an unbounded arbitrage.

**Import / export limits** (`import_limit_kw`, `export_limit_kw`, default none) bound G⁺ and
G⁻; energy beyond a limit is allowed at the energy penalty extra and reported, so the LP is
always feasible.

The dual of the balance is the community's internal marginal price λ_t [currency/kWh]
(`coordination.schedule`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peergrid.assets.params import FloatArray, IntArray
from peergrid.coordination.problem import ScheduleOptions, ScheduleProblem
from peergrid.optim.highs import LpModel, column_values


@dataclass(frozen=True, eq=False)
class GridColumns:
    """The connection's columns and the balance rows, each (H,).

    Attributes:
        balance: the community balance rows [kWh].
        imp, exp: G⁺, G⁻ within the limits [kWh].
        imp_over, exp_over: energy beyond the import / export limit [kWh]; −1 without one.
    """

    balance: IntArray
    imp: IntArray
    exp: IntArray
    imp_over: IntArray
    exp_over: IntArray

    def read(self, x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """(G⁺, G⁻, import excess, export excess), each (H,) [kWh], of a solution `x`."""
        imp_over, exp_over = column_values(x, self.imp_over), column_values(x, self.exp_over)
        return x[self.imp] + imp_over, x[self.exp] + exp_over, imp_over, exp_over


def add_grid(
    m: LpModel, problem: ScheduleProblem, opts: ScheduleOptions, pen: float, fixed_kwh: FloatArray
) -> GridColumns:
    """G⁺, G⁻ and the excess over their limits (costing `pen` [currency/kWh] extra), and the
    balance rows with the inflexible demand, PV and `fixed_kwh` (H, P) of runs already started
    on the right-hand side."""
    h, dt = problem.n_slots, problem.dt_h
    full = np.ones((h,), dtype=bool)
    retail = np.asarray(problem.retail_price, dtype=np.float64)
    feed_in = np.minimum(np.asarray(problem.feed_in_price, dtype=np.float64), retail)
    imp_ub = np.inf if opts.import_limit_kw is None else opts.import_limit_kw * dt
    exp_ub = np.inf if opts.export_limit_kw is None else opts.export_limit_kw * dt
    gp = m.cols(full, 0.0, imp_ub, retail)
    gm = m.cols(full, 0.0, exp_ub, -feed_in)
    gp_over = m.cols(full & (opts.import_limit_kw is not None), 0.0, np.inf, retail + pen)
    gm_over = m.cols(full & (opts.export_limit_kw is not None), 0.0, np.inf, pen - feed_in)

    net_demand = (problem.base_demand_kwh - problem.pv_kwh).sum(axis=1) + fixed_kwh.sum(axis=1)
    bal = m.rows(full, net_demand, net_demand)
    m.coef(bal, gp, 1.0)
    m.coef(bal, gp_over, 1.0)
    m.coef(bal, gm, -1.0)
    m.coef(bal, gm_over, -1.0)
    return GridColumns(balance=bal, imp=gp, exp=gm, imp_over=gp_over, exp_over=gm_over)
