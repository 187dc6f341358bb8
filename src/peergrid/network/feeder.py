"""A low-voltage feeder as plain arrays: buses, branches, the radial tree, connection points.

`Feeder` is what every network computation in peergrid works on (power flow, linear model,
envelopes, loss allocation, network charges). It is derived once, at load, from a pandapower
network; nothing downstream touches pandapower objects. Conventions:

- Buses are numbered 0..N-1 in pandapower's bus-index order (`bus_ids` maps back).
- Branches are in-service lines, two-winding transformers and closed bus-bus switches.
  On a radial feeder each branch is oriented away from the slack bus: `branch_from` is the
  parent, `branch_to` the child, and `path[b, n]` says branch b carries bus n's power.
- Impedances are per unit on `S_BASE_MVA` and each bus's nominal voltage.
- Power injected at a bus is positive (export), in kW / kvar; voltages in pu.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from peergrid.errors import InputError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

S_BASE_MVA = 1.0
#: Connection-point types a participant may sit on.
CONNECTION_TYPES = ("household", "commercial", "agricultural", "industrial", "other")


@dataclass(frozen=True, eq=False)
class Feeder:
    """A feeder's topology and electrical data (module docstring for conventions).

    Attributes:
        name: feeder name (built-in name or file name).
        bus_ids: pandapower index of every bus, (N,).
        bus_names: pandapower bus names, (N,).
        vn_kv: nominal voltage of every bus [kV], (N,).
        slack: bus index of the external grid connection.
        v_slack_pu: voltage set point of the external grid [pu].
        v0_pu: no-load voltage of every bus [pu] (slack voltage through transformer ratios), (N,).
        branch_kind: "line", "trafo" or "switch", (B,).
        branch_ids: pandapower index within its table, (B,).
        branch_from / branch_to: parent / child bus of every branch, (B,).
        r_pu / x_pu: series resistance / reactance on S_BASE_MVA [pu], (B,).
        rating_kva: thermal rating [kVA] (inf for switches), (B,).
        path: path[b, n] = branch b lies between the slack and bus n, (B, N).
        conn_bus: bus of every connection point (one per load of the source network), (C,).
        conn_type: type of every connection point (one of CONNECTION_TYPES), (C,).
        conn_name: name of the source load, (C,).
    """

    name: str
    bus_ids: IntArray
    bus_names: NDArray[np.str_]
    vn_kv: FloatArray
    slack: int
    v_slack_pu: float
    v0_pu: FloatArray
    branch_kind: NDArray[np.str_]
    branch_ids: IntArray
    branch_from: IntArray
    branch_to: IntArray
    r_pu: FloatArray
    x_pu: FloatArray
    rating_kva: FloatArray
    path: BoolArray
    conn_bus: IntArray
    conn_type: NDArray[np.str_]
    conn_name: NDArray[np.str_]

    @property
    def n_bus(self) -> int:
        return int(self.bus_ids.size)

    @property
    def n_branch(self) -> int:
        return int(self.branch_ids.size)

    @property
    def lv_buses(self) -> IntArray:
        """Buses below 1 kV: where limits are checked and results are reported."""
        return np.flatnonzero(self.vn_kv < 1.0).astype(np.int64)

    @property
    def branch_labels(self) -> list[str]:
        """Stable branch names for results: "line 12", "trafo 0", "switch 3"."""
        return [f"{k} {i}" for k, i in zip(self.branch_kind, self.branch_ids, strict=True)]

    @property
    def monitored_branches(self) -> IntArray:
        """Branches with a finite rating (lines and transformers)."""
        return np.flatnonzero(np.isfinite(self.rating_kva)).astype(np.int64)


def _connection_type(profile: Any, name: Any) -> str:
    """Type of a load: from SimBench's profile code (H0 household, G commercial, L farm) or
    CIGRE's load names (R residential, I industrial, C commercial); households otherwise."""
    p = str(profile) if isinstance(profile, str) else ""
    if p:
        head = p[0].upper()
        if head == "H":
            return "household"
        if head == "G":
            return "commercial"
        if head == "L":
            return "agricultural"
        if head == "B" or p.lower().startswith("bl"):
            return "other"
    n = str(name) if isinstance(name, str) else ""
    if n.startswith("Load ") and len(n) > 5:
        return {"R": "household", "I": "industrial", "C": "commercial"}.get(n[5], "household")
    return "household"


def _tree(
    n_bus: int, slack: int, frm: IntArray, to: IntArray, source: str
) -> tuple[IntArray, IntArray, BoolArray, IntArray]:
    """Orient branches away from the slack (breadth first) and build the path matrix.

    Returns (parent_bus, child_bus, path, order) with branches re-oriented; raises InputError
    for a meshed or disconnected network, which the radial methods cannot handle.
    """
    n_branch = frm.size
    if n_branch != n_bus - 1:
        kind = "meshed (a loop)" if n_branch >= n_bus else "disconnected"
        raise InputError(
            f"the network is {kind}: {n_bus} buses and {n_branch} closed branches; "
            "peergrid needs a radial feeder (one path from every bus to the external grid)",
            source=source,
        )
    adj: list[list[tuple[int, int]]] = [[] for _ in range(n_bus)]
    for b, (i, j) in enumerate(zip(frm.tolist(), to.tolist(), strict=True)):
        adj[i].append((j, b))
        adj[j].append((i, b))
    parent_branch = np.full(n_bus, -1, dtype=np.int64)
    seen = np.zeros(n_bus, dtype=bool)
    seen[slack] = True
    order = [slack]
    new_from = frm.copy()
    new_to = to.copy()
    head = 0
    while head < len(order):
        u = order[head]
        head += 1
        for v, b in adj[u]:
            if not seen[v]:
                seen[v] = True
                parent_branch[v] = b
                new_from[b], new_to[b] = u, v
                order.append(v)
    if not seen.all():
        raise InputError(
            f"the network is meshed or disconnected: {int((~seen).sum())} bus(es) cannot be "
            "reached from the external grid without a loop",
            source=source,
        )
    path = np.zeros((n_branch, n_bus), dtype=bool)
    for n in order[1:]:  # parents come first in BFS order
        b = int(parent_branch[n])
        parent = int(new_from[b])
        path[:, n] = path[:, parent]
        path[b, n] = True
    return new_from, new_to, path, np.asarray(order, dtype=np.int64)


def _transformer_ratio(trafo: Any, bus_vn: Any) -> FloatArray:
    """Off-nominal voltage ratio (LV side / HV side, in pu) of every transformer, with taps."""
    rated = (trafo.vn_lv_kv.to_numpy(float) / trafo.vn_hv_kv.to_numpy(float)) * (
        bus_vn.loc[trafo.hv_bus].to_numpy(float) / bus_vn.loc[trafo.lv_bus].to_numpy(float)
    )
    step = np.nan_to_num(trafo.tap_step_percent.to_numpy(float)) / 100.0
    pos = np.nan_to_num(trafo.tap_pos.to_numpy(float)) - np.nan_to_num(
        trafo.tap_neutral.to_numpy(float)
    )
    side = trafo.tap_side.astype(object).fillna("hv").to_numpy()
    tap = 1.0 + pos * step
    factor = np.where(side == "lv", tap, 1.0 / tap)
    return np.asarray(rated * factor, dtype=np.float64)


def feeder_from_pandapower(net: Any, name: str, source: str) -> Feeder:
    """Derive a `Feeder` from a pandapower network (balanced model of lines, two-winding
    transformers, closed bus-bus switches and one external grid)."""
    bus = net.bus[net.bus.in_service]
    if len(net.ext_grid[net.ext_grid.in_service]) != 1:
        raise InputError(
            f"the network needs exactly one in-service ext_grid (has {len(net.ext_grid)})",
            source=source,
        )
    for table in ("trafo3w", "gen", "impedance", "dcline", "xward", "ward"):
        if table in net and len(net[table]) and bool(net[table].in_service.any()):
            raise InputError(
                f"network element '{table}' is not supported (lines, two-winding "
                "transformers, bus-bus switches, loads and static generators are)",
                source=source,
            )
    bus_ids = bus.index.to_numpy(np.int64)
    pos = {int(b): i for i, b in enumerate(bus_ids)}
    vn_kv = bus.vn_kv.to_numpy(float)
    ext = net.ext_grid[net.ext_grid.in_service].iloc[0]
    slack = pos[int(ext.bus)]
    v_slack = float(ext.vm_pu)

    sw = net.switch
    open_line = set(sw[(sw.et == "l") & ~sw.closed.astype(bool)].element.astype(int).tolist())
    open_trafo = set(sw[(sw.et == "t") & ~sw.closed.astype(bool)].element.astype(int).tolist())

    kinds: list[str] = []
    ids: list[int] = []
    frm: list[int] = []
    to: list[int] = []
    r: list[float] = []
    x: list[float] = []
    rating: list[float] = []
    ratio_of: dict[int, float] = {}

    line = net.line[net.line.in_service & ~net.line.index.isin(list(open_line))]
    for i, row in zip(line.index.tolist(), line.itertuples(index=False), strict=True):
        vn = float(net.bus.vn_kv.at[row.from_bus])
        z_base = vn**2 / S_BASE_MVA
        par = float(row.parallel)
        kinds.append("line")
        ids.append(int(i))
        frm.append(pos[int(row.from_bus)])
        to.append(pos[int(row.to_bus)])
        r.append(float(row.r_ohm_per_km) * float(row.length_km) / par / z_base)
        x.append(float(row.x_ohm_per_km) * float(row.length_km) / par / z_base)
        rating.append(np.sqrt(3.0) * vn * float(row.max_i_ka) * float(row.df) * par * 1e3)

    trafo = net.trafo[net.trafo.in_service & ~net.trafo.index.isin(list(open_trafo))]
    if len(trafo):
        ratios = _transformer_ratio(trafo, net.bus.vn_kv)
        for k, (i, row) in enumerate(
            zip(trafo.index.tolist(), trafo.itertuples(index=False), strict=True)
        ):
            par = float(row.parallel)
            sn = float(row.sn_mva) * par
            z = float(row.vk_percent) / 100.0 * S_BASE_MVA / sn
            rr = float(row.vkr_percent) / 100.0 * S_BASE_MVA / sn
            kinds.append("trafo")
            ids.append(int(i))
            frm.append(pos[int(row.hv_bus)])
            to.append(pos[int(row.lv_bus)])
            r.append(rr)
            x.append(float(np.sqrt(max(z**2 - rr**2, 0.0))))
            rating.append(sn * 1e3 * float(row.df))
            ratio_of[len(ids) - 1] = float(ratios[k])

    bb = sw[(sw.et == "b") & sw.closed.astype(bool)]
    for i, row in zip(bb.index.tolist(), bb.itertuples(index=False), strict=True):
        kinds.append("switch")
        ids.append(int(i))
        frm.append(pos[int(row.bus)])
        to.append(pos[int(row.element)])
        r.append(0.0)
        x.append(0.0)
        rating.append(np.inf)

    frm_a = np.asarray(frm, dtype=np.int64)
    to_a = np.asarray(to, dtype=np.int64)
    new_from, new_to, path, order = _tree(bus_ids.size, slack, frm_a, to_a, source)

    # no-load voltages: the slack set point carried down through transformer ratios
    v0 = np.zeros(bus_ids.size)
    v0[slack] = v_slack
    parent_branch = np.full(bus_ids.size, -1, dtype=np.int64)
    parent_branch[new_to] = np.arange(new_to.size)
    for n in order[1:].tolist():
        b = int(parent_branch[n])
        v0[n] = v0[new_from[b]] * ratio_of.get(b, 1.0)

    load = net.load[net.load.in_service]
    load = load[load.bus.isin(list(pos))]
    profile = load["profile"] if "profile" in load.columns else [None] * len(load)
    names = load["name"] if "name" in load.columns else [None] * len(load)
    conn_type = [_connection_type(p, n) for p, n in zip(profile, names, strict=True)]
    conn_name = [
        str(n) if isinstance(n, str) and n else f"load {i}"
        for i, n in zip(load.index.tolist(), names, strict=True)
    ]
    return Feeder(
        name=name,
        bus_ids=bus_ids,
        bus_names=np.asarray([str(s) for s in bus.name.tolist()], dtype=np.str_),
        vn_kv=vn_kv,
        slack=slack,
        v_slack_pu=v_slack,
        v0_pu=v0,
        branch_kind=np.asarray(kinds, dtype=np.str_),
        branch_ids=np.asarray(ids, dtype=np.int64),
        branch_from=new_from,
        branch_to=new_to,
        r_pu=np.asarray(r, dtype=np.float64),
        x_pu=np.asarray(x, dtype=np.float64),
        rating_kva=np.asarray(rating, dtype=np.float64),
        path=path,
        conn_bus=np.asarray([pos[int(b)] for b in load.bus.tolist()], dtype=np.int64),
        conn_type=np.asarray(conn_type, dtype=np.str_),
        conn_name=np.asarray(conn_name, dtype=np.str_),
    )
