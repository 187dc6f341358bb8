"""A run's result: the arrays the engine computed and tables for people and programs.

The run directory is written by the `rundir` face (`peergrid.write_run`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from peergrid.engine.community import Community
from peergrid.engine.loop import POOL, Recorded
from peergrid.engine.series import PRICE_COLUMNS, derive, timeseries_columns
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
        derived = derive(name, s)
        if derived is not None:
            return derived
        if name.startswith("baseline_"):
            return self.baseline[name.removeprefix("baseline_")]
        if name in ("network_charge", "loss_charge"):
            network = self.extra.get("network")
            if network is None:
                return np.zeros_like(s["net_kwh"])
            values = (
                network.network_charge_slot
                if name == "network_charge"
                else network.loss_charge_slot
            )
            return np.zeros_like(s["net_kwh"]) if values is None else np.asarray(values)
        return s[name]

    def market_series(self, name: str) -> np.ndarray:
        """One per-slot series as a (T,) array (`engine.series.SERIES`)."""
        if name == "p2p_traded_kwh":
            traded: np.ndarray = self.recorded.series["p2p_bought_kwh"].sum(axis=1)
            return traded
        return self.recorded.market[name]

    @cached_property
    def timeseries(self) -> pd.DataFrame:
        """One row per slot and participant (slot-major), columns as in timeseries.parquet."""
        names = self.community.names
        n_t, n_p = self.community.grid.n_slots, len(names)
        columns: dict[str, Any] = {
            "slot_start": np.repeat(self.community.grid.starts_utc, n_p),
            "participant": pd.Categorical.from_codes(
                np.tile(np.arange(n_p, dtype=np.int32), n_t),  # type: ignore[arg-type]
                categories=pd.Index(list(names)),
            ),
        }
        for name in timeseries_columns("network" in self.extra):
            columns[name] = self.series(name).ravel()
        columns["ev_plugged"] = self.community.profiles.ev_plugged.ravel()
        return pd.DataFrame(columns)

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
