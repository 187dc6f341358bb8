"""Fingerprints of the parts 1-3 engine's runs, for the lifecycle's regression cases."""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, "/tmp/refpkg")
import peergrid_ref as pg

SERIES = [
    "demand_kwh",
    "generation_kwh",
    "net_kwh",
    "grid_import_kwh",
    "grid_export_kwh",
    "p2p_bought_kwh",
    "p2p_sold_kwh",
    "cost",
    "battery_soc_end_kwh",
    "ev_soc_end_kwh",
    "battery_charge_kwh",
    "thermal_kwh",
    "shiftable_kwh",
    "baseline_cost",
]


def fingerprint(r):
    out = {}
    rng = np.random.default_rng(7)
    for name in SERIES:
        a = np.nan_to_num(r.series(name))
        idx = rng.integers(0, a.size, 16)
        out[name] = {
            "sum": float(a.sum()),
            "abs_sum": float(np.abs(a).sum()),
            "sum_sq": float((a * a).sum()),
            "at": [int(i) for i in idx],
            "values": [float(v) for v in a.ravel()[idx]],
        }
    return out


cases = [
    (m, "demo", 7)
    for m in [
        "sdr",
        "mmr",
        "bill-sharing",
        "uniform",
        "pay-as-bid",
        "k-double",
        "mcafee",
        "cda",
        "stackelberg",
        "coordinated",
    ]
] + [("bilateral", "demo", 2), ("sdr", "high-pv", 7)]
for market, name, days in cases:
    sc = pg.load_scenario(name)
    sc = sc.model_copy(update={"time": sc.time.model_copy(update={"days": days})})
    r = pg.simulate(sc, market=market)
    key = f"{name}-{market}" + ("" if days == 7 else f"-{days}d")
    json.dump(
        {
            "generated_by": "peergrid abc2c68 (the parts 1-3 one-call slot step)",
            "scenario": name,
            "market": market,
            "days": days,
            "total": r.summary["cost"]["total"],
            "series": fingerprint(r),
            "bill": [float(x) for x in r.participants["bill"]],
        },
        Path(f"{key}.json").open("w"),  # noqa: SIM115 - closed at exit
        indent=1,
    )
    print(key, r.summary["cost"]["total"])
