"""The bilateral market's trading graph: which (seller, buyer) pairs may trade.

Orders on the same side cannot trade with each other (their proposals have the same sign) and a
participant never trades with itself, so the complete graph joins every buy order with every
sell order of another participant. With `partners_k` each peer picks k partners on the other
side (its k cheapest by differentiation cost with a seeded random tie-break, or a seeded random
circulant choice) and a pair exists when either side picked it, so every peer has at least
min(k, size of the other side) partners, less any own orders. Graphs are edge lists of (seller,
buyer) pairs; nothing P×P is stored.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from peergrid.markets.base import FloatArray, IntArray
from peergrid.markets.bilateral.differentiation import Differentiation
from peergrid.markets.bilateral.params import BilateralParams
from peergrid.rng import child_rng

#: Pairs whose costs are evaluated at once when choosing the k cheapest partners.
_CHUNK_PAIRS = 1 << 18


def _circulant_choice(
    n_from: int, n_to: int, k: int, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """Each of n_from nodes picks min(k, n_to) distinct nodes of the other side: node
    perm_from[i] takes k consecutive entries of a random permutation of the other side, starting
    at i·n_to/n_from, so every node of the other side is picked about equally often."""
    k = min(k, n_to)
    perm_from = rng.permutation(n_from)
    perm_to = rng.permutation(n_to)
    begin = (np.arange(n_from, dtype=np.int64) * n_to) // n_from
    picks = (begin[:, None] + np.arange(k, dtype=np.int64)[None, :]) % n_to
    return np.repeat(perm_from, k), perm_to[picks].ravel()


def _cheapest_choice(
    n_from: int,
    n_to: int,
    k: int,
    cost_of: Callable[[IntArray, IntArray], FloatArray],
    rng: np.random.Generator,
) -> tuple[IntArray, IntArray]:
    """Each of n_from nodes picks its min(k, n_to) cheapest nodes of the other side (ties by a
    seeded random key), evaluating the costs in chunks of rows (never n_from × n_to at once)."""
    k = min(k, n_to)
    rows = max(1, _CHUNK_PAIRS // max(n_to, 1))
    out_from: list[IntArray] = []
    out_to: list[IntArray] = []
    to_idx = np.arange(n_to, dtype=np.int64)
    for lo in range(0, n_from, rows):
        hi = min(lo + rows, n_from)
        frm = np.repeat(np.arange(lo, hi, dtype=np.int64), n_to)
        cost = cost_of(frm, np.tile(to_idx, hi - lo)).reshape(hi - lo, n_to)
        # Each node breaks its own ties (equal costs, e.g. no differentiation) at random.
        tie = rng.random(cost.shape)
        order = np.lexsort((tie, cost), axis=-1)[:, :k]
        out_from.append(frm.reshape(hi - lo, n_to)[:, :k].ravel())
        out_to.append(order.ravel())
    return np.concatenate(out_from), np.concatenate(out_to)


def trading_graph(
    params: BilateralParams,
    diff: Differentiation,
    sellers: IntArray,
    buyers: IntArray,
    participant: IntArray,
) -> tuple[IntArray, IntArray]:
    """(seller peer, buyer peer) of every pair, sorted by buyer then seller."""
    n_s, n_b = sellers.size, buyers.size
    k = params.partners_k
    if n_s == 0 or n_b == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if k is None:
        s = np.tile(sellers, n_b)
        b = np.repeat(buyers, n_s)
    else:
        rng = child_rng(params.seed, "bilateral-graph")
        if params.partner_rule == "random":
            b1, s1 = _circulant_choice(n_b, n_s, k, rng)
            s2, b2 = _circulant_choice(n_s, n_b, k, rng)
        else:

            def by_buyer(bi: IntArray, si: IntArray) -> FloatArray:
                seller, buyer = participant[sellers[si]], participant[buyers[bi]]
                cost_s, cost_b = diff.edge_costs(seller, buyer)
                # Own orders can never be partners: rank them last.
                return np.where(seller == buyer, np.inf, cost_s + cost_b)

            b1, s1 = _cheapest_choice(n_b, n_s, k, by_buyer, rng)
            s2, b2 = _cheapest_choice(n_s, n_b, k, lambda si, bi: by_buyer(bi, si), rng)
        key = np.unique(np.concatenate((b1, b2)) * n_s + np.concatenate((s1, s2)))
        b = buyers[key // n_s]
        s = sellers[key % n_s]
    keep = participant[s] != participant[b]
    return s[keep], b[keep]
