"""What the community publishes about a run, after disclosure control (docs/privacy.md).

Each household's data stays its own: the run directory's per-household files are the
operator's. What the community may show anyone — the report's public section, `public.parquet`
— are per-slot community totals of `PUBLISHED` series, and every cell passes the scenario's
`[privacy]` rules: no cell aggregates fewer than k households or is dominated by one household;
a suppressed cell is kept, marked with its reason (`privacy.disclosure`). With `dp = true` the
totals are released with user-level differential privacy instead (OpenDP, `privacy.dp`),
spending the run's budget equally over the series; the budget and every release are stored with
the run (`privacy.json`), and a later release that would exceed it is refused.

The utility-versus-ε curve (the error of a DP community-demand profile for ε from 0.1 to 10) is
computed on the true data for the operator's part of the report; it spends no budget.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from peergrid.privacy.budget import PrivacyBudget
from peergrid.privacy.disclosure import DisclosureRule, disclose_profile
from peergrid.scenario.schema import PrivacySpec

FloatArray = NDArray[np.float64]

#: The published series: (public name, the per-household series it sums, what it is).
PUBLISHED: tuple[tuple[str, str, str], ...] = (
    ("community_demand_kwh", "demand_kwh", "the community's consumption"),
    ("community_generation_kwh", "generation_kwh", "the community's PV generation"),
    ("community_import_kwh", "grid_import_kwh", "imported from the retailer"),
    ("p2p_traded_kwh", "p2p_bought_kwh", "traded inside the community"),
)

#: Status codes of a published cell.
RELEASED, TOO_FEW, DOMINATED, DP = 0, 1, 2, 3
STATUS_LABELS = ("released", "suppressed (n<k)", "suppressed (dominance)", "differentially private")


@dataclass(frozen=True, eq=False)
class Publication:
    """A run's public release.

    Attributes:
        method: "disclosure" (k and dominance rules) or "dp".
        values: per published series, (T,) community totals [kWh], NaN where suppressed.
        status: per series, (T,) int8 codes (`STATUS_LABELS`).
        n_households: per series, (T,) how many households contribute to each cell.
        rule: the disclosure rule.
        releases: per series, the DP release's parameters (ε, δ, mechanism, noise std,
            sensitivity, clip), empty without DP.
        budget: the run's privacy budget after the releases (nothing spent without DP).
        utility: the utility-versus-ε table of the community-demand profile (operator only), or
            None when it would need OpenDP (a Gaussian curve) and OpenDP is not installed.
    """

    method: str
    values: dict[str, FloatArray]
    status: dict[str, NDArray[np.int8]]
    n_households: dict[str, NDArray[np.int64]]
    rule: DisclosureRule
    releases: dict[str, dict[str, Any]]
    budget: PrivacyBudget
    utility: pd.DataFrame | None

    def summary(self) -> dict[str, Any]:
        """The summary.json block."""
        cells = {
            name: {
                label: int(np.count_nonzero(self.status[name] == code))
                for code, label in enumerate(STATUS_LABELS)
                if np.count_nonzero(self.status[name] == code)
            }
            for name in self.values
        }
        out: dict[str, Any] = {
            "method": self.method,
            "min_households": self.rule.min_households,
            "dominance_share": self.rule.dominance_share,
            "cells": cells,
        }
        out["epsilon_total"] = self.budget.epsilon_total
        out["epsilon_spent"] = self.budget.epsilon_spent
        out["delta_spent"] = self.budget.delta_spent
        return out

    def privacy_json(self) -> str:
        """privacy.json: the rules, the budget with every release, the cell counts."""
        doc: dict[str, Any] = {"version": 1, **self.summary(), "releases": self.releases}
        doc["budget"] = self.budget.to_dict()
        return json.dumps(doc, indent=2) + "\n"


def publish(series: Mapping[str, FloatArray], spec: PrivacySpec, dt_h: float) -> Publication:
    """The public release of a run from its per-household (T, P) series [kWh].

    Raises:
        ImportError: `spec.dp` without OpenDP installed (the `privacy` extra).
    """
    rule = DisclosureRule(spec.min_households, spec.dominance_share)
    upper = spec.clip_kw * dt_h
    values: dict[str, FloatArray] = {}
    status: dict[str, NDArray[np.int8]] = {}
    counts: dict[str, NDArray[np.int64]] = {}
    releases: dict[str, dict[str, Any]] = {}
    # the run's budget, stored with it: later releases (`peergrid privacy release`) spend from it
    budget = PrivacyBudget(spec.epsilon, spec.delta)
    if spec.dp:
        from peergrid.privacy.dp import release_with_budget

        share = 1.0 / len(PUBLISHED)
    for name, source, _ in PUBLISHED:
        x = series[source]
        counts[name] = np.count_nonzero(x != 0.0, axis=1).astype(np.int64)
        if spec.dp:
            release, budget = release_with_budget(
                budget,
                x,
                label=name,
                epsilon=spec.epsilon * share,
                delta=spec.delta * share,
                lower_kwh=0.0,
                upper_kwh=upper,
                mechanism=spec.mechanism,
            )
            values[name] = release.total_kwh
            status[name] = np.full(x.shape[0], DP, dtype=np.int8)
            releases[name] = release.describe()
        else:
            d = disclose_profile(x, rule)
            values[name] = np.asarray(d.value, dtype=np.float64)
            status[name] = np.asarray(d.reason, dtype=np.int8)
    from peergrid.privacy.dp import utility_curve

    utility = None
    delta = spec.delta if spec.mechanism == "gaussian" else 0.0
    try:
        curve = utility_curve(
            series["demand_kwh"],
            lower_kwh=0.0,
            upper_kwh=upper,
            mechanism=spec.mechanism,
            delta=delta if delta > 0 or spec.mechanism == "laplace" else 1e-6,
        )
        utility = curve.to_frame()
    except ImportError:  # a Gaussian curve needs OpenDP (the `privacy` extra)
        utility = None
    return Publication(
        "dp" if spec.dp else "disclosure", values, status, counts, rule, releases, budget, utility
    )


def public_table(pub: Publication, slot_start: pd.DatetimeIndex) -> pd.DataFrame:
    """public.parquet: one row per slot, each series' value and its cell status."""
    cols: dict[str, Any] = {"slot_start": slot_start}
    for name in pub.values:
        cols[name] = pub.values[name]
        labels = np.asarray(STATUS_LABELS, dtype=object)[pub.status[name]]
        cols[f"{name}_status"] = pd.Categorical(labels, categories=list(STATUS_LABELS))
    return pd.DataFrame(cols)
