"""The comparison directory: compare.html, kpis.csv, summary.json (all designs) and one
sub-folder per design with its summary.json, participants.csv and prices.parquet."""

from __future__ import annotations

import json
from pathlib import Path

from peergrid.engine.compare import Comparison
from peergrid.rundir.atomic import write_dir_atomically
from peergrid.rundir.run import json_ready


def write_comparison(comparison: Comparison, out_dir: str | Path) -> Path:
    """Write the comparison directory atomically and return its path."""
    return write_dir_atomically(out_dir, lambda d: write_comparison_files(comparison, d))


def write_comparison_files(comparison: Comparison, d: Path) -> None:
    """Write every file of the comparison directory into the existing folder `d`."""
    from peergrid.report.compare_html import comparison_data, render_comparison  # matplotlib

    table = comparison.table()
    table.to_csv(d / "kpis.csv", index=False, float_format="%.6f")
    combined = {name: res.summary for name, res in comparison.results.items()}
    (d / "summary.json").write_text(
        json.dumps(
            json_ready({"scenario": comparison.scenario_name, "designs": combined}), indent=2
        )
        + "\n",
        encoding="utf-8",
    )
    for name, res in comparison.results.items():
        sub = d / name
        sub.mkdir()
        (sub / "summary.json").write_text(
            json.dumps(json_ready(res.summary), indent=2) + "\n", encoding="utf-8"
        )
        res.participants.to_csv(sub / "participants.csv", index=False, float_format="%.6f")
        res.prices.to_parquet(sub / "prices.parquet", index=False)
    (d / "compare.html").write_text(
        render_comparison(comparison_data(comparison.scenario_name, table, comparison.results)),
        encoding="utf-8",
    )
