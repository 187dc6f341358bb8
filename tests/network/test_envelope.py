"""Dynamic operating envelopes: the corners hold in pandapower's AC power flow, every point
inside the envelopes holds in the fast AC power flow, the allocation is fair and tight, and
the level search agrees with a brute-force search on the linear model."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.errors import InputError
from peergrid.network.envelope import (
    Envelopes,
    fair_level_kw,
    operating_envelopes,
    static_envelopes,
)
from peergrid.network.feeder import Feeder
from peergrid.network.feeders import load_network
from peergrid.network.linear import LinearFeeder, linearise
from peergrid.network.powerflow import FlowResult, PgmPowerFlow, pandapower_flow

V_MIN, V_MAX, LOADING, PF = 0.94, 1.10, 100.0, 0.95
TAN_PHI = float(np.sqrt(1.0 / PF**2 - 1.0))
N_SLOTS = 24
QUIET = 3  # the first slots have tiny capabilities: the network never binds there


@dataclass(frozen=True, eq=False)
class Case:
    name: str
    net: object
    feeder: Feeder
    lin: LinearFeeder
    flow: PgmPowerFlow
    bus_of: np.ndarray
    export_cap_kw: np.ndarray
    import_cap_kw: np.ndarray
    env: Envelopes

    def injections(self, p_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Participants' net exports (S, P) → bus injections: exports at unity power factor,
        imports at the load power factor."""
        onehot = np.zeros((self.bus_of.size, self.feeder.n_bus))
        onehot[np.arange(self.bus_of.size), self.bus_of] = 1.0
        return p_kw @ onehot, np.minimum(p_kw, 0.0) * TAN_PHI @ onehot


@cache
def case(name: str) -> Case:
    """A random community on a built-in feeder: rural3 with high PV at the far ends (voltage
    binds), the Kerber village on all its loads (transformer and cables bind)."""
    net, feeder = load_network(name)
    lin = linearise(feeder)
    rng = np.random.default_rng(3)
    if name == "simbench-lv-rural3":
        conn = np.unique(feeder.conn_bus)
        far = np.argsort(lin.dv_dp_pu_per_kw[conn, conn])[-40:]
        bus_of = np.concatenate([conn[far], conn[far[-5:]]])  # some buses host two
    else:
        bus_of = feeder.conn_bus.copy()
    n = bus_of.size
    export_cap = rng.uniform(0.0, 25.0, (N_SLOTS, n)) * (rng.random((N_SLOTS, n)) > 0.2)
    import_cap = rng.uniform(0.0, 20.0, (N_SLOTS, n)) * (rng.random((N_SLOTS, n)) > 0.2)
    export_cap[:QUIET] *= 0.02
    import_cap[:QUIET] *= 0.02
    flow = PgmPowerFlow(feeder, net)
    env = operating_envelopes(
        feeder,
        lin,
        flow,
        bus_of,
        export_cap,
        import_cap,
        v_min_pu=V_MIN,
        v_max_pu=V_MAX,
        max_loading_pct=LOADING,
        load_power_factor=PF,
    )
    return Case(name, net, feeder, lin, flow, bus_of, export_cap, import_cap, env)


FEEDERS = ["simbench-lv-rural3", "kerber-dorfnetz"]


def _assert_within_limits(c: Case, res: FlowResult, what: str) -> None:
    v = res.v_pu[:, c.feeder.lv_buses]
    loading = res.loading_pct[:, c.feeder.monitored_branches]
    assert res.converged.all(), what
    assert v.max() <= V_MAX + 1e-9, (what, v.max())
    assert v.min() >= V_MIN - 1e-9, (what, v.min())
    assert loading.max() <= LOADING + 1e-9, (what, loading.max())


def _robust_loading_pct(c: Case, res: FlowResult) -> np.ndarray:
    """Loading if the branch's apparent power flowed at v_min (the thermal rows' measure in
    the export corner), (S, B_mon)."""
    mon = c.feeder.monitored_branches
    v_end = np.maximum(res.v_pu[:, c.feeder.branch_from[mon]], res.v_pu[:, c.feeder.branch_to[mon]])
    out: np.ndarray = res.loading_pct[:, mon] * v_end / V_MIN
    return out


# --------------------------------------------------------------------------------------------
# (a) the corners, in pandapower's Newton-Raphson


@pytest.mark.parametrize("name", FEEDERS)
def test_corners_hold_in_pandapower(name: str) -> None:
    c = case(name)
    env = c.env
    assert env.unresolved_slots == 0 and env.ac_rounds >= 1
    # pandapower is slow: the tightest export and import slots and one quiet slot
    slots = np.unique([np.argmin(env.export_level_kw), np.argmin(env.import_level_kw), 0])
    for sign, limit in ((1.0, env.export_kw), (-1.0, env.import_kw)):
        p, q = c.injections(sign * limit[slots])
        res = pandapower_flow(c.feeder, c.net, p, q)
        _assert_within_limits(c, res, f"{name} {'export' if sign > 0 else 'import'} corner")
    # the diagnostics are the fast AC's view of the same corners
    p, q = c.injections(env.export_kw)
    assert env.worst_v_max_pu == pytest.approx(
        c.flow.run(p, q).v_pu[:, c.feeder.lv_buses].max(), abs=1e-12
    )
    p, q = c.injections(-env.import_kw)
    assert env.worst_v_min_pu == pytest.approx(
        c.flow.run(p, q).v_pu[:, c.feeder.lv_buses].min(), abs=1e-12
    )


# --------------------------------------------------------------------------------------------
# (b) every point inside the envelopes, in the fast AC power flow


@pytest.mark.parametrize("name", FEEDERS)
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_points_inside_the_envelopes_hold(name: str, seed: int) -> None:
    c = case(name)
    rng = np.random.default_rng(seed)
    n_points = 150
    slot = rng.integers(0, N_SLOTS, n_points)
    exp, imp = c.env.export_kw[slot], c.env.import_kw[slot]
    # half uniform inside the box, half on its vertices (each participant at one bound)
    u = rng.random(exp.shape)
    vertex = np.where(rng.random(exp.shape) < 0.5, 1.0, 0.0)
    w = np.where(np.arange(n_points)[:, None] < n_points // 2, u, vertex)
    p_kw = -imp + w * (exp + imp)
    p, q = c.injections(p_kw)
    _assert_within_limits(c, c.flow.run(p, q), f"{name} seed {seed}")


# --------------------------------------------------------------------------------------------
# (c) where the network does not bind, the envelope is the capability


@pytest.mark.parametrize("name", FEEDERS)
def test_capability_where_the_network_does_not_bind(name: str) -> None:
    c = case(name)
    env = c.env
    assert np.isinf(env.export_level_kw[:QUIET]).all()
    assert np.isinf(env.import_level_kw[:QUIET]).all()
    free_e = np.isinf(env.export_level_kw)
    free_i = np.isinf(env.import_level_kw)
    np.testing.assert_array_equal(env.export_kw[free_e], c.export_cap_kw[free_e])
    np.testing.assert_array_equal(env.import_kw[free_i], c.import_cap_kw[free_i])
    # with limits nothing can reach, everything is the capability
    loose = operating_envelopes(
        c.feeder,
        c.lin,
        c.flow,
        c.bus_of,
        c.export_cap_kw,
        c.import_cap_kw,
        v_min_pu=0.01,
        v_max_pu=9.0,
        max_loading_pct=1e6,
    )
    np.testing.assert_array_equal(loose.export_kw, c.export_cap_kw)
    np.testing.assert_array_equal(loose.import_kw, c.import_cap_kw)
    assert np.isinf(loose.export_level_kw).all() and loose.ac_rounds == 1


# --------------------------------------------------------------------------------------------
# (d) fair where binding: one level, capped by capability, and tight


@pytest.mark.parametrize("name", FEEDERS)
def test_binding_envelopes_are_equal_capped_and_tight(name: str) -> None:
    c = case(name)
    env = c.env
    for level, limit, cap in (
        (env.export_level_kw, env.export_kw, c.export_cap_kw),
        (env.import_level_kw, env.import_kw, c.import_cap_kw),
    ):
        binding = np.flatnonzero(np.isfinite(level))
        assert binding.size >= N_SLOTS // 2, "the test community should stress the feeder"
        for t in binding:
            above = cap[t] > level[t]
            assert above.any()  # someone is held back, else the level would be +inf
            np.testing.assert_array_equal(limit[t, above], level[t])
            np.testing.assert_array_equal(limit[t, ~above], cap[t, ~above])
            assert (limit[t, cap[t] == 0.0] == 0.0).all()
    # tight: in every binding slot the corner is at a limit (within 2e-3 pu or 2 %)
    binding = np.flatnonzero(np.isfinite(env.export_level_kw))
    res = c.flow.run(*c.injections(env.export_kw[binding]))
    at_limit = (res.v_pu[:, c.feeder.lv_buses].max(axis=1) >= V_MAX - 2e-3) | (
        _robust_loading_pct(c, res).max(axis=1) >= LOADING - 2.0
    )
    assert at_limit.all(), binding[~at_limit]
    binding = np.flatnonzero(np.isfinite(env.import_level_kw))
    res = c.flow.run(*c.injections(-env.import_kw[binding]))
    at_limit = (res.v_pu[:, c.feeder.lv_buses].min(axis=1) <= V_MIN + 2e-3) | (
        res.loading_pct[:, c.feeder.monitored_branches].max(axis=1) >= LOADING - 2.0
    )
    assert at_limit.all(), binding[~at_limit]


@pytest.mark.parametrize("name", FEEDERS)
def test_linear_level_matches_brute_force_bisection(name: str) -> None:
    """With no AC rounds the level is the linear model's: compare with a plain bisection on
    E that evaluates `LinearFeeder.voltage_pu` and `branch_flow_kw` directly."""
    c = case(name)
    env = operating_envelopes(
        c.feeder, c.lin, c.flow, c.bus_of, c.export_cap_kw, c.import_cap_kw, max_ac_rounds=0
    )
    assert env.ac_rounds == 0 and np.isnan(env.worst_v_max_pu)
    lv, mon = c.feeder.lv_buses, c.feeder.monitored_branches
    s_max = c.feeder.rating_kva[mon] * LOADING / 100.0 * V_MIN

    def fits(e: np.ndarray, cap: np.ndarray, sign: float) -> np.ndarray:
        p, q = c.injections(sign * np.minimum(cap, e[:, None]))
        v = c.lin.voltage_pu(p, q)[:, lv]
        s = np.abs(c.lin.branch_flow_kw(p)[:, mon]) / (1.0 if sign > 0 else PF)
        ok_v = (v <= V_MAX).all(axis=1) if sign > 0 else (v >= V_MIN).all(axis=1)
        return np.asarray(ok_v & (s <= s_max).all(axis=1))

    for level, cap, sign in (
        (env.export_level_kw, c.export_cap_kw, 1.0),
        (env.import_level_kw, c.import_cap_kw, -1.0),
    ):
        assert (np.isinf(level) == fits(np.full(N_SLOTS, np.inf), cap, sign)).all()
        b = np.isfinite(level)
        lo, hi = np.zeros(b.sum()), cap[b].max(axis=1)
        for _ in range(60):
            mid = (lo + hi) / 2
            ok = fits(mid, cap[b], sign)
            lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
        np.testing.assert_allclose(level[b], lo, rtol=1e-9)


@pytest.mark.parametrize("name", FEEDERS)
def test_only_checked_envelopes_are_returned(name: str) -> None:
    """With a single AC round nothing changed in it is checked again: a raised slot keeps its
    checked linear level, a tightened one gets 0 and counts as unresolved."""
    c = case(name)
    args = (c.feeder, c.lin, c.flow, c.bus_of, c.export_cap_kw, c.import_cap_kw)
    linear = operating_envelopes(*args, max_ac_rounds=0)
    one = operating_envelopes(*args, max_ac_rounds=1)
    assert one.ac_rounds == 1
    zeroed = 0
    for lin_level, level in (
        (linear.export_level_kw, one.export_level_kw),
        (linear.import_level_kw, one.import_level_kw),
    ):
        same = level == lin_level
        assert (same | (level == 0.0)).all()
        zeroed += int((~same).sum())
    assert zeroed >= 1, "the linear envelopes should break an AC limit somewhere"
    assert one.unresolved_slots >= 1
    for sign, limit in ((1.0, one.export_kw), (-1.0, one.import_kw)):
        _assert_within_limits(c, c.flow.run(*c.injections(sign * limit)), name)


def test_fair_level_worked_example() -> None:
    """Two participants on one row with room 10: capabilities 2 and 20 → the first exports 2,
    the second 8 (level 8); a second row weighting the second twice leaves room 12 → 5."""
    cap = np.array([[2.0, 20.0], [2.0, 20.0], [2.0, 3.0], [0.0, 0.0]])
    a = np.array([[1.0, 1.0]])
    np.testing.assert_array_equal(
        fair_level_kw(cap, a, np.array([10.0])), [8.0, 8.0, np.inf, np.inf]
    )
    a2 = np.array([[1.0, 1.0], [1.0, 2.0]])
    np.testing.assert_allclose(fair_level_kw(cap[:1], a2, np.array([10.0, 12.0])), [5.0])
    # a negative room (the limit is broken at no injection): level 0
    np.testing.assert_array_equal(fair_level_kw(cap[:1], a, np.array([-1.0])), [0.0])


# --------------------------------------------------------------------------------------------
# (e) shapes, signs, validation


@pytest.mark.parametrize("name", FEEDERS)
def test_shapes_and_signs(name: str) -> None:
    c = case(name)
    env = c.env
    assert env.export_kw.shape == env.import_kw.shape == c.export_cap_kw.shape
    assert env.export_level_kw.shape == env.import_level_kw.shape == (N_SLOTS,)
    assert (env.n_slots, env.n_participants) == c.export_cap_kw.shape
    for limit, cap in ((env.export_kw, c.export_cap_kw), (env.import_kw, c.import_cap_kw)):
        assert np.isfinite(limit).all()
        assert (limit >= 0.0).all() and (limit <= cap).all()
        assert (limit[cap == 0.0] == 0.0).all()
    e_kwh, i_kwh = env.per_slot_kwh(0.25)
    np.testing.assert_array_equal(e_kwh, env.export_kw * 0.25)
    np.testing.assert_array_equal(i_kwh, env.import_kw * 0.25)
    assert V_MIN - 1e-9 <= env.worst_v_min_pu < env.worst_v_max_pu <= V_MAX + 1e-9
    assert 0.0 < env.worst_loading_pct <= LOADING + 1e-9


def test_invalid_inputs_are_rejected() -> None:
    c = case("kerber-dorfnetz")
    args = (c.feeder, c.lin, c.flow)
    good = (c.bus_of, c.export_cap_kw, c.import_cap_kw)
    bad_cases = [
        (c.bus_of, -c.export_cap_kw, c.import_cap_kw),
        (c.bus_of, c.export_cap_kw, c.import_cap_kw[:, :-1]),
        (c.bus_of[:-1], c.export_cap_kw, c.import_cap_kw),
        (c.bus_of + c.feeder.n_bus, c.export_cap_kw, c.import_cap_kw),
        (c.bus_of, np.full_like(c.export_cap_kw, np.inf), c.import_cap_kw),
    ]
    for bus_of, e, i in bad_cases:
        with pytest.raises(InputError):
            operating_envelopes(*args, bus_of, e, i)
    with pytest.raises(InputError):
        operating_envelopes(*args, *good, v_min_pu=1.1, v_max_pu=1.0)
    with pytest.raises(InputError):
        operating_envelopes(*args, *good, load_power_factor=0.0)


# --------------------------------------------------------------------------------------------
# (f) static limits


def test_static_envelopes() -> None:
    env = static_envelopes(4, 3, 5.0, None)
    np.testing.assert_array_equal(env.export_kw, np.full((4, 3), 5.0))
    assert np.isposinf(env.import_kw).all() and env.import_kw.shape == (4, 3)
    np.testing.assert_array_equal(env.export_level_kw, np.full(4, 5.0))
    assert env.ac_rounds == 0 and env.unresolved_slots == 0
    e_kwh, i_kwh = env.per_slot_kwh(0.5)
    np.testing.assert_array_equal(e_kwh, np.full((4, 3), 2.5))
    assert np.isposinf(i_kwh).all()
    both = static_envelopes(2, 2, None, 0.0)
    assert np.isposinf(both.export_kw).all() and (both.import_kw == 0.0).all()
    for bad in (-1.0, float("nan")):
        with pytest.raises(InputError):
            static_envelopes(2, 2, bad, None)
        with pytest.raises(InputError):
            static_envelopes(2, 2, None, bad)
