"""Benchmark: clearing one book, and community pricing over a year of slots (issue #3).

Targets:
- uniform-price clearing of 1,000,000 random orders in <= 10x the time numpy needs to sort
  1,000,000 random floats on the same machine (the ratio is printed);
- SDR, MMR and bill-sharing prices for 1,000 participants x 35,040 slots in <= 5 s each, computed
  over all slots at once from a (T, P) net array: totals per slot, then the price functions.

    python benchmarks/bench_clear.py           # full size, prints the figures
    python benchmarks/bench_clear.py --quick   # small sizes, for the test suite
    python benchmarks/bench_clear.py --json    # the figures as one JSON line

Times are the best of a few repeats (wall clock, `time.perf_counter`); building the inputs is not
timed. The clearing and the sort it is compared with are timed alike: one untimed warm-up call
each, then the same number of calls, alternating between the two so that other work on the
machine slows both alike, and the best of each. The pay-as-bid and k-double auctions, which reuse
the uniform matching, are timed alongside for reference.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from peergrid.markets.base import OrderBook
from peergrid.markets.bill_sharing import (
    bill_sharing_bills,
    bill_sharing_prices_from_totals,
    bill_sharing_slot_prices,
    net_totals,
)
from peergrid.markets.k_double import clear_k_double
from peergrid.markets.mmr import mmr_prices
from peergrid.markets.pay_as_bid import clear_pay_as_bid
from peergrid.markets.sdr import sdr_prices, supply_demand_ratio
from peergrid.markets.uniform import clear_uniform

TARGET_RATIO = 10.0
TARGET_COMMUNITY_S = 5.0

FULL = {"n_orders": 1_000_000, "n_participants": 1_000, "n_slots": 35_040, "repeat": 3}
QUICK = {"n_orders": 20_000, "n_participants": 50, "n_slots": 960, "repeat": 2}
#: Timed calls of the clearing and of the sort for the ratio (each), full and quick.
RATIO_REPEAT = {"full": 7, "quick": 3}


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of `repeat` calls [s]."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def best_times_alternating(fns: list[Callable[[], object]], repeat: int) -> list[float]:
    """Best wall time of each function [s]: one untimed warm-up call each, then `repeat` rounds
    that call every function once, in turn."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def random_book(n_orders: int, rng: np.random.Generator) -> OrderBook:
    """Half bids, half asks on one shared price range, quantities up to 5 kWh."""
    return OrderBook(
        id=np.arange(n_orders, dtype=np.int64),
        participant=np.arange(n_orders, dtype=np.int64),
        side=rng.integers(0, 2, n_orders).astype(np.int8),
        quantity_kwh=rng.uniform(0.0, 5.0, n_orders),
        price=rng.uniform(0.05, 0.35, n_orders),
    )


def bench_auctions(
    n_orders: int, repeat: int, ratio_repeat: int, seed: int = 1
) -> dict[str, float]:
    """Uniform clearing of `n_orders` random orders against numpy sorting as many floats (the
    best of `ratio_repeat` alternating calls each), and the other auctions (best of `repeat`)."""
    rng = np.random.default_rng(seed)
    book = random_book(n_orders, rng)
    floats = rng.random(n_orders)
    sort_s, uniform_s = best_times_alternating(
        [lambda: np.sort(floats), lambda: clear_uniform(book)], ratio_repeat
    )
    return {
        "ratio_repeat": ratio_repeat,
        "sort_s": sort_s,
        "uniform_s": uniform_s,
        "uniform_over_sort": uniform_s / sort_s,
        "pay_as_bid_s": best_time(lambda: clear_pay_as_bid(book), repeat),
        "k_double_s": best_time(lambda: clear_k_double(book, 0.5), repeat),
    }


def bench_community(
    n_participants: int, n_slots: int, repeat: int, seed: int = 2
) -> dict[str, float]:
    """SDR, MMR and bill sharing from a (T, P) net array, each timed from the array."""
    rng = np.random.default_rng(seed)
    net = rng.normal(0.0, 0.5, (n_slots, n_participants))  # [kWh] per slot, export positive
    retail = rng.uniform(0.20, 0.40, n_slots)  # time-varying tariffs [currency/kWh]
    feed_in = rng.uniform(0.02, 0.08, n_slots)

    def sdr() -> object:
        totals = net_totals(net)
        return sdr_prices(
            supply_demand_ratio(totals.total_sell_kwh, totals.total_buy_kwh), retail, feed_in
        )

    def mmr() -> object:
        totals = net_totals(net)
        return mmr_prices(totals.total_sell_kwh, totals.total_buy_kwh, retail, feed_in)

    def bill_sharing() -> object:
        # the period prices and every participant's bill, plus the provisional per-slot prices
        totals = net_totals(net)
        bill_sharing_prices_from_totals(
            totals.total_sell_kwh, totals.total_buy_kwh, retail, feed_in
        )
        bill_sharing_slot_prices(totals.total_sell_kwh, totals.total_buy_kwh, retail, feed_in)
        return bill_sharing_bills(net, retail, feed_in)

    return {
        "net_array_mb": net.nbytes / 2**20,
        "totals_s": best_time(lambda: net_totals(net), repeat),
        "sdr_s": best_time(sdr, repeat),
        "mmr_s": best_time(mmr, repeat),
        "bill_sharing_s": best_time(bill_sharing, repeat),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Run every measurement and return the figures (sizes, seconds, ratio, targets met)."""
    size = QUICK if quick else FULL
    figures: dict[str, Any] = {"quick": quick, **size}
    ratio_repeat = RATIO_REPEAT["quick" if quick else "full"]
    figures |= bench_auctions(size["n_orders"], size["repeat"], ratio_repeat)
    figures |= bench_community(size["n_participants"], size["n_slots"], size["repeat"])
    figures["ratio_target_met"] = figures["uniform_over_sort"] <= TARGET_RATIO
    figures["community_target_met"] = all(
        figures[k] <= TARGET_COMMUNITY_S for k in ("sdr_s", "mmr_s", "bill_sharing_s")
    )
    return figures


def _print(figures: dict[str, Any]) -> None:
    n = figures["n_orders"]
    ratio = figures["uniform_over_sort"]
    verdict = "met" if figures["ratio_target_met"] else "NOT met"
    print(
        f"RATIO uniform clearing / numpy sort = {ratio:.2f}x  "
        f"(target <= {TARGET_RATIO:.0f}x: {verdict})"
    )
    print(f"  uniform clearing, {n:,} orders: {figures['uniform_s'] * 1e3:8.1f} ms")
    print(f"  numpy sort, {n:,} float64:      {figures['sort_s'] * 1e3:8.1f} ms")
    print(f"  (best of {figures['ratio_repeat']} alternating calls each, after one warm-up call)")
    print(f"pay-as-bid, {n:,} orders:        {figures['pay_as_bid_s'] * 1e3:8.1f} ms")
    print(f"k-double, {n:,} orders:          {figures['k_double_s'] * 1e3:8.1f} ms")
    p, t = figures["n_participants"], figures["n_slots"]
    print(
        f"community pricing, {p:,} participants x {t:,} slots ({figures['net_array_mb']:.0f} MB):"
    )
    print(f"  totals per slot:  {figures['totals_s']:6.2f} s")
    for key, label in (("sdr_s", "SDR"), ("mmr_s", "MMR"), ("bill_sharing_s", "bill sharing")):
        print(f"  {label + ':':17} {figures[key]:6.2f} s  (target <= {TARGET_COMMUNITY_S:.0f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for the test suite")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = run(quick=args.quick)
    if args.json:
        print(json.dumps(figures))
    else:
        _print(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
