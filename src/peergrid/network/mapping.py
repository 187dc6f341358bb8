"""Which bus every participant sits on.

Explicitly (`[network.buses]`: participant name → pandapower bus index) or automatically and
deterministically from the scenario seed: participants (households) are placed on the feeder's
household connection points (loads of type household, e.g. SimBench's H0 profiles or CIGRE's
residential loads) in a seeded random order; when there are more participants than points, the
order repeats, so a point may serve several households (an apartment building). Commercial,
agricultural and industrial connection points are not used for households.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from peergrid.errors import InputError
from peergrid.network.feeder import Feeder, IntArray
from peergrid.rng import child_rng


def household_points(feeder: Feeder) -> IntArray:
    """Buses of the household connection points (with repeats where a bus has several);
    all LV buses but the slack's where the feeder names no household loads."""
    points = feeder.conn_bus[feeder.conn_type == "household"]
    if points.size == 0:
        points = np.setdiff1d(feeder.lv_buses, [feeder.slack])
    return np.asarray(points, dtype=np.int64)


def assign_buses(
    feeder: Feeder, names: Sequence[str], explicit: Mapping[str, int], seed: int
) -> IntArray:
    """Bus index (into the feeder's buses) of every participant, (P,)."""
    pos = {int(b): i for i, b in enumerate(feeder.bus_ids)}
    lv = set(feeder.lv_buses.tolist())
    known = set(names)
    out = np.full(len(names), -1, dtype=np.int64)
    for name, bus in explicit.items():
        field = f"network.buses.{name}"
        if name not in known:
            raise InputError(f"{field}: no participant of that name")
        if bus not in pos:
            raise InputError(f"{field}: the network has no bus {bus}")
        if pos[bus] not in lv:
            raise InputError(f"{field}: bus {bus} is not a low-voltage bus")
        out[names.index(name)] = pos[bus]
    free = np.flatnonzero(out < 0)
    if free.size:
        points = household_points(feeder)
        if points.size == 0:
            raise InputError(f"network: feeder {feeder.name} has no bus to connect households to")
        order = child_rng(seed, "network-buses").permutation(points.size)
        out[free] = points[order[np.arange(free.size) % points.size]]
    return out
