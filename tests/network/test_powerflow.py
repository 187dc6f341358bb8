"""The fast power flow against pandapower's AC Newton-Raphson on every built-in feeder."""

from __future__ import annotations

import copy
import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest

from peergrid.errors import InputError
from peergrid.network.feeder import Feeder
from peergrid.network.feeders import builtin_feeders, load_network
from peergrid.network.linear import linearise, loss_sensitivity
from peergrid.network.powerflow import PgmPowerFlow, pandapower_flow

FEEDERS = [f.name for f in builtin_feeders()]


def _injections(f: Feeder, n_slots: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Households at every connection bus, between 8 kW import (pf 0.95) and 10 kW export."""
    rng = np.random.default_rng(seed)
    p = np.zeros((n_slots, f.n_bus))
    q = np.zeros((n_slots, f.n_bus))
    buses = np.unique(f.conn_bus)
    p[:, buses] = rng.uniform(-8.0, 10.0, (n_slots, buses.size))
    q[:, buses] = np.where(p[:, buses] < 0.0, p[:, buses] * np.tan(np.arccos(0.95)), 0.0)
    return p, q


@pytest.mark.parametrize("name", FEEDERS)
def test_fast_path_matches_pandapower_ac(name: str) -> None:
    net, f = load_network(name)
    p, q = _injections(f, 6, seed=len(name))
    fast = PgmPowerFlow(f, net).run(p, q)
    ref = pandapower_flow(f, net, p, q)
    assert ref.converged.all()
    # the bar is 0.001 pu; the two solvers agree far closer
    assert np.abs(fast.v_pu - ref.v_pu).max() < 1e-4
    mon = f.monitored_branches
    assert np.abs(fast.loading_pct[:, mon] - ref.loading_pct[:, mon]).max() < 0.01
    assert np.abs(fast.p_from_kw[:, mon] - ref.p_from_kw[:, mon]).max() < 0.01
    assert np.abs(fast.losses_kw - ref.losses_kw).max() < 0.01
    # the injections are not trivial: the feeder's voltages move by percent
    assert np.ptp(ref.v_pu[:, f.lv_buses]) > 0.005


def test_losses_are_injections_minus_withdrawals() -> None:
    """pandapower's own branch losses equal external-grid import minus the net load."""
    import pandapower as pp

    net, f = load_network("simbench-lv-rural3")
    p, q = _injections(f, 1, seed=3)
    fast = PgmPowerFlow(f, net).run(p, q)
    work = copy.deepcopy(net)
    work.load.drop(work.load.index, inplace=True)
    work.sgen.drop(work.sgen.index, inplace=True)
    for n in np.flatnonzero(p[0]):
        pp.create_load(work, bus=int(f.bus_ids[n]), p_mw=-p[0, n] / 1e3, q_mvar=-q[0, n] / 1e3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.runpp(work, numba=False, tolerance_mva=1e-10)
    branch_losses_kw = 1e3 * (work.res_line.pl_mw.sum() + work.res_trafo.pl_mw.sum())
    assert fast.losses_kw[0] == pytest.approx(branch_losses_kw, abs=1e-3)
    assert fast.losses_kw[0] == pytest.approx(fast.p_slack_kw[0] + p[0].sum(), abs=1e-9)
    assert fast.losses_kw[0] > 0.0


def test_chunks_give_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import peergrid.network.powerflow as mod

    net, f = load_network("kerber-landnetz-kabel-1")
    p, q = _injections(f, 11, seed=5)
    whole = PgmPowerFlow(f, net).run(p, q)
    monkeypatch.setattr(mod, "CHUNK_SLOTS", 4)
    parts = PgmPowerFlow(f, net).run(p, q)
    np.testing.assert_array_equal(whole.v_pu, parts.v_pu)
    np.testing.assert_array_equal(whole.losses_kw, parts.losses_kw)


@pytest.mark.parametrize("name", ["simbench-lv-rural3", "kerber-dorfnetz", "cigre-lv"])
def test_feeder_tree(name: str) -> None:
    net, f = load_network(name)
    assert f.n_branch == f.n_bus - 1
    # every non-slack bus has exactly one parent branch; paths grow by one branch per level
    assert np.array_equal(np.sort(f.branch_to), np.setdiff1d(np.arange(f.n_bus), [f.slack]))
    depth = f.path.sum(axis=0)
    assert depth[f.slack] == 0
    assert np.all(depth[f.branch_to] == depth[f.branch_from] + 1)
    # the no-load voltages are pandapower's (up to the magnetising current)
    zero = np.zeros((1, f.n_bus))
    assert np.abs(pandapower_flow(f, net, zero, zero).v_pu[0] - f.v0_pu).max() < 1e-4
    assert set(f.conn_type.tolist()) <= {"household", "commercial", "agricultural", "industrial"}


def test_linearised_voltages_close_to_ac() -> None:
    net, f = load_network("simbench-lv-rural3")
    p, q = _injections(f, 30, seed=9)
    ac = PgmPowerFlow(f, net).run(p, q)
    lin = linearise(f)
    err = np.abs(lin.voltage_pu(p, q) - ac.v_pu)
    assert err.max() < 3e-3
    # the sensitivities are positive (a radial feeder rises with every injection)
    assert (lin.dv_dp_pu_per_kw >= 0.0).all()


def test_loss_sensitivity_matches_finite_differences() -> None:
    net, f = load_network("kerber-vorstadtnetz-kabel-1")
    p, q = _injections(f, 8, seed=2)
    pf = PgmPowerFlow(f, net)
    base = pf.run(p, q)
    lsf = loss_sensitivity(f, base.p_from_kw, base.v_pu)
    for bus in np.unique(f.conn_bus)[[0, 40, 100]]:
        p2 = p.copy()
        p2[:, bus] += 0.01
        fd = (pf.run(p2, q).losses_kw - base.losses_kw) / 0.01
        assert np.abs(lsf[:, bus] - fd).max() < 5e-4 + 0.03 * np.abs(fd).max()


def test_user_network_file_and_errors(tmp_path: Path) -> None:
    import pandapower as pp

    net, f = load_network("kerber-landnetz-kabel-1")
    path = tmp_path / "mine.json"
    pp.to_json(net, str(path))
    net2, f2 = load_network(file=path)
    np.testing.assert_array_equal(f2.r_pu, f.r_pu)
    gz = tmp_path / "mine.json.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert load_network(file=gz)[1].n_bus == f.n_bus

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"bad\.json: not a pandapower network JSON"):
        load_network(file=bad)
    with pytest.raises(InputError, match=r"missing\.json: cannot read"):
        load_network(file=tmp_path / "missing.json")
    with pytest.raises(InputError, match="unknown feeder 'nowhere'"):
        load_network("nowhere")

    loop = copy.deepcopy(net2)
    buses = loop.bus.index[loop.bus.vn_kv < 1.0]
    pp.create_line(loop, buses[1], buses[-1], 0.1, str(loop.line.std_type.iloc[0]))
    pp.to_json(loop, str(tmp_path / "loop.json"))
    with pytest.raises(InputError, match=r"loop\.json: the network is meshed"):
        load_network(file=tmp_path / "loop.json")


def test_a_voltage_collapse_is_a_clear_error() -> None:
    net, f = load_network("kerber-landnetz-kabel-1")
    p = np.zeros((3, f.n_bus))
    p[1, f.conn_bus] = -400.0  # 400 kW at every house of an 18-bus cable feeder
    with pytest.raises(InputError, match=r"does not converge in 1 slot\(s\) \(first: slot 1"):
        PgmPowerFlow(f, net).run(p, np.zeros_like(p))


def test_without_the_network_extra_the_error_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from peergrid.network import feeders

    monkeypatch.setitem(sys.modules, "pandapower", None)  # as if not installed
    with pytest.raises(InputError, match=r"pip install 'peergrid\[network\]'"):
        feeders._pp()
