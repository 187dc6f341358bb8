"""Every market design, every deviation rule and a feeder with charges: the ledger verifies
and its bills are the run's bills to the minor unit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from peergrid.engine.simulate import simulate
from peergrid.ledger.verify import verify_ledger
from peergrid.markets.registry import list_mechanisms
from peergrid.scenario.schema import Scenario
from tests.engine.conftest import small_scenario


def _check(sc: Scenario, path: Path) -> dict[str, float]:
    result = simulate(sc, ledger_path=path)
    rep = verify_ledger(path)
    bill = result.participants["bill"].to_numpy()
    ledger_bill = np.array([-rep.balances_minor[i] for i in range(bill.size)]) / 100
    assert np.all(np.abs(ledger_bill - bill) <= 0.005 + 1e-9)
    assert sum(rep.balances_minor.values()) == 0 and sum(rep.energy_wh.values()) == 0
    return {str(k): v / 100 for k, v in rep.balances_minor.items() if k < 0}


@pytest.mark.parametrize("market", [m.name for m in list_mechanisms()])
def test_every_market_design(market: str, tmp_path: Path) -> None:
    sc = small_scenario(n=5, days=1, market=market, forecast="persistence")
    _check(sc, tmp_path / "l.sqlite")


@pytest.mark.parametrize("rule", ["retail", "net-then-causer", "penalty"])
def test_every_deviation_rule(rule: str, tmp_path: Path) -> None:
    data = small_scenario(n=6, days=1, forecast="persistence").model_dump(
        mode="python", exclude_none=True
    )
    data["settlement"] = {"deviation_rule": rule, "penalty_per_kwh": 0.05}
    accounts = _check(Scenario.model_validate(data), tmp_path / "l.sqlite")
    if rule == "penalty":
        assert accounts["-2"] > 0  # the operator keeps the spreads


def test_a_feeder_with_charges_posts_to_the_network_operator(tmp_path: Path) -> None:
    data = small_scenario(n=8, days=1, market="uniform", forecast="persistence").model_dump(
        mode="python", exclude_none=True
    )
    data["network"] = {
        "feeder": "simbench-lv-rural1",
        "charges": {"kind": "uniform", "fee_per_kwh": 0.03, "payer": "split"},
        "loss_allocation": True,
    }
    accounts = _check(Scenario.model_validate(data), tmp_path / "l.sqlite")
    assert accounts["-3"] > 0
