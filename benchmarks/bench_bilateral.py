"""Benchmark: the decentralized bilateral market (consensus ADMM) per slot.

Targets (issue #3): 100 peers on a complete graph converge in ≤ 10 s per slot; 1,000 peers on a
sparse graph (k = 10 partners each) in ≤ 60 s per slot. Also prints the welfare gap to the
coordinated optimum of the same problem (`solve_centralised`).

    python benchmarks/bench_bilateral.py            # 5 slots complete, 3 slots sparse
    python benchmarks/bench_bilateral.py --quick    # one slot each, for the test suite

Books: one order per peer, buy or sell with probability ½, 0.05–2 kWh, limit prices uniform in
[feed-in, retail] = [0.05, 0.30] currency/kWh; seeded, so every run clears the same books.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from peergrid.markets.base import MarketContext, OrderBook
from peergrid.markets.bilateral.mechanism import build_problem, clear_bilateral
from peergrid.markets.bilateral.params import BilateralParams
from peergrid.markets.bilateral.reference import solve_centralised

CTX = MarketContext(retail_price=0.30, feed_in_price=0.05)
TARGET_S = {"complete": 10.0, "sparse": 60.0}


def random_book(n: int, rng: np.random.Generator) -> OrderBook:
    return OrderBook(
        id=np.arange(n, dtype=np.int64),
        participant=np.arange(n, dtype=np.int64),
        side=(rng.random(n) < 0.5).astype(np.int8),
        quantity_kwh=rng.uniform(0.05, 2.0, n),
        price=rng.uniform(CTX.feed_in_price, CTX.retail_price, n),
    )


def measure(case: str, peers: int, k: int | None, slots: int, seed: int) -> dict[str, float | str]:
    """Clear `slots` random books and return the figures (worst residuals, mean time)."""
    rng = np.random.default_rng(seed)
    params = BilateralParams(partners_k=k)
    seconds = iterations = gap = 0.0
    primal = dual = pairs = 0.0
    converged = 1.0
    for _ in range(slots):
        book = random_book(peers, rng)
        t0 = time.perf_counter()
        result = clear_bilateral(book, CTX, params)
        seconds += time.perf_counter() - t0
        info = result.info
        iterations += info["iterations"]
        primal = max(primal, info["primal_residual"])
        dual = max(dual, info["dual_residual"])
        converged = min(converged, info["converged"])
        pairs = info["n_pairs"]
        # The reference LP's error bound shrinks with the segments squared; 32 keep it far
        # below the ADMM tolerance at the default curvature.
        ref = solve_centralised(build_problem(book, CTX, params), segments=32)
        gap = max(gap, (ref.welfare - info["welfare"]) / ref.welfare)
    return {
        "case": case,
        "peers": float(peers),
        "pairs": pairs,
        "slots": float(slots),
        "seconds_per_slot": seconds / slots,
        "iterations": iterations / slots,
        "primal_residual": primal,
        "dual_residual": dual,
        "converged": converged,
        "welfare_gap": gap,
    }


def run(quick: bool = False) -> list[dict[str, float | str]]:
    """Both cases; `quick` clears one slot each."""
    return [
        measure("complete", 100, None, 1 if quick else 5, seed=1),
        measure("sparse", 1000, 10, 1 if quick else 3, seed=2),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one slot per case")
    args = parser.parse_args()
    for fig in run(args.quick):
        case = str(fig["case"])
        seconds = float(fig["seconds_per_slot"])
        print(
            f"{case:8s} {int(fig['peers']):5d} peers, {int(fig['pairs']):6d} pairs, "
            f"{int(fig['slots'])} slot(s)"
        )
        print(f"  time per slot     {seconds:8.3f} s   (target ≤ {TARGET_S[case]:.0f} s)")
        print(f"  iterations        {float(fig['iterations']):8.0f}")
        print(f"  primal residual   {float(fig['primal_residual']):8.1e} kWh (worst slot)")
        print(f"  dual residual     {float(fig['dual_residual']):8.1e} currency/kWh (worst slot)")
        print(f"  converged         {'yes' if fig['converged'] == 1.0 else 'NO'}")
        print(f"  welfare gap       {float(fig['welfare_gap']):8.1e} (vs coordinated optimum)")
        print("  target met" if seconds <= TARGET_S[case] else "  TARGET MISSED")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
