"""The network as the coordinator's schedule LP sees it: a radial feeder in LinDistFlow form,
and per-participant export / import limits.

`NetworkConstraints` carries what the schedule LP needs to keep a schedule inside the feeder's
limits, as plain arrays: the tree (every branch oriented away from the slack bus, `branch_from`
the parent, `branch_to` the child), branch impedances, the no-load voltages, the limits, and
where each participant is connected (`bus_of`). The LP (`coordination.blocks.lindistflow`)
writes LinDistFlow (Baran & Wu 1989, linearised; the model of `peergrid.network.linear`)
sparsely, with one flow and one voltage variable per branch and slot instead of the dense N×N
sensitivities:

    P_b − Σ_{c child of b} P_c + p_n = 0            flow conservation at bus n = branch_to[b]
    w_n = w_parent + r_b·P_b  (+ x_b·Q_b)            cumulative drop [kW·pu], w_slack = 0
    v_n = v0_n − w_n / (1000·S_BASE_MVA·v0_n)        [pu]

with P_b the active power entering branch b at its parent end [kW] (the network layer's
`p_from_kw`), p_n the bus injection [kW] (export positive). This is exactly
`linearise(feeder).voltage_pu` and `.branch_flow_kw`.

Reactive power (`load_tan_phi`): a participant's import draws tan φ kvar per kW (a load at
power factor cos φ); exports are at unity power factor, so the true injection is
q_n = tan φ·min(p_n, 0). That is concave in p and cannot enter an LP exactly with one voltage
per bus, so the LP keeps two linear voltages from the same flows:

- for the upper limit, q = 0: an upper bound on the voltage (imports only absorb reactive
  power and pull voltages down), exact where no bus imports;
- for the lower limit, q = tan φ·p: exact where every bus imports (the case in which the lower
  limit binds); where some bus exports it credits that export with injected reactive power and
  overestimates the voltage by X·tan φ·p_export.

Both stay bounds when q is drawn per participant (q_n = tan φ·Σ_i min(p_i, 0) at a bus whose
participants import and export). With `load_tan_phi = 0` (default) the two coincide and the LP
keeps one. What the linearisation leaves (losses, the quadratic terms, line charging, the
transformer's magnetising current) is absorbed by `voltage_margin_pu`: the LP holds
v_min + margin ≤ v ≤ v_max − margin. Measured against the AC power flow on SimBench rural 3
(`tests/coordination/test_schedule_network.py`): with exports the AC voltage never exceeds the
linear one (AC − linear in [−1.5e-3, +1e-8] pu: the rise is overestimated); with 3 kW net
import per household at power factor 0.95 the lower-limit voltage is 2.7–3.9e-3 pu above AC,
inside the default margin, while ignoring q would put it 0.02 pu above AC.

Branch limits are on active power: |P_b| ≤ rating_kw = rating_kva · max_loading_pct/100 ·
`rating_margin`. The margin (default 0.95) leaves room for the reactive flow of loads at power
factor 0.95 (|S| = P / 0.95) or, at unity power factor, for a voltage down to 0.95 pu (the
current of a given power grows as 1/v); the AC loading is checked in the tests.

Per-participant limits (`export_limit_kw`, `import_limit_kw`, (T, P) on the run's slot grid,
inf where there is none) bound every participant's net export to [−import, export]·Δt: static
connection caps (`np.full((T, P), cap)`) or dynamic operating envelopes computed by the
network operator. The schedule takes the rows of its horizon (`limits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from peergrid.errors import InputError
from peergrid.network.feeder import S_BASE_MVA, BoolArray, Feeder, FloatArray, IntArray

DEFAULT_V_MIN_PU = 0.94
DEFAULT_V_MAX_PU = 1.10
DEFAULT_VOLTAGE_MARGIN_PU = 0.005
DEFAULT_RATING_MARGIN = 0.95
KW_PER_PU = 1000.0 * S_BASE_MVA
_TOL = 1e-7  # numerical noise in a limit check [pu, or a share of a rating]


@dataclass(frozen=True, eq=False)
class NetworkConstraints:
    """A radial feeder's limits for the schedule LP (module docstring).

    Indices: P participants, N buses, B = N − 1 branches, M monitored buses, K monitored
    branches, T slots of the run.

    Attributes:
        bus_of: bus of every participant, (P,); several may share a bus; a participant at the
            slack bus does not load the feeder.
        slack: the slack (external grid) bus.
        v0_pu: no-load voltage of every bus, (N,) [pu].
        branch_from, branch_to: parent / child bus of every branch, (B,); every bus but the
            slack is the child of exactly one branch.
        r_pu, x_pu: series resistance / reactance on S_BASE_MVA, (B,) [pu].
        monitored_buses: buses whose voltage is limited, (M,).
        monitored_branches: branches whose active power is limited, (K,).
        rating_kw: active-power limit of each monitored branch, (K,) [kW].
        v_min_pu, v_max_pu: voltage limits [pu].
        voltage_margin_pu: the LP holds v_min + margin ≤ v ≤ v_max − margin (linearisation
            error) [pu].
        load_tan_phi: reactive power drawn per kW of import [kvar/kW], ≥ 0.
        export_limit_kw, import_limit_kw: per-participant limits on the run's slot grid,
            (T, P) [kW], inf where none; None for none at all.
    """

    bus_of: IntArray
    slack: int
    v0_pu: FloatArray
    branch_from: IntArray
    branch_to: IntArray
    r_pu: FloatArray
    x_pu: FloatArray
    monitored_buses: IntArray
    monitored_branches: IntArray
    rating_kw: FloatArray
    v_min_pu: float = DEFAULT_V_MIN_PU
    v_max_pu: float = DEFAULT_V_MAX_PU
    voltage_margin_pu: float = DEFAULT_VOLTAGE_MARGIN_PU
    load_tan_phi: float = 0.0
    export_limit_kw: FloatArray | None = None
    import_limit_kw: FloatArray | None = None

    def __post_init__(self) -> None:
        n, b = self.v0_pu.size, self.branch_to.size
        if b != n - 1 or self.branch_from.size != b or self.r_pu.size != b or self.x_pu.size != b:
            raise InputError(f"a radial feeder has N − 1 branches (got {n} buses, {b} branches)")
        if not 0 <= self.slack < n:
            raise InputError(f"slack bus {self.slack} is not one of the {n} buses")
        for name in ("branch_from", "branch_to"):
            idx = getattr(self, name)
            if ((idx < 0) | (idx >= n)).any():
                raise InputError(f"{name} must hold bus indices in [0, {n})")
        parents = np.bincount(self.branch_to, minlength=n) if b else np.zeros(n, np.int64)
        if (parents != np.where(np.arange(n) == self.slack, 0, 1)).any():
            raise InputError("every bus but the slack must be the child of exactly one branch")
        up, steps = np.arange(b), 0
        while up.size and steps < n:  # every bus reaches the slack (no loop off the tree)
            up = self.parent_branch[up]
            up, steps = up[up >= 0], steps + 1
        if up.size:
            raise InputError("the branches form a loop that does not reach the slack bus")
        if ((self.monitored_buses < 0) | (self.monitored_buses >= n)).any() or (
            (self.monitored_branches < 0) | (self.monitored_branches >= b)
        ).any():
            raise InputError("monitored buses / branches must be bus / branch indices")
        if self.bus_of.ndim != 1 or ((self.bus_of < 0) | (self.bus_of >= n)).any():
            raise InputError(f"bus_of must be a (P,) array of bus indices in [0, {n})")
        if self.rating_kw.shape != self.monitored_branches.shape:
            raise InputError("rating_kw must have one entry per monitored branch")
        if (self.rating_kw < 0.0).any():
            raise InputError("rating_kw must be >= 0")
        if not self.v_min_pu + self.voltage_margin_pu < self.v_max_pu - self.voltage_margin_pu:
            raise InputError(
                f"need v_min + margin < v_max − margin (got {self.v_min_pu}, {self.v_max_pu}, "
                f"margin {self.voltage_margin_pu})"
            )
        if self.load_tan_phi < 0.0 or self.voltage_margin_pu < 0.0:
            raise InputError("load_tan_phi and voltage_margin_pu must be >= 0")
        for name in ("export_limit_kw", "import_limit_kw"):
            lim = getattr(self, name)
            if lim is None:
                continue
            if lim.ndim != 2 or lim.shape[1] != self.bus_of.size:
                raise InputError(f"{name} must be (T, P) with P = {self.bus_of.size}")
            if np.isnan(lim).any() or (lim < 0.0).any():
                raise InputError(f"{name} must be >= 0 (inf for no limit)")

    @property
    def n_participants(self) -> int:
        return int(self.bus_of.size)

    @property
    def n_bus(self) -> int:
        return int(self.v0_pu.size)

    @property
    def n_branch(self) -> int:
        return int(self.branch_to.size)

    @cached_property
    def parent_branch(self) -> IntArray:
        """The branch above each branch (whose child is its parent bus), −1 below the slack,
        (B,)."""
        branch_of = np.full(self.n_bus, -1, dtype=np.int64)
        branch_of[self.branch_to] = np.arange(self.n_branch)
        out: IntArray = branch_of[self.branch_from]
        return out

    @cached_property
    def path(self) -> BoolArray:
        """path[b, n]: branch b lies between the slack and bus n, (B, N) (for checks and
        results; the LP itself stays sparse)."""
        up = self.parent_branch
        path = np.zeros((self.n_branch, self.n_bus), dtype=bool)
        below = np.arange(self.n_branch)  # walk every bus's branch up to the slack at once
        cols = self.branch_to.copy()
        while below.size:
            path[below, cols] = True
            keep = up[below] >= 0
            below, cols = up[below][keep], cols[keep]
        return path

    def branch_flow_kw(self, p_inj_kw: FloatArray) -> FloatArray:
        """Lossless active power entering every branch at its parent end for bus injections
        (..., N) [kW] → (..., B) [kW] (the LP's flows; `linear.LinearFeeder.branch_flow_kw`)."""
        out: FloatArray = -(p_inj_kw @ self.path.T.astype(np.float64))
        return out

    def voltage_pu(self, p_from_kw: FloatArray, tan_phi: float = 0.0) -> FloatArray:
        """Linear voltages (..., N) [pu] of branch flows (..., B) [kW] with every bus's
        reactive injection tan_phi·p (the LP's voltages: tan_phi = 0 for the upper limit,
        `load_tan_phi` for the lower)."""
        per_kw = (self.r_pu + tan_phi * self.x_pu)[:, None] * self.path
        w = p_from_kw @ per_kw
        out: FloatArray = self.v0_pu - w / (KW_PER_PU * self.v0_pu)
        return out

    def violated_slots(
        self, p_inj_kw: FloatArray, *, within_pu: float = 0.0, within_frac: float = 0.0
    ) -> BoolArray:
        """Slots (T,) in which bus injections (T, N) [kW] bring a monitored voltage within
        `within_pu` of a limit the LP holds (v_min + margin, v_max − margin) or past it, or a
        monitored branch within `within_frac` of its rating or past it (1e-7 pu, 1e-7·rating
        tolerated)."""
        flow = self.branch_flow_kw(p_inj_kw)
        k = self.monitored_branches
        cap = self.rating_kw * (1.0 - within_frac + _TOL) + _TOL
        over = (np.abs(flow[:, k]) > cap).any(axis=1)
        mon = self.monitored_buses
        v0 = self.v0_pu[mon]
        hi = np.maximum(self.v_max_pu - self.voltage_margin_pu, v0) - within_pu + _TOL
        lo = np.minimum(self.v_min_pu + self.voltage_margin_pu, v0) + within_pu - _TOL
        v_hi = self.voltage_pu(flow)[:, mon]
        v_lo = self.voltage_pu(flow, self.load_tan_phi)[:, mon] if self.load_tan_phi else v_hi
        out = over | (v_hi > hi).any(axis=1) | (v_lo < lo).any(axis=1)
        return np.asarray(out, dtype=bool)

    def limits(self, t0: int, n_slots: int) -> tuple[FloatArray | None, FloatArray | None]:
        """The per-participant (export, import) limits of run slots [t0, t0 + n_slots), each
        (H, P) [kW] or None."""

        def rows(lim: FloatArray | None) -> FloatArray | None:
            if lim is None:
                return None
            if t0 < 0 or t0 + n_slots > lim.shape[0]:
                raise InputError(
                    f"the participant limits cover {lim.shape[0]} slots; the schedule needs "
                    f"slots {t0}..{t0 + n_slots - 1}"
                )
            out: FloatArray = np.asarray(lim[t0 : t0 + n_slots], dtype=np.float64)
            return out

        return rows(self.export_limit_kw), rows(self.import_limit_kw)


def network_constraints(
    feeder: Feeder,
    bus_of: IntArray,
    *,
    v_min_pu: float = DEFAULT_V_MIN_PU,
    v_max_pu: float = DEFAULT_V_MAX_PU,
    max_loading_pct: float = 100.0,
    rating_margin: float = DEFAULT_RATING_MARGIN,
    voltage_margin_pu: float = DEFAULT_VOLTAGE_MARGIN_PU,
    load_tan_phi: float = 0.0,
    monitored_buses: IntArray | None = None,
    export_limit_kw: FloatArray | None = None,
    import_limit_kw: FloatArray | None = None,
) -> NetworkConstraints:
    """The schedule's constraints for participants at `bus_of` on `feeder`.

    Args:
        feeder: a radial feeder (`peergrid.network.feeders.load_network`).
        bus_of: bus of every participant, (P,).
        v_min_pu, v_max_pu: voltage limits [pu].
        max_loading_pct: branch loading limit [% of rating].
        rating_margin: share of the rating left to active power (module docstring) [-].
        voltage_margin_pu: margin inside the voltage limits for the linearisation error [pu].
        load_tan_phi: reactive power per kW of import [kvar/kW].
        monitored_buses: buses whose voltage is limited; None: the feeder's LV buses.
        export_limit_kw, import_limit_kw: per-participant limits, (T, P) [kW], inf for none.

    Raises:
        InputError: inconsistent shapes or limits.
    """
    if not max_loading_pct > 0.0:
        raise InputError(f"max_loading_pct must be > 0 (got {max_loading_pct})")
    if not 0.0 < rating_margin <= 1.0:
        raise InputError(f"rating_margin must be in (0, 1] (got {rating_margin})")
    monitored = (
        feeder.lv_buses if monitored_buses is None else np.asarray(monitored_buses, np.int64)
    )
    monitored = np.unique(monitored[monitored != feeder.slack]).astype(np.int64)
    branches = feeder.monitored_branches
    rating = feeder.rating_kva[branches] * max_loading_pct / 100.0 * rating_margin

    def as_limit(lim: FloatArray | None) -> FloatArray | None:
        return None if lim is None else np.asarray(lim, dtype=np.float64)

    return NetworkConstraints(
        bus_of=np.asarray(bus_of, dtype=np.int64),
        slack=feeder.slack,
        v0_pu=np.asarray(feeder.v0_pu, dtype=np.float64),
        branch_from=np.asarray(feeder.branch_from, dtype=np.int64),
        branch_to=np.asarray(feeder.branch_to, dtype=np.int64),
        r_pu=np.asarray(feeder.r_pu, dtype=np.float64),
        x_pu=np.asarray(feeder.x_pu, dtype=np.float64),
        monitored_buses=monitored,
        monitored_branches=branches,
        rating_kw=np.asarray(rating, dtype=np.float64),
        v_min_pu=v_min_pu,
        v_max_pu=v_max_pu,
        voltage_margin_pu=voltage_margin_pu,
        load_tan_phi=load_tan_phi,
        export_limit_kw=as_limit(export_limit_kw),
        import_limit_kw=as_limit(import_limit_kw),
    )
