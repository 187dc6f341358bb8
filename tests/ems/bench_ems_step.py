"""Measure the average cost of one EMS `step` for P = 100 over a simulated year (not a test).

    .venv/bin/python tests/ems/bench_ems_step.py [--days 365] [--participants 100]
        [--slot-minutes 15] [--flat] [--params '{"replan_h": 6}']

Each participant has PV, a battery, an EV (30 % with v2h), a heat pump and about three
appliance runs a week; time-of-use tariff unless --flat. Only the time inside `step` is counted,
both as wall time and as this thread's CPU time (less disturbed by other processes on a shared
machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from peergrid.ems.base import Forecast, SlotInputs
from peergrid.ems.driver import horizon_slots
from peergrid.ems.registry import make_policy, policy_names
from tests.ems.ems_community import Community, suburb


def time_steps(name: str, params: dict[str, object] | None, comm: Community) -> tuple[float, float]:
    """(wall, cpu) seconds spent in `step` over the whole run."""
    n = comm.assets.n_participants
    policy = make_policy(name, params, n, np.random.default_rng(1))
    p = comm.profiles
    horizon = horizon_slots(policy, comm.dt_h)
    state = policy.init_state(comm.assets)
    wall = cpu = 0.0
    for t in range(comm.n_slots):
        inputs = SlotInputs(
            t=t,
            dt_h=comm.dt_h,
            base_demand_kwh=p.base_demand_kwh[t],
            pv_kwh=p.pv_kwh[t],
            temp_out_c=float(p.temp_out_c[t]),
            ev_plugged=p.ev_plugged[t],
            ev_trip_kwh=p.ev_trip_kwh[t],
            retail_price=float(comm.retail[t]),
            feed_in_price=float(comm.feed_in[t]),
        )
        end = t + horizon
        forecast = Forecast(
            p.base_demand_kwh[t:end],
            p.pv_kwh[t:end],
            p.temp_out_c[t:end],
            p.ev_plugged[t:end],
            comm.retail[t:end],
            comm.feed_in[t:end],
        )
        w0, c0 = time.perf_counter(), time.thread_time()
        state, _ = policy.step(state, inputs, forecast, comm.assets)
        cpu += time.thread_time() - c0
        wall += time.perf_counter() - w0
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--participants", type=int, default=100)
    ap.add_argument("--slot-minutes", type=int, default=15)
    ap.add_argument("--flat", action="store_true", help="flat tariff instead of time-of-use")
    ap.add_argument("--params", default=None, help="policy parameters as JSON")
    ap.add_argument("--policy", default=None, help="one policy (default: all)")
    args = ap.parse_args()
    comm = suburb(args.participants, args.days, args.slot_minutes / 60, tou=not args.flat)
    params = json.loads(args.params) if args.params else None
    for name in [args.policy] if args.policy else policy_names():
        wall, cpu = time_steps(name, params, comm)
        print(
            f"{name:18s} P={args.participants} slots={comm.n_slots}: "
            f"step {wall / comm.n_slots * 1e6:6.1f} µs wall, {cpu / comm.n_slots * 1e6:6.1f} µs "
            f"CPU per slot (total {wall:.2f} s wall)"
        )


if __name__ == "__main__":
    main()
