"""The bilateral market's reference: the centralised (coordinated) welfare optimum of one slot's
problem, against which the decentralised algorithms' welfare gap is measured.

Reciprocity is a hard constraint here and the peers' quadratic costs are replaced by chords on a
grid, so HiGHS solves one LP (`optim.highs`) and the optimum comes with a certified error bound
(`solve_centralised`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from peergrid.markets.base import FloatArray
from peergrid.markets.bilateral.mechanism import BilateralProblem
from peergrid.optim.highs import LpModel, solve_optimal


class CentralisedSolution(NamedTuple):
    """The coordinated optimum of a `BilateralProblem`.

    Attributes:
        trade_kwh: volume of each pair [kWh], (n_pairs,).
        price: dual of each pair's reciprocity constraint [currency/kWh], (n_pairs,).
        welfare: `BilateralProblem.welfare(trade_kwh)` [currency].
        welfare_bound: the optimum's welfare is within [welfare, welfare + welfare_bound]
            [currency].
    """

    trade_kwh: FloatArray
    price: FloatArray
    welfare: float
    welfare_bound: float


def solve_centralised(problem: BilateralProblem, segments: int = 256) -> CentralisedSolution:
    """The coordinated optimum of `problem`: one LP over all proposals, solved by HiGHS (simplex).

    Columns: the seller's and the buyer's volume of every pair (t_s, t_b ≥ 0) and, per peer,
    `segments` equal pieces w_nj ∈ [0, q_n/M] of its total T_n. Rows: reciprocity t_s − t_b = 0
    (P_sb + P_bs = 0, whose dual is the pair's price) and Σ_j w_nj − Σ_edges t = 0. Objective:
    Σ_n Σ_j (σ_n·b_n + a·h_n·(j + ½))·w_nj + Σ c·t, i.e. ½·a·T² replaced by its chords on the grid
    h_n = q_n/M. The cost is convex, so the pieces fill in order, and the chords overestimate
    ½·a·T² by at most a·h_n²/8: the LP optimum is feasible for the true problem and its welfare
    (evaluated exactly) is within `welfare_bound` = Σ_n a·h_n²/8 of the true optimum.

    (HiGHS's QP solver, the obvious choice, returns "Solve error" or stalls on many of these
    problems because the Hessian is zero on the edge columns; the simplex method does not.)
    """
    n_pairs = problem.n_pairs
    n_peers = problem.limit_price.size
    if n_pairs == 0:
        return CentralisedSolution(np.zeros(0), np.zeros(0), 0.0, 0.0)
    m = segments
    signed = np.where(problem.is_seller, problem.limit_price, -problem.limit_price)
    step = problem.quantity_kwh / m
    midpoint = (np.arange(m) + 0.5)[None, :]
    piece_cost = signed[:, None] + (problem.curvature * step)[:, None] * midpoint

    model = LpModel()
    every_pair = np.ones(n_pairs, dtype=bool)
    t_s = model.cols(every_pair, 0.0, np.inf, problem.cost_seller)
    t_b = model.cols(every_pair, 0.0, np.inf, problem.cost_buyer)
    piece = model.cols(np.ones((n_peers, m), dtype=bool), 0.0, step[:, None], piece_cost)
    reciprocity = model.rows(every_pair, 0.0, 0.0)
    total = model.rows(np.ones(n_peers, dtype=bool), 0.0, 0.0)
    # t_s has +1 in its reciprocity row and −1 in its seller's total row; t_b has −1 and −1
    # (buyer's row); every piece w_nj has +1 in its peer's total row.
    model.coef(reciprocity, t_s, 1.0)
    model.coef(total[problem.pair_seller], t_s, -1.0)
    model.coef(reciprocity, t_b, -1.0)
    model.coef(total[problem.pair_buyer], t_b, -1.0)
    model.coef(total[:, None], piece, 1.0)
    solution = solve_optimal(model.lp()[0], {"solver": "simplex"})
    col = solution.col_value
    # t_s = t_b up to the LP's feasibility tolerance; the minimum keeps every peer within q.
    trade = np.maximum(np.minimum(col[:n_pairs], col[n_pairs : 2 * n_pairs]), 0.0)
    price = solution.row_dual[:n_pairs]
    bound = float(np.sum(problem.curvature * step * step) / 8.0)
    return CentralisedSolution(
        trade_kwh=trade, price=price, welfare=problem.welfare(trade), welfare_bound=bound
    )
