"""A run's result: tables for people and programs, and an atomic writer for the run directory."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from peergrid.engine.atomic import write_dir_atomically
from peergrid.engine.community import Community
from peergrid.engine.loop import POOL, Recorded
from peergrid.engine.series import PRICE_COLUMNS, TIMESERIES_COLUMNS
from peergrid.scenario.resolve import to_toml
from peergrid.scenario.schema import Scenario

_CHUNK_SLOTS = 4096


@dataclass(eq=False)
class SimulationResult:
    """What `peergrid.simulate` returns. Tables are built lazily from the recorded arrays."""

    scenario: Scenario
    community: Community
    recorded: Recorded
    baseline: dict[str, np.ndarray]
    summary: dict[str, Any]
    participants: pd.DataFrame
    extra: dict[str, Any] = field(default_factory=dict)

    def series(self, name: str) -> np.ndarray:
        """One per-participant series as a (T, P) array (`engine.series.SERIES`)."""
        s = self.recorded.series
        if name == "storage_charge_kwh":
            return s["battery_charge_kwh"] + s["ev_charge_kwh"]
        if name == "storage_discharge_kwh":
            return s["battery_discharge_kwh"] + s["ev_discharge_kwh"]
        if name.startswith("baseline_"):
            return self.baseline[name.removeprefix("baseline_")]
        if name in ("network_charge", "loss_charge"):
            network = self.extra.get("network")
            values = None if network is None else getattr(network, f"{name}_slot", None)
            if values is None:
                return np.zeros_like(s["net_kwh"])
            return np.asarray(values)
        return s[name]

    def market_series(self, name: str) -> np.ndarray:
        """One per-slot series as a (T,) array (`engine.series.SERIES`)."""
        if name == "p2p_traded_kwh":
            return self.recorded.series["p2p_bought_kwh"].sum(axis=1)
        return self.recorded.market[name]

    def _timeseries_table(self, t0: int, t1: int) -> pa.Table:
        names = self.community.names
        n_p = len(names)
        starts = self.community.grid.starts_utc[t0:t1]
        cols: dict[str, pa.Array] = {
            "slot_start": pa.array(np.repeat(starts.values, n_p), pa.timestamp("ns", tz="UTC")),
            "participant": pa.DictionaryArray.from_arrays(
                pa.array(np.tile(np.arange(n_p, dtype=np.int32), t1 - t0)), pa.array(names)
            ),
        }
        for name in TIMESERIES_COLUMNS:
            cols[name] = pa.array(self.series(name)[t0:t1].ravel())
        cols["ev_plugged"] = pa.array(self.community.profiles.ev_plugged[t0:t1].ravel())
        return pa.table(cols)

    @cached_property
    def timeseries(self) -> pd.DataFrame:
        """One row per slot and participant (slot-major), columns as in timeseries.parquet."""
        df: pd.DataFrame = self._timeseries_table(0, self.community.grid.n_slots).to_pandas()
        return df

    @cached_property
    def trades(self) -> pd.DataFrame:
        """One row per trade: pool fills have 'pool' as buyer or seller."""
        arr = self.recorded.trades.arrays()
        names = np.asarray([*self.community.names, "pool"], dtype=object)
        pick = np.where(arr["buyer"] == POOL, len(names) - 1, arr["buyer"])
        pick_s = np.where(arr["seller"] == POOL, len(names) - 1, arr["seller"])
        return pd.DataFrame(
            {
                "slot_start": self.community.grid.starts_utc[arr["slot"].astype(np.int64)],
                "buyer": pd.Categorical(names[pick], categories=np.unique(names)),
                "seller": pd.Categorical(names[pick_s], categories=np.unique(names)),
                "quantity_kwh": arr["quantity_kwh"],
                "price": arr["price"],
            }
        )

    @cached_property
    def prices(self) -> pd.DataFrame:
        """One row per slot: tariff and market prices, traded energy, where the money went."""
        columns: dict[str, Any] = {
            "slot_start": self.community.grid.starts_utc,
            "retail_price": self.community.retail_price,
            "feed_in_price": self.community.feed_in_price,
        }
        for name in PRICE_COLUMNS:
            columns[name] = self.market_series(name)
        return pd.DataFrame(columns)

    def report_html(self) -> str:
        """The self-contained HTML report."""
        from peergrid.report.html import ReportData, render_report

        keys = (
            "demand_kwh",
            "generation_kwh",
            "storage_charge_kwh",
            "storage_discharge_kwh",
            "net_kwh",
            "grid_import_kwh",
            "grid_export_kwh",
            "p2p_bought_kwh",
            "p2p_sold_kwh",
            "battery_soc_end_kwh",
            "ev_soc_end_kwh",
            "baseline_grid_import_kwh",
            "baseline_grid_export_kwh",
        )
        series: dict[str, np.ndarray] = {k: self.series(k) for k in keys}
        series["battery_capacity_kwh"] = self.community.assets.battery.capacity_kwh
        series["ev_capacity_kwh"] = self.community.assets.ev.capacity_kwh
        data = ReportData(
            title=f"{self.summary['scenario']} — {self.summary['market']}",
            grid=self.community.grid,
            names=list(self.community.names),
            summary=self.summary,
            participants=self.participants,
            series=series,
            prices=self.prices,
            currency=str(self.summary["cost"]["currency"]),
            network=self._network_report(),
        )
        return render_report(data)

    def _network_report(self) -> Any:
        network = self.extra.get("network")
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
            times_local=self.community.grid.starts_local,
            dt_h=self.community.grid.dt_h,
            v_min_pu=spec.v_min_pu,
            v_max_pu=spec.v_max_pu,
            max_loading_pct=spec.max_loading_pct,
            p2p=case("p2p"),
            baseline=case("baseline"),
            envelope_note=notes.get(network.envelope_kind, network.envelope_kind),
        )

    def save(self, out_dir: str | Path) -> Path:
        """Write the run directory atomically (see `engine.atomic`) and return its path."""
        return write_dir_atomically(out_dir, self.write_files)

    def write_files(self, d: Path) -> None:
        """Write every file of the run directory into the existing folder `d`."""
        n_t = self.community.grid.n_slots
        writer: pq.ParquetWriter | None = None
        try:
            for t0 in range(0, n_t, _CHUNK_SLOTS):
                table = self._timeseries_table(t0, min(n_t, t0 + _CHUNK_SLOTS))
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
        self.trades.to_parquet(d / "trades.parquet", index=False)
        network = self.extra.get("network")
        if network is not None:
            from peergrid.engine.network import network_json, write_network_parquet

            times = self.community.grid.starts_utc
            write_network_parquet(d / "network.parquet", network.setup, network.flows, times)
            (d / "network.json").write_text(
                network_json(network.setup, list(self.community.names)), "utf-8"
            )
        self.prices.to_parquet(d / "prices.parquet", index=False)
        self.participants.to_csv(d / "participants.csv", index=False, float_format="%.6f")
        header = (
            "# Resolved by peergrid: every default explicit, groups expanded.\n"
            "# `peergrid run DIR/scenario.resolved.toml` repeats this run exactly."
        )
        (d / "scenario.resolved.toml").write_text(to_toml(self.scenario, header), "utf-8")
        (d / "report.html").write_text(self.report_html(), encoding="utf-8")
        (d / "summary.json").write_text(
            json.dumps(json_ready(self.summary), indent=2) + "\n", "utf-8"
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
