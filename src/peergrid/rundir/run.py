"""The run directory: every file of one run, written atomically (`rundir.atomic`).

A face of the engine: it takes the `SimulationResult` that `peergrid.simulate` returns and
writes timeseries.parquet, trades.parquet, prices.parquet, participants.csv, summary.json,
scenario.resolved.toml, report.html and, on a feeder, network.parquet and network.json.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from peergrid.engine.result import SimulationResult
from peergrid.engine.series import timeseries_columns
from peergrid.rundir.atomic import write_dir_atomically
from peergrid.scenario.resolve import to_toml

#: Slots per row group of timeseries.parquet: bounds the memory of writing a year.
CHUNK_SLOTS = 4096


def write_run(result: SimulationResult, out_dir: str | Path) -> Path:
    """Write the run directory of `result` atomically and return its path."""
    return write_dir_atomically(out_dir, lambda d: write_run_files(result, d))


def timeseries_table(result: SimulationResult, t0: int, t1: int) -> pa.Table:
    """Rows of timeseries.parquet for slots [t0, t1) (slot-major)."""
    names = result.community.names
    n_p = len(names)
    starts = result.community.grid.starts_utc[t0:t1]
    cols: dict[str, pa.Array] = {
        "slot_start": pa.array(np.repeat(starts.values, n_p), pa.timestamp("ns", tz="UTC")),
        "participant": pa.DictionaryArray.from_arrays(
            pa.array(np.tile(np.arange(n_p, dtype=np.int32), t1 - t0)), pa.array(names)
        ),
    }
    for name in timeseries_columns("network" in result.extra):
        cols[name] = pa.array(result.series(name)[t0:t1].ravel())
    cols["ev_plugged"] = pa.array(result.community.profiles.ev_plugged[t0:t1].ravel())
    return pa.table(cols)


def report_html(result: SimulationResult) -> str:
    """The self-contained HTML report."""
    from peergrid.report.html import SLOT_SERIES, ReportData, render_report  # matplotlib

    series: dict[str, np.ndarray] = {k: result.series(k) for k in SLOT_SERIES}
    series["battery_capacity_kwh"] = result.community.assets.battery.capacity_kwh
    series["ev_capacity_kwh"] = result.community.assets.ev.capacity_kwh
    data = ReportData(
        title=f"{result.summary['scenario']} — {result.summary['market']}",
        grid=result.community.grid,
        names=list(result.community.names),
        summary=result.summary,
        participants=result.participants,
        series=series,
        prices=result.prices,
        currency=str(result.summary["cost"]["currency"]),
        network=_network_report(result),
        public=_public_report(result),
    )
    return render_report(data)


def _public_report(result: SimulationResult) -> Any:
    """The report's public section data, or None."""
    pub = result.extra.get("publication")
    if pub is None:
        return None
    from peergrid.engine.publish import PUBLISHED, STATUS_LABELS
    from peergrid.report.public import PublicReportData

    budget = pub.budget
    return PublicReportData(
        method=pub.method,
        min_households=pub.rule.min_households,
        dominance_share=pub.rule.dominance_share,
        values=pub.values,
        status=pub.status,
        labels=STATUS_LABELS,
        descriptions={name: what for name, _, what in PUBLISHED},
        releases=pub.releases,
        epsilon_total=budget.epsilon_total,
        epsilon_spent=budget.epsilon_spent,
        utility=pub.utility,
    )


def _network_report(result: SimulationResult) -> Any:
    """The report's network section data, or None without a feeder."""
    network = result.extra.get("network")
    if network is None:
        return None
    from peergrid.report.network import NetworkCase, NetworkReportData

    f = network.setup.feeder
    spec = network.setup.spec
    lv, br = f.lv_buses, f.monitored_branches

    def case(name: str) -> NetworkCase:
        flow = network.flows[name]
        return NetworkCase(
            v_pu=flow.v_pu[:, lv].astype(np.float32),
            loading_pct=flow.loading_pct[:, br].astype(np.float32),
            losses_kw=flow.losses_kw,
            curtailed_kwh=network.curtailed_kwh[name].sum(axis=1),
        )

    notes = {
        "none": None,
        "static": "static connection limits",
        "dynamic": "dynamic operating envelopes",
        "static+dynamic": "static connection limits and dynamic operating envelopes",
    }
    return NetworkReportData(
        feeder_name=f.name,
        bus_labels=[str(n) for n in f.bus_names[lv]],
        branch_labels=[f.branch_labels[b] for b in br],
        times_local=result.community.grid.starts_local,
        dt_h=result.community.grid.dt_h,
        v_min_pu=spec.v_min_pu,
        v_max_pu=spec.v_max_pu,
        max_loading_pct=spec.max_loading_pct,
        p2p=case("p2p"),
        baseline=case("baseline"),
        envelope_note=notes.get(network.envelope_kind, network.envelope_kind),
    )


#: The run's ledger in the run directory.
LEDGER_FILE = "ledger.sqlite"


def write_run_files(result: SimulationResult, d: Path) -> None:
    """Write every file of the run directory into the existing folder `d`."""
    n_t = result.community.grid.n_slots
    writer: pq.ParquetWriter | None = None
    try:
        for t0 in range(0, n_t, CHUNK_SLOTS):
            table = timeseries_table(result, t0, min(n_t, t0 + CHUNK_SLOTS))
            if writer is None:
                writer = pq.ParquetWriter(
                    d / "timeseries.parquet",
                    table.schema,
                    compression="zstd",
                    use_dictionary=["participant"],
                )
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    result.trades.to_parquet(d / "trades.parquet", index=False)
    network = result.extra.get("network")
    if network is not None:
        from peergrid.rundir.network import network_json, write_network_parquet

        times = result.community.grid.starts_utc
        write_network_parquet(d / "network.parquet", network.setup, network.flows, times)
        (d / "network.json").write_text(
            network_json(network.setup, list(result.community.names)), "utf-8"
        )
    result.prices.to_parquet(d / "prices.parquet", index=False)
    ledger = result.extra.get("ledger_path")
    if ledger is not None and Path(ledger).exists():
        # the run wrote its ledger beside the output; it moves in with the rest
        shutil.move(str(ledger), d / LEDGER_FILE)
    publication = result.extra.get("publication")
    if publication is not None:
        from peergrid.engine.publish import public_table

        table = public_table(publication, result.community.grid.starts_utc)
        table.to_parquet(d / "public.parquet", index=False)
        (d / "privacy.json").write_text(publication.privacy_json(), "utf-8")
    result.participants.to_csv(d / "participants.csv", index=False, float_format="%.6f")
    header = (
        "# Resolved by peergrid: every default explicit, groups expanded.\n"
        "# `peergrid run DIR/scenario.resolved.toml` repeats this run exactly."
    )
    (d / "scenario.resolved.toml").write_text(to_toml(result.scenario, header), "utf-8")
    (d / "report.html").write_text(report_html(result), encoding="utf-8")
    (d / "summary.json").write_text(
        json.dumps(json_ready(result.summary), indent=2) + "\n", "utf-8"
    )


def json_ready(obj: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [json_ready(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
