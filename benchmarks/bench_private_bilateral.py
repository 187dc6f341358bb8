"""Benchmark: the differentially private bilateral market ("bilateral-dp") against ε.

Prints, for one seeded 36-peer book, the welfare loss against the coordinated optimum, the traded
volume and the final primal residual of the private market for ε = 0.1 … 10 per slot and peer
(mean over repeated noise draws), with the same K rounds without noise and the non-private market
("bilateral", ADMM to convergence) as the ε = ∞ rows; then the time per slot of the private and
the non-private market, measured in the same process; and (full mode) the loss against the number
of rounds K at ε = 1 and 10.

    python benchmarks/bench_private_bilateral.py            # 20 noise draws per ε, K sweep
    python benchmarks/bench_private_bilateral.py --quick    # 2 draws per ε, no sweep (tests)

Book: one order per peer, buy or sell with probability ½, 0.05–2 kWh, limit prices uniform in
[feed-in, retail] = [0.05, 0.30] currency/kWh (as in bench_bilateral.py); default parameters
(K = 5 rounds, q̄ = 2 kWh, ε split increasing over the rounds, ρ = 0.1).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from peergrid.markets.base import MarketContext, OrderBook
from peergrid.markets.bilateral.mechanism import clear_bilateral
from peergrid.markets.bilateral.params import BilateralParams
from peergrid.markets.bilateral.private import noise_rng
from peergrid.markets.bilateral.private_mechanism import (
    DEFAULT_EPSILONS,
    EpsilonRow,
    PrivateBilateralParams,
    build_private_problem,
    clear_private_bilateral,
    private_iterations,
    private_result,
    welfare_vs_epsilon,
)

CTX = MarketContext(retail_price=0.30, feed_in_price=0.05)
PEERS = 36
SWEEP_ITERATIONS = (1, 2, 3, 5, 10, 20, 50)
SWEEP_EPSILONS = (1.0, 10.0)


def random_book(n: int, rng: np.random.Generator) -> OrderBook:
    return OrderBook(
        id=np.arange(n, dtype=np.int64),
        participant=np.arange(n, dtype=np.int64),
        side=(rng.random(n) < 0.5).astype(np.int8),
        quantity_kwh=rng.uniform(0.05, 2.0, n),
        price=rng.uniform(CTX.feed_in_price, CTX.retail_price, n),
    )


def best_seconds(call: Callable[[], object], repeats: int) -> float:
    """Best wall-clock time of `repeats` calls after one untimed warm-up [s]."""
    call()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return best


def run(quick: bool = False, seed: int = 1) -> dict[str, Any]:
    """The figures: the ε table, the timings and (not `quick`) the sweep over K."""
    book = random_book(PEERS, np.random.default_rng(seed))
    params = PrivateBilateralParams()
    repeats = 2 if quick else 20
    table = welfare_vs_epsilon(book, CTX, DEFAULT_EPSILONS, repeats, params)

    problem = build_private_problem(book, CTX, params)

    def negotiate() -> object:
        it = private_iterations(problem, params, noise_rng(params.seed, CTX.slot))
        return private_result(problem, it, CTX, params)

    timing_repeats = 3 if quick else 20
    seconds = {
        "private_negotiation_s": best_seconds(negotiate, timing_repeats),
        "private_clear_s": best_seconds(
            lambda: clear_private_bilateral(book, CTX, params), timing_repeats
        ),
        "non_private_clear_s": best_seconds(
            lambda: clear_bilateral(book, CTX, BilateralParams()), timing_repeats
        ),
    }
    sweep: list[tuple[int, list[EpsilonRow]]] = []
    if not quick:
        for k in SWEEP_ITERATIONS:
            swept = PrivateBilateralParams(iterations=k)
            rows = welfare_vs_epsilon(book, CTX, SWEEP_EPSILONS, repeats, swept)
            sweep.append((k, rows[:-1]))  # the non-private row does not depend on K
    return {
        "peers": PEERS,
        "pairs": problem.n_pairs,
        "iterations": params.iterations,
        "clip_kwh": params.clip_kwh,
        "repeats": repeats,
        "table": table,
        "sweep": sweep,
        **seconds,
    }


def _epsilon(row: EpsilonRow) -> str:
    return "∞" if math.isinf(row.epsilon) else f"{row.epsilon:g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 noise draws per ε, no K sweep")
    args = parser.parse_args()
    fig = run(args.quick)
    print(
        f"bilateral-dp: {fig['peers']} peers, {fig['pairs']} pairs, K = {fig['iterations']} "
        f"rounds, q̄ = {fig['clip_kwh']:g} kWh, {fig['repeats']} noise draws per ε"
    )
    print(f"{'ε':>6} {'market':>12} {'welfare loss':>13} {'traded':>10} {'primal res.':>12}")
    for row in fig["table"]:
        print(
            f"{_epsilon(row):>6} {row.kind:>12} {row.welfare_loss_pct:12.1f}% "
            f"{row.traded_kwh:6.2f} kWh {row.primal_residual_kwh:8.2e} kWh"
        )
    print("time per slot (best of repeats, same process):")
    print(f"  private negotiation + commit {1e3 * fig['private_negotiation_s']:8.2f} ms")
    print(f"  private clear (with optimum) {1e3 * fig['private_clear_s']:8.2f} ms")
    print(f"  non-private clear            {1e3 * fig['non_private_clear_s']:8.2f} ms")
    if fig["sweep"]:
        heads = " ".join(f"{'ε = ' + f'{e:g}':>9}" for e in SWEEP_EPSILONS)
        print(f"welfare loss against the rounds K:\n{'K':>4} {heads} {'no noise':>9}")
        for k, rows in fig["sweep"]:
            cells = " ".join(f"{r.welfare_loss_pct:8.1f}%" for r in rows)
            print(f"{k:>4} {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
