"""What the schedule LP's blocks share: the net-export terms that the balance and the feeder's
rows take, the penalty scale, and per-participant arrays from per-asset columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

import numpy as np

from peergrid.assets.params import FloatArray, IntArray
from peergrid.coordination.problem import ScheduleOptions, ScheduleProblem
from peergrid.optim.highs import LpModel, column_values

_MIN_PRICE_SCALE = 0.01  # floor of the price scale of the penalties [currency/kWh]

# A block of a participant's net export: (slot rows, participants, columns, coefficient [kWh
# of net export per unit of the column]), broadcast together; −1 columns are absent.
NetTerm: TypeAlias = tuple[IntArray, IntArray, IntArray, float | FloatArray]


class Penalties(NamedTuple):
    """The scale of the soft constraints' prices (`coordination.schedule`).

    Attributes:
        price_scale: the dearest retail or feed-in price of the horizon, at least 0.01
            [currency/kWh].
        per_kwh: price of a kWh of EV shortfall, unserved trip energy, v2h reserve or limit
            excess [currency/kWh].
    """

    price_scale: float
    per_kwh: float


def penalties(problem: ScheduleProblem, opts: ScheduleOptions) -> Penalties:
    """`penalty_factor` × the dearest price / the EVs' smallest charge efficiency, unless
    `penalty_per_kwh` is given."""
    a = problem.assets
    retail = np.asarray(problem.retail_price, dtype=np.float64)
    price_scale = max(
        float(np.abs(retail).max(initial=0.0)),
        float(np.abs(problem.feed_in_price).max(initial=0.0)),
        _MIN_PRICE_SCALE,
    )
    eta_ev = safe_eta(a.ev.efficiency_charge[(a.ev.capacity_kwh > 0.0) & (a.ev.power_kw > 0.0)])
    pen = (
        float(opts.penalty_per_kwh)
        if opts.penalty_per_kwh is not None
        else opts.penalty_factor * price_scale / float(eta_ev.min(initial=1.0))
    )
    return Penalties(price_scale, pen)


def add_to_balance(m: LpModel, balance: IntArray, terms: list[NetTerm]) -> None:
    """Put a block's net export into the community balance rows (H,), which read
    G⁺ − G⁻ + Σ net export = inflexible net demand (`grid.add_grid`)."""
    for t_idx, _, col, val in terms:
        m.coef(balance[t_idx], col, val)


@dataclass(frozen=True, eq=False)
class StorageColumns:
    """A storage asset's columns (home batteries, EVs), (H, K) for the K participants `who`
    that have one; −1 where absent.

    Attributes:
        who: participants with the asset, (K,).
        charge, discharge: AC-side energy per slot [kWh].
        soc: state of charge at state points 1..H [kWh].
        soc_initial_kwh: every participant's state at point 0, (P,) [kWh].
        terms: the asset's net export, discharge − charge.
    """

    who: IntArray
    charge: IntArray
    discharge: IntArray
    soc: IntArray
    soc_initial_kwh: FloatArray
    terms: list[NetTerm]

    def read(self, x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(charge, discharge) (H, P) [kWh] and the state of charge (H + 1, P) [kWh] of a
        solution `x`."""
        h, p = self.charge.shape[0], self.soc_initial_kwh.size
        return (
            scatter(h, p, self.who, column_values(x, self.charge)),
            scatter(h, p, self.who, column_values(x, self.discharge)),
            states(self.soc_initial_kwh, self.who, column_values(x, self.soc)),
        )


def storage_terms(who: IntArray, charge: IntArray, discharge: IntArray) -> list[NetTerm]:
    """The net export of storage columns (H, K) of participants `who`: discharge − charge."""
    rows_h = np.arange(charge.shape[0])[:, None]
    return [(rows_h, who[None, :], charge, -1.0), (rows_h, who[None, :], discharge, 1.0)]


def safe_eta(eta: FloatArray) -> FloatArray:
    """Efficiencies with 1 where they are 0 (absent assets), so they can divide."""
    out: FloatArray = np.where(eta > 0.0, eta, 1.0).astype(np.float64)
    return out


def scatter(h: int, p: int, cols: IntArray, block: FloatArray) -> FloatArray:
    """An (H, P) array with the (H, K) `block` at participants `cols`, 0 elsewhere."""
    out = np.zeros((h, p))
    out[:, cols] = block
    return out


def states(initial: FloatArray, cols: IntArray, block: FloatArray) -> FloatArray:
    """A state trajectory (H + 1, P): row 0 and the participants outside `cols` at `initial`
    (P,), rows 1..H of `cols` the (H, K) `block`."""
    out = np.empty((block.shape[0] + 1, initial.size))
    out[:] = initial
    out[1:, cols] = block
    return out
