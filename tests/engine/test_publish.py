"""What a run publishes: disclosure control on every cell, or DP releases within the budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from peergrid.engine.publish import PUBLISHED, STATUS_LABELS, publish
from peergrid.engine.simulate import simulate
from peergrid.privacy.budget import BudgetExceeded, PrivacyBudget
from peergrid.rundir import write_run
from peergrid.scenario.schema import PrivacySpec, Scenario
from tests.engine.conftest import small_scenario


def _with_privacy(**privacy: object) -> Scenario:
    data = small_scenario(n=14, days=1).model_dump(mode="python", exclude_none=True)
    data["privacy"] = privacy
    return Scenario.model_validate(data)


def test_no_published_cell_breaks_the_rules(tmp_path: Path) -> None:
    sc = _with_privacy(min_households=4, dominance_share=0.6)
    result = simulate(sc)
    out = write_run(result, tmp_path / "run")
    public = pd.read_parquet(out / "public.parquet")
    assert len(public) == result.community.grid.n_slots
    statuses = set()
    for name, source, _ in PUBLISHED:
        x = result.series(source)
        released = public[f"{name}_status"].astype(str).to_numpy() == STATUS_LABELS[0]
        statuses |= set(public[f"{name}_status"].astype(str))
        n = np.count_nonzero(x != 0, axis=1)
        share = np.abs(x).max(axis=1) / np.maximum(np.abs(x).sum(axis=1), 1e-300)
        assert np.all(n[released] >= 4)
        assert np.all(share[released] <= 0.6)
        np.testing.assert_allclose(public[name].to_numpy()[released], x.sum(axis=1)[released])
        assert public[name][~released].isna().all()  # suppressed: marked, no value
    assert {"released", "suppressed (n<k)"} <= statuses
    doc = json.loads((out / "privacy.json").read_text())
    assert doc["method"] == "disclosure" and doc["min_households"] == 4
    report = (out / "report.html").read_text()
    assert "Public release" in report and "Operator only" in report


def test_dp_releases_spend_exactly_the_budget() -> None:
    rng = np.random.default_rng(3)
    series = {source: rng.uniform(0, 1, (96, 20)) for _, source, _ in PUBLISHED}
    spec = PrivacySpec(dp=True, epsilon=2.0)
    pub = publish(series, spec, 0.25)
    assert pub.method == "dp" and pub.budget is not None
    assert pub.budget.epsilon_spent == pytest.approx(2.0)
    assert pub.budget.epsilon_remaining == pytest.approx(0.0, abs=1e-12)
    assert {r["epsilon"] for r in pub.releases.values()} == {0.5}
    for name in pub.values:
        assert np.all(pub.status[name] == 3)
        assert pub.values[name].shape == (96,)
    # the budget stored with the run refuses one more release
    stored = PrivacyBudget.from_json(json.dumps(json.loads(pub.privacy_json())["budget"]))
    with pytest.raises(BudgetExceeded):
        stored.spend(0.1, 0.0, label="one more", mechanism="laplace")


def test_gaussian_without_delta_is_an_input_error() -> None:
    with pytest.raises(ValueError, match="delta"):
        PrivacySpec(dp=True, mechanism="gaussian", delta=0.0)


def test_later_releases_spend_the_stored_budget_and_are_refused_beyond_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from peergrid.cli import main

    out = write_run(simulate(_with_privacy(epsilon=1.0)), tmp_path / "run")
    before = (out / "privacy.json").read_text()
    assert main(["privacy", "release", str(out), "--series", "community_demand_kwh",
                 "--epsilon", "0.6"]) == 0  # fmt: skip
    released = pd.read_parquet(out / "release-1-community_demand_kwh.parquet")
    assert len(released) == 96 and np.isfinite(released["community_demand_kwh"]).all()
    doc = json.loads((out / "privacy.json").read_text())
    assert doc["budget"]["epsilon_spent"] == pytest.approx(0.6)
    after_first = (out / "privacy.json").read_text()
    assert after_first != before
    assert main(["privacy", "release", str(out), "--series", "p2p_traded_kwh",
                 "--epsilon", "0.5"]) == 2  # fmt: skip
    assert "refused" in capsys.readouterr().err
    assert (out / "privacy.json").read_text() == after_first  # nothing written
    assert not (out / "release-2-p2p_traded_kwh.parquet").exists()
    assert main(["privacy", "release", str(out), "--series", "nope", "--epsilon", "0.1"]) == 2
