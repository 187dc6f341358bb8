"""The built-in high-PV scenario: unconstrained P2P breaks the feeder's limits, operating
envelopes remove every violation and keep the savings; the engine's voltages are pandapower's."""

from __future__ import annotations

import numpy as np
import pytest

import peergrid
from peergrid.engine.network import bus_injections
from peergrid.engine.result import SimulationResult
from peergrid.network.powerflow import pandapower_flow
from peergrid.rundir.run import report_html


@pytest.fixture(scope="module")
def run() -> SimulationResult:
    return peergrid.simulate(peergrid.load_scenario("high-pv"))


def test_envelopes_remove_every_violation_and_keep_the_savings(run: SimulationResult) -> None:
    net = run.summary["network"]
    free = net["unconstrained"]
    assert free["voltage_violation_slots"] > 0
    assert free["max_voltage_pu"] > 1.10
    assert free["overload_slots"] > 0
    assert net["voltage_violation_slots"] == 0
    assert net["overload_slots"] == 0
    assert net["baseline"]["voltage_violation_slots"] == 0
    assert net["envelopes"] == "dynamic"
    assert net["curtailed_kwh"] > 0.0
    assert free["curtailed_kwh"] == 0.0
    # P2P savings against the baseline under the same rules: most of them stay
    assert run.summary["cost"]["savings"] >= 0.9 * free["savings"] > 0.0


def test_reported_voltages_are_pandapower_ac(run: SimulationResult) -> None:
    out = run.extra["network"]
    setup = out.setup
    flow = out.flows["p2p"]
    worst = np.argsort(flow.v_pu.max(axis=1))[-4:]
    p, q = bus_injections(setup, run.recorded.series["net_kwh"][worst], run.community.grid.dt_h)
    ref = pandapower_flow(setup.feeder, setup.net, p, q)
    assert np.abs(ref.v_pu - flow.v_pu[worst]).max() < 1e-4
    assert ref.v_pu[:, setup.feeder.lv_buses].max() <= 1.10 + 1e-6


def test_charges_and_losses_add_up(run: SimulationResult) -> None:
    net = run.summary["network"]
    parts = run.participants
    assert parts["network_charge"].sum() == pytest.approx(net["network_charges"], abs=1e-3)
    assert net["network_charges"] > 0.0
    # the transformer's iron losses stay with the operator; the rest is allocated exactly
    allocated = net["losses_allocated_p2p_kwh"] + net["losses_allocated_grid_kwh"]
    assert 0.0 < allocated < net["losses_kwh"]
    assert parts["allocated_loss_kwh"].sum() == pytest.approx(allocated, rel=1e-6)
    # the bill includes what the operator charged: money still balances
    s = run.recorded.series
    energy = s["cost"].sum(axis=0)
    fixed = run.community.daily_charge * run.community.grid.days
    np.testing.assert_allclose(
        parts["bill"], energy + fixed + parts["network_charge"] + parts["loss_charge"], atol=1e-9
    )


def test_the_report_states_both_runs(run: SimulationResult) -> None:
    page = report_html(run)
    free = run.summary["network"]["unconstrained"]
    assert "Network rules against unconstrained P2P" in page
    section = page[page.index('id="network-rules"') :]
    section = section[: section.index("</section>")]
    assert f"{free['max_voltage_pu']:.4f}" in section
    assert f'<td class="num">{free["voltage_violation_slots"]}</td>' in section
    assert f"{run.summary['cost']['savings']:,.2f}" in section
