"""The report's public section: what the community publishes, after disclosure control.

`public_section(grid, PublicReportData) -> str` returns an HTML fragment: the published
community profiles (suppressed cells left out of the lines and counted), a table of released
and suppressed cells per series with the rule, the DP releases' parameters when the profiles
are differentially private, and — in the operator's part, marked so — the utility-versus-ε
table and curve of a DP community-demand profile (docs/privacy.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from peergrid.report import plots
from peergrid.report.format import table
from peergrid.timegrid import SlotGrid

FloatArray = NDArray[np.float64]

ANCHOR = "public"


@dataclass(frozen=True, eq=False)
class PublicReportData:
    """What the public section shows (built by the run-directory writer from the engine's
    publication).

    Attributes:
        method: "disclosure" or "dp".
        min_households, dominance_share: the disclosure rule.
        values: per published series, (T,) totals [kWh], NaN where suppressed.
        status: per series, (T,) status codes indexing `labels`.
        labels: the status labels.
        descriptions: per series, what it is.
        releases: per series, a DP release's parameters (empty without DP).
        epsilon_total, epsilon_spent: the run's privacy budget (NaN without DP).
        utility: the utility-versus-ε table (epsilon, noise_std_kwh, rmse_kwh, relative_rmse,
            relative_mae), or None.
    """

    method: str
    min_households: int
    dominance_share: float
    values: dict[str, FloatArray]
    status: dict[str, NDArray[np.int8]]
    labels: tuple[str, ...]
    descriptions: dict[str, str]
    releases: dict[str, dict[str, object]]
    epsilon_total: float
    epsilon_spent: float
    utility: pd.DataFrame | None


def _profiles_figure(grid: SlotGrid, data: PublicReportData) -> str:
    bins = plots.time_bins(grid)
    fig, axes = plots._new_figure(2.8)
    ax = axes[0]
    edges = plots.slot_edges(grid)
    for name, colour in zip(
        data.values, ("#1f77b4", "#ff7f0e", "#7f7f7f", "#2ca02c"), strict=False
    ):
        v = data.values[name] / grid.dt_h  # average power [kW]
        if bins.resolution == "slot":
            ax.plot(edges[:-1], v, color=colour, linewidth=1.1, label=name)
        else:
            total = plots.bin_mean(np.where(np.isnan(v), 0.0, v), bins)
            share = plots.bin_mean((~np.isnan(v)).astype(np.float64), bins)
            # the mean of the released cells of each bin; a bin without any is a gap
            mean = np.divide(total, share, out=np.full(bins.n_bins, np.nan), where=share > 0)
            ax.plot(bins.edges[:-1], mean, color=colour, linewidth=1.1, label=name)
    ax.set_ylabel("kW", fontsize=9)
    plots._local_time_axis(ax, grid)
    plots._legend(ax, ncols=2)
    plots._headroom(ax)
    return plots.figure_to_svg(fig, f"{ANCHOR}-p-", "Published community profiles")


def _utility_figure(utility: pd.DataFrame) -> str:
    fig, axes = plots._new_figure(2.6)
    ax = axes[0]
    ax.loglog(utility["epsilon"], utility["relative_rmse"], marker="o", label="relative RMSE")
    ax.loglog(utility["epsilon"], utility["relative_mae"], marker="s", label="relative MAE")
    ax.axhline(1.0, color="#999999", linewidth=0.8, linestyle="--")
    ax.set_xlabel("ε", fontsize=9)
    ax.set_ylabel("error / mean community demand", fontsize=9)
    ax.legend(fontsize=8, frameon=False, loc="lower left")  # the curves fall to the right
    return plots.figure_to_svg(fig, f"{ANCHOR}-u-", "Utility versus privacy budget")


def public_section(grid: SlotGrid, data: PublicReportData) -> str:
    """The public section (module docstring)."""
    if data.method == "dp":
        rule = (
            f"The profiles are released with differential privacy (OpenDP, user-level: one "
            f"household's whole profile), spending ε = {data.epsilon_spent:g} of the run's "
            f"budget of {data.epsilon_total:g}; every value carries noise."
        )
    else:
        rule = (
            f"Every published value is a community total of at least {data.min_households} "
            f"households, none of which holds more than {data.dominance_share:.0%} of it; "
            "other cells are suppressed and marked as such in public.parquet (they are gaps "
            "here)."
        )
    rows = []
    for name, status in data.status.items():
        counts = [int(np.count_nonzero(status == k)) for k in range(len(data.labels))]
        rows.append([name, data.descriptions.get(name, ""), *(f"{c:,}" for c in counts)])
    heads = ("Series", "What", *data.labels)
    parts = [
        f'<section><h2 id="{ANCHOR}">Public release</h2>',
        f'<p class="muted">What the community publishes about this run. {rule}</p>',
        f"<figure>{_profiles_figure(grid, data)}<figcaption>Published community profiles, "
        "as average power. Suppressed cells are left out.</figcaption></figure>",
        table(heads, rows, (False, False, *([True] * len(data.labels)))),
    ]
    if data.releases:
        rel_rows = [
            [
                name,
                str(r.get("mechanism", "")),
                f"{float(r.get('epsilon', float('nan'))):g}",  # type: ignore[arg-type]
                f"{float(r.get('noise_std_kwh', float('nan'))):.3f}",  # type: ignore[arg-type]
            ]
            for name, r in data.releases.items()
        ]
        parts.append(
            table(
                ("Series", "Mechanism", "ε", "noise std [kWh]"),
                rel_rows,
                (False, False, True, True),
            )
        )
    if data.utility is not None:
        u = data.utility
        u_rows = [
            [f"{e:g}", f"{s:.3f}", f"{r:.3f}", f"{m:.3f}"]
            for e, s, r, m in zip(
                u["epsilon"], u["noise_std_kwh"], u["relative_rmse"], u["relative_mae"], strict=True
            )
        ]
        parts += [
            "<h3>Operator only: what differential privacy would cost</h3>",
            '<p class="muted">The expected error of a DP release of the community demand '
            "profile (clipped per household to the connection capacity) against the true one, "
            "for ε from 0.1 to 10, relative to the mean community demand per slot. Computed on "
            "the true data, so not for publication; it spends no privacy budget. A relative "
            "error near or above 1 (dashed) means the noise is as large as the profile: at "
            "community scale, useful DP profiles need thousands of households (Eibl &amp; "
            "Engel 2017).</p>",
            f"<figure>{_utility_figure(u)}<figcaption>Utility versus ε.</figcaption></figure>",
            table(
                ("ε", "noise std [kWh]", "relative RMSE", "relative MAE"),
                u_rows,
                (True, True, True, True),
            ),
        ]
    else:
        parts.append(
            '<p class="note">The utility-versus-ε curve needs OpenDP: install peergrid with the '
            "<code>privacy</code> extra.</p>"
        )
    parts.append("</section>")
    return "".join(parts)
