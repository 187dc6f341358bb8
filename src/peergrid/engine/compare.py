"""One scenario under several market designs: same community, data, EMS and baseline.

The community's data are built once; each design runs the slot loop on the same arrays, so the
designs differ only in the market. `Comparison.save(dir)` writes, atomically, a side-by-side
report (`compare.html`), `kpis.csv`, `summary.json` (all designs) and one sub-folder per design
with its own `summary.json` and `participants.csv`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from peergrid.engine.loop import ProgressFn
from peergrid.engine.result import SimulationResult
from peergrid.engine.simulate import simulate
from peergrid.errors import InputError
from peergrid.markets.registry import get_mechanism
from peergrid.scenario.schema import Scenario

#: Columns of the comparison table: (column, path in summary.json).
KPI_COLUMNS: tuple[tuple[str, str], ...] = (
    ("savings", "cost.savings"),
    ("savings_pct", "cost.savings_pct"),
    ("total_bill", "cost.total"),
    ("baseline_bill", "cost.baseline_total"),
    ("operator_surplus", "cost.operator_surplus"),
    ("p2p_traded_kwh", "energy.p2p_traded_kwh"),
    ("self_sufficiency", "kpi.self_sufficiency"),
    ("self_consumption", "kpi.self_consumption"),
    ("peak_import_kw", "kpi.peak_import_kw"),
    ("fairness_jain", "kpi.fairness_jain"),
    ("participants_worse_off", "kpi.participants_worse_off"),
    ("market_s", "timing_s.slots"),
    ("deviation_cost", "settlement.deviation_cost"),
    ("forecast_error_cost", "cost.forecast_error_cost"),
    ("perfect_foresight_savings", "cost.perfect_foresight_savings"),
    ("perfect_foresight_savings_pct", "cost.perfect_foresight_savings_pct"),
)

#: Extra columns when the scenario has a feeder.
NETWORK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("max_voltage_pu", "network.max_voltage_pu"),
    ("min_voltage_pu", "network.min_voltage_pu"),
    ("voltage_violation_slots", "network.voltage_violation_slots"),
    ("overload_slots", "network.overload_slots"),
    ("losses_kwh", "network.losses_kwh"),
    ("curtailed_kwh", "network.curtailed_kwh"),
    ("network_charges", "network.network_charges"),
)


def _get(summary: dict[str, Any], path: str) -> Any:
    node: Any = summary
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


@dataclass(eq=False)
class Comparison:
    """Results of one scenario under several designs, in the order asked for."""

    scenario_name: str
    results: dict[str, SimulationResult]

    def table(self) -> pd.DataFrame:
        """One row per design: family, savings, welfare gain, KPIs, iterations, time."""
        rows = []
        for name, res in self.results.items():
            s = res.summary
            row: dict[str, Any] = {"market": name, "family": get_mechanism(name).family}
            for col, path in KPI_COLUMNS:
                row[col] = _get(s, path)
            if "network" in s:
                for col, path in NETWORK_COLUMNS:
                    row[col] = _get(s, path)
            # gains from trade: what the community as a whole saves against the baseline
            row["welfare_gain"] = s["cost"]["savings"]
            iters = s.get("market_info", {}).get("iterations", {})
            row["iterations_mean"] = iters.get("mean") if isinstance(iters, dict) else None
            rows.append(row)
        table = pd.DataFrame(rows)
        # the ranking by community savings, with the run's forecasts and with perfect foresight
        table["rank"] = table["savings"].rank(ascending=False, method="min").astype(int)
        table["rank_perfect_foresight"] = (
            table["perfect_foresight_savings"].rank(ascending=False, method="min").astype(int)
        )
        return table


def compare(
    scenario: Scenario,
    markets: list[str],
    on_progress: ProgressFn | None = None,
    *,
    forecast: str | None = None,
) -> Comparison:
    """Simulate `scenario` under each market in `markets` (names from the registry), with its
    forecaster (or `forecast`); every design also runs its perfect-foresight twin, so the
    table ranks the designs with and without forecast error."""
    if not markets:
        raise InputError("--markets: name at least one market mechanism")
    if len(set(markets)) != len(markets):
        raise InputError(f"--markets: a design is named twice ({', '.join(markets)})")
    for name in markets:
        get_mechanism(name)  # unknown names fail before any work is done
    results: dict[str, SimulationResult] = {}
    community = None
    for name in markets:
        res = simulate(
            scenario,
            market=name,
            forecast=forecast,
            community=community,
            on_progress=on_progress,
        )
        community = res.community
        results[name] = res
    return Comparison(scenario_name=scenario.name, results=results)
