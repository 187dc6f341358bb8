"""Benchmark: every forecaster on `suburb-100-year` (100 households, 35,040 slots) for day-ahead
and intraday-4 gates; time per issue, ml's training and prediction time, and forecast quality.

Targets: ml's training ≤ 60 s for the year; an intraday issue ≤ ~50 µs once prepared.

    python benchmarks/bench_forecast.py            # the year (a few minutes)
    python benchmarks/bench_forecast.py --quick    # 7 days, for the test suite
    python benchmarks/bench_forecast.py --json     # also print the figures as one JSON line
    python benchmarks/bench_forecast.py --lazy     # ml without `prepare` (as before it existed)

A forecaster that prepares its issues (`PreparesIssues`, ml) is prepared with every gate of the
regime first, as the engine does; the prepare time (training, features and predictions of the
base forecasts, the gate updates) is reported apart from the issue loop.

Gate regimes (as `engine/lifecycle.py` calls them):
- day-ahead: one gate per local day D at 12:00 local on D − 1, targets from D's first slot to
  the end of D + 1 (or of the run); scored on D.
- intraday-4: one gate per slot t at t − 4 (1 h on 15-min slots), targets t .. t + 24 h; scored
  on t, i.e. one hour ahead.
Quality: MAE, RMSE and bias per participant (pooled over participants), RMSE of the community
sum, and skill against persistence in the same regime (1 − RMSE / RMSE_persistence).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any

import numpy as np

TARGET_TRAIN_S = 60.0
TARGET_ISSUE_US = 50.0
HISTORY_DAYS = 28
INTRADAY_K = 4
METHODS: tuple[tuple[str, str, dict[str, Any] | None], ...] = (
    ("perfect", "perfect", None),
    ("persistence", "persistence", None),
    ("seasonal-naive (day)", "seasonal-naive", {"period": "day"}),
    ("seasonal-naive (week)", "seasonal-naive", {"period": "week"}),
    ("ml", "ml", None),
)


def build(days: int | None) -> tuple[Any, float, int]:
    """ForecastData for suburb-100-year (optionally cut to `days`), seconds, run days."""
    import peergrid
    from peergrid.engine.community import build_community, build_history
    from peergrid.engine.forecast_data import forecast_data_of
    from peergrid.engine.simulate import resolve_full

    scenario = peergrid.load_scenario("suburb-100-year")
    if days is not None:
        scenario = scenario.model_copy(
            update={"time": scenario.time.model_copy(update={"days": days})}
        )
    scenario = resolve_full(scenario)
    t0 = time.perf_counter()
    community = build_community(scenario, None)
    history = build_history(scenario, HISTORY_DAYS, [])
    data = forecast_data_of(community, history, seed=scenario.seed)
    return data, time.perf_counter() - t0, scenario.time.days


def day_ahead_gates(data: Any) -> list[tuple[int, int, int, int]]:
    """(gate, first, n, scored) per local day of the run: gate 12:00 local the day before."""
    starts = np.flatnonzero((data.local_minute == 0) & (np.arange(data.n_rows) >= data.n_history))
    ends = np.append(starts[1:], data.n_rows)
    noon = np.flatnonzero(data.local_minute == 12 * 60)
    out = []
    for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        gate = int(noon[np.searchsorted(noon, a) - 1])
        end = int(ends[i + 1]) if i + 1 < len(ends) else b
        out.append((gate - data.n_history, a - data.n_history, end - a, b - a))
    return out


def regime_asks(data: Any, regime: str) -> list[tuple[int, int, int, int]]:
    """(gate, first, n, scored) of every issue of a regime, in time order."""
    if regime == "day-ahead":
        return day_ahead_gates(data)
    per_day = round(24.0 / data.dt_h)
    n_slots = data.n_slots
    return [(t - INTRADAY_K, t, min(per_day + 1, n_slots - t), 1) for t in range(n_slots)]


def run_regime(
    data: Any, name: str, params: dict[str, Any] | None, regime: str, *, prepare: bool = True
) -> dict[str, Any]:
    from peergrid.forecast.base import PreparesIssues
    from peergrid.forecast.registry import make_forecaster

    t_build = time.perf_counter()
    f = make_forecaster(name, params, data, seed=1)
    build_s = time.perf_counter() - t_build
    n_slots, n_p = data.n_slots, data.n_participants
    demand = np.empty((n_slots, n_p))
    pv = np.empty((n_slots, n_p))
    asks = regime_asks(data, regime)
    prepare_s = None
    if prepare and isinstance(f, PreparesIssues):
        t_prep = time.perf_counter()
        f.prepare(
            np.array([a[0] for a in asks], dtype=np.int64),
            max(first + n - gate for gate, first, n, _ in asks),
        )
        prepare_s = time.perf_counter() - t_prep
    t0 = time.perf_counter()
    for gate, first, n, scored in asks:
        out = f.issue(gate, first, n)
        demand[first : first + scored] = out.demand_kwh[:scored]
        pv[first : first + scored] = out.pv_kwh[:scored]
    wall = time.perf_counter() - t0
    return {
        "demand": demand,
        "pv": pv,
        "wall_s": wall,
        "build_s": build_s,
        "prepare_s": prepare_s,
        "calls": len(asks),
        "us_per_issue": wall / len(asks) * 1e6,
        "timings": f.timings(),
    }


def run(days: int | None = None, *, prepare: bool = True) -> dict[str, Any]:
    """Measure every method and regime; return the figures (no arrays)."""
    from peergrid.forecast.metrics import error_metrics, ghi_day_ahead_rrmse, skill

    data, data_s, run_days = build(days)
    actual_d = data.demand_kwh[data.n_history :]
    actual_pv = data.pv_kwh[data.n_history :]
    figures: dict[str, Any] = {
        "participants": data.n_participants,
        "slots": data.n_slots,
        "days": run_days,
        "history_days": HISTORY_DAYS,
        "forecast_data_s": round(data_s, 2),
        "ghi_rrmse_day_ahead": round(ghi_day_ahead_rrmse(data), 3),
        "ghi_rrmse_0_24h": round(ghi_day_ahead_rrmse(data, lead_h=(0.0, 24.0)), 3),
        "results": [],
    }
    for regime in ("day-ahead", "intraday-4"):
        ref: dict[str, Any] = {}
        rows = []
        for label, name, params in METHODS:
            r = run_regime(data, name, params, regime, prepare=prepare)
            m_d = error_metrics(r["demand"], actual_d)
            m_pv = error_metrics(r["pv"], actual_pv)
            if name == "persistence":
                ref = {"demand": m_d, "pv": m_pv}
            rows.append((label, r, m_d, m_pv))
        for label, r, m_d, m_pv in rows:
            s_d, s_pv = skill(m_d, ref["demand"]), skill(m_pv, ref["pv"])
            figures["results"].append(
                {
                    "method": label,
                    "regime": regime,
                    "issues": r["calls"],
                    "wall_s": round(r["wall_s"], 3),
                    "build_s": round(r["build_s"], 3),
                    "prepare_s": None if r["prepare_s"] is None else round(r["prepare_s"], 3),
                    "us_per_issue": round(r["us_per_issue"], 1),
                    "timings": {k: round(v, 3) for k, v in r["timings"].items()},
                    "demand": {
                        "mae_kwh": round(m_d.mean_mae_kwh, 4),
                        "rmse_kwh": round(m_d.mean_rmse_kwh, 4),
                        "bias_kwh": round(float(np.mean(m_d.bias_kwh)), 4),
                        "community_rmse_kwh": round(m_d.community_rmse_kwh, 3),
                        "skill": round(s_d.pooled, 3),
                        "community_skill": round(s_d.community, 3),
                    },
                    "pv": {
                        "mae_kwh": round(m_pv.mean_mae_kwh, 4),
                        "rmse_kwh": round(m_pv.mean_rmse_kwh, 4),
                        "bias_kwh": round(float(np.mean(m_pv.bias_kwh)), 4),
                        "community_rmse_kwh": round(m_pv.community_rmse_kwh, 3),
                        "skill": round(s_pv.pooled, 3),
                        "community_skill": round(s_pv.community, 3),
                    },
                }
            )
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return figures


def report(fig: dict[str, Any]) -> None:
    print(
        f"suburb-100-year forecasts ({fig['participants']} households × {fig['slots']} slots, "
        f"{fig['days']} days, {fig['history_days']} days of history)"
    )
    print(f"  ForecastData     {fig['forecast_data_s']:7.2f} s")
    print(
        f"  weather archive  hourly GHI rRMSE {fig['ghi_rrmse_day_ahead']:.3f} at leads "
        f"24-48 h, {fig['ghi_rrmse_0_24h']:.3f} at 0-24 h"
    )
    head = (
        f"  {'method':22s} {'regime':10s} {'prep s':>7s} {'wall s':>8s} {'µs/issue':>9s} | "
        f"{'dem MAE':>8s} {'RMSE':>7s} {'bias':>7s} {'comm':>6s} {'skill':>6s} | "
        f"{'PV MAE':>7s} {'RMSE':>7s} {'bias':>7s} {'comm':>6s} {'skill':>6s}"
    )
    print(head)
    for r in fig["results"]:
        d, p = r["demand"], r["pv"]
        prep = "" if r["prepare_s"] is None else f"{r['prepare_s']:.2f}"
        print(
            f"  {r['method']:22s} {r['regime']:10s} {prep:>7s} {r['wall_s']:8.2f} "
            f"{r['us_per_issue']:9.1f} | "
            f"{d['mae_kwh']:8.4f} {d['rmse_kwh']:7.4f} {d['bias_kwh']:7.4f} "
            f"{d['community_rmse_kwh']:6.2f} {d['skill']:6.3f} | "
            f"{p['mae_kwh']:7.4f} {p['rmse_kwh']:7.4f} {p['bias_kwh']:7.4f} "
            f"{p['community_rmse_kwh']:6.2f} {p['skill']:6.3f}"
        )
    for r in fig["results"]:
        if r["method"] == "ml":
            t = r["timings"]
            # the gate update: all of an issue once prepared; lazily, what is left of the issue
            # time once base forecasts exist
            update_s = t["issue_s"]
            if r["prepare_s"] is None:
                update_s -= t["train_s"] + t["features_s"] + t["predict_s"]
            where = "lazily" if r["prepare_s"] is None else f"prepare {t['prepare_s']:.1f} s:"
            print(
                f"  ml {r['regime']:10s}: {where} train {t['train_s']:.1f} s (target ≤ "
                f"{TARGET_TRAIN_S:.0f} s), features {t['features_s']:.1f} s, predict "
                f"{t['predict_s']:.1f} s; gate updates {update_s / r['issues'] * 1e6:.0f} µs per "
                f"issue (target ≤ {TARGET_ISSUE_US:.0f}); {t['models']:.0f} models, "
                f"{t['fallback_issues']:.0f} fallback issues"
            )
    print(f"  peak memory {fig['peak_rss_mb']:.0f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="7 days instead of a year")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--lazy", action="store_true", help="do not prepare ml's issues")
    args = parser.parse_args()
    fig = run(7 if args.quick else None, prepare=not args.lazy)
    report(fig)
    if args.json:
        print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
