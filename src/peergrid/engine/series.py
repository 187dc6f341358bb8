"""Every output series of a run, declared once, as data.

One row per series: its name (with its unit in the name, docs/nomenclature.md), its unit, its
shape, where the simulator takes it from, and where it appears (timeseries.parquet, the HTML
report). The slot loop records the `RECORDED` series, `derive` computes the others after the
run, and the run-directory writer and the report read the table: a new column is one row here.

Sources of recorded per-participant series, for each delivered slot:
- ``dispatch``: what the assets did (`ems.base.Dispatch`, metered);
- ``settlement``: the slot's settlement (`settlement.slot.SlotSettlement`);
- ``end``: the physical state at the end of the slot (`ems.base.PhysicalState`);
- ``plan``: what was planned at gate closure (`ems.deliver.PlannedSlot`);
- ``commitment``: what was committed at gate closure (`settlement.slot.Commitment`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

#: Net positions within this of zero place no order (`settlement.slot.NET_EPS_KWH`) [kWh].
_NO_ORDER_KWH = 1e-12

Source = Literal["dispatch", "settlement", "end", "plan", "commitment", "derived", "market"]
Shape = Literal["slot×participant", "slot"]


@dataclass(frozen=True)
class SeriesSpec:
    """One output series.

    Attributes:
        name: the series' name, unit included.
        unit: its unit ("kWh", "currency/kWh", "currency", "°C", "-").
        shape: "slot×participant" (T, P) or "slot" (T,).
        source: where the slot loop takes it from (module docstring), "market" for per-slot
            market values, or "derived" (computed after the run).
        attr: the attribute of the source object ("" for derived series).
        timeseries: a column of timeseries.parquet (per participant) or prices.parquet (per
            slot).
        description: what it is, in a few words.
    """

    name: str
    unit: str
    shape: Shape
    source: Source
    attr: str
    timeseries: bool
    description: str


_P: Shape = "slot×participant"

SERIES: tuple[SeriesSpec, ...] = (
    SeriesSpec("demand_kwh", "kWh", _P, "dispatch", "demand_kwh", True,
               "consumption except EV charging: base + heat pump/AC + appliances"),
    SeriesSpec("generation_kwh", "kWh", _P, "dispatch", "generation_kwh", True,
               "PV generation after any curtailment"),
    SeriesSpec("storage_charge_kwh", "kWh", _P, "derived", "", True, "battery + EV charging"),
    SeriesSpec("storage_discharge_kwh", "kWh", _P, "derived", "", True,
               "battery + EV discharging"),
    SeriesSpec("net_kwh", "kWh", _P, "dispatch", "net_kwh", True,
               "metered net position, export positive"),
    SeriesSpec("committed_kwh", "kWh", _P, "settlement", "committed_kwh", True,
               "net commitment made at gate closure, export positive"),
    SeriesSpec("deviation_kwh", "kWh", _P, "settlement", "deviation_kwh", True,
               "metered − committed"),
    SeriesSpec("forecast_demand_kwh", "kWh", _P, "plan", "base_demand_kwh", True,
               "base demand forecast the bid used (issued at gate closure)"),
    SeriesSpec("forecast_generation_kwh", "kWh", _P, "plan", "pv_kwh", True,
               "PV forecast the bid used (issued at gate closure)"),
    SeriesSpec("grid_import_kwh", "kWh", _P, "settlement", "grid_import_kwh", True,
               "metered import not bought in the community"),
    SeriesSpec("grid_export_kwh", "kWh", _P, "settlement", "grid_export_kwh", True,
               "metered export not sold in the community"),
    SeriesSpec("p2p_bought_kwh", "kWh", _P, "settlement", "p2p_bought_kwh", True,
               "bought in the community"),
    SeriesSpec("p2p_sold_kwh", "kWh", _P, "settlement", "p2p_sold_kwh", True,
               "sold in the community"),
    SeriesSpec("p2p_buy_price", "currency/kWh", _P, "derived", "", True,
               "price paid per kWh bought in the community"),
    SeriesSpec("p2p_sell_price", "currency/kWh", _P, "derived", "", True,
               "price received per kWh sold in the community"),
    SeriesSpec("buy_limit_price", "currency/kWh", _P, "derived", "", True,
               "limit price of the participant's buy order"),
    SeriesSpec("sell_limit_price", "currency/kWh", _P, "derived", "", True,
               "limit price of the participant's sell order"),
    SeriesSpec("fill_price", "currency/kWh", _P, "commitment", "fill_price", False,
               "price per kWh of the participant's fills (recorded; the two above derive)"),
    SeriesSpec("bid_buy_limit_price", "currency/kWh", _P, "plan", "buy_limit_price", False,
               "the EMS's limit price for a deficit (recorded; buy_limit_price derives)"),
    SeriesSpec("bid_sell_limit_price", "currency/kWh", _P, "plan", "sell_limit_price", False,
               "the EMS's limit price for a surplus (recorded; sell_limit_price derives)"),
    SeriesSpec("battery_soc_end_kwh", "kWh", _P, "end", "battery_soc_kwh", True,
               "home-battery state of charge at the end of the slot"),
    SeriesSpec("ev_soc_end_kwh", "kWh", _P, "end", "ev_soc_kwh", True,
               "EV state of charge at the end of the slot"),
    SeriesSpec("battery_charge_kwh", "kWh", _P, "dispatch", "battery_charge_kwh", True,
               "home-battery charging (AC)"),
    SeriesSpec("battery_discharge_kwh", "kWh", _P, "dispatch", "battery_discharge_kwh", True,
               "home-battery discharging (AC)"),
    SeriesSpec("ev_charge_kwh", "kWh", _P, "dispatch", "ev_charge_kwh", True,
               "EV charging at home"),
    SeriesSpec("ev_discharge_kwh", "kWh", _P, "dispatch", "ev_discharge_kwh", True,
               "EV discharging at home (v2h)"),
    SeriesSpec("thermal_kwh", "kWh", _P, "dispatch", "thermal_kwh", True,
               "heat pump / air conditioner electricity"),
    SeriesSpec("shiftable_kwh", "kWh", _P, "dispatch", "shiftable_kwh", True,
               "shiftable appliance runs"),
    SeriesSpec("ev_unserved_kwh", "kWh", _P, "dispatch", "ev_unserved_kwh", True,
               "trip energy the EV battery could not supply"),
    SeriesSpec("indoor_temp_end_c", "°C", _P, "end", "indoor_temp_c", True,
               "indoor temperature at the end of the slot (NaN without heat pump/AC)"),
    SeriesSpec("deviation_cost", "currency", _P, "settlement", "deviation_cost", True,
               "what the deviation cost under the deviation rule"),
    SeriesSpec("cost", "currency", _P, "settlement", "cost", True,
               "energy cost of the slot, positive = pays"),
    SeriesSpec("baseline_grid_import_kwh", "kWh", _P, "derived", "", True,
               "grid import in the baseline (each home alone with the retailer)"),
    SeriesSpec("baseline_grid_export_kwh", "kWh", _P, "derived", "", True,
               "grid export in the baseline"),
    SeriesSpec("baseline_cost", "currency", _P, "derived", "", True,
               "energy cost in the baseline"),
    SeriesSpec("network_charge", "currency", _P, "derived", "", True,
               "network usage charges on the slot's trades (with a feeder)"),
    SeriesSpec("loss_charge", "currency", _P, "derived", "", True,
               "losses allocated to the slot's trades, at retail (with a feeder)"),
    SeriesSpec("clearing_price", "currency/kWh", "slot", "market", "clearing_price", True,
               "the mechanism's single price, NaN where it has none"),
    SeriesSpec("buy_price", "currency/kWh", "slot", "market", "buy_price", True,
               "the mechanism's published buy price"),
    SeriesSpec("sell_price", "currency/kWh", "slot", "market", "sell_price", True,
               "the mechanism's published sell price"),
    SeriesSpec("p2p_traded_kwh", "kWh", "slot", "derived", "", True,
               "energy traded in the community"),
    SeriesSpec("operator_surplus", "currency", "slot", "market", "operator_surplus", True,
               "buyer payments − seller receipts in the market"),
    SeriesSpec("retailer_revenue", "currency", "slot", "market", "retailer_revenue", True,
               "what the retailer receives (commitment remainders and deviations)"),
    SeriesSpec("operator_revenue", "currency", "slot", "market", "operator_revenue", True,
               "what the market operator receives (surplus and penalty spreads)"),
)  # fmt: skip

BY_NAME: dict[str, SeriesSpec] = {s.name: s for s in SERIES}

#: Per-participant series the slot loop records, (name, source, attribute).
RECORDED: tuple[SeriesSpec, ...] = tuple(
    s for s in SERIES if s.shape == _P and s.source not in ("derived", "market")
)

#: Per-slot market series the slot loop records.
MARKET: tuple[SeriesSpec, ...] = tuple(s for s in SERIES if s.source == "market")

#: Columns of timeseries.parquet (after slot_start and participant), in order.
TIMESERIES_COLUMNS: tuple[str, ...] = tuple(
    s.name for s in SERIES if s.shape == _P and s.timeseries
)

#: Columns that exist only when the scenario has a feeder.
NETWORK_COLUMNS: tuple[str, ...] = ("network_charge", "loss_charge")


def timeseries_columns(with_network: bool) -> tuple[str, ...]:
    """The columns of a run's timeseries.parquet (the network ones only on a feeder)."""
    if with_network:
        return TIMESERIES_COLUMNS
    return tuple(c for c in TIMESERIES_COLUMNS if c not in NETWORK_COLUMNS)


#: Columns of prices.parquet (after slot_start, retail_price, feed_in_price), in order.
PRICE_COLUMNS: tuple[str, ...] = tuple(s.name for s in SERIES if s.shape == "slot" and s.timeseries)


def derive(name: str, recorded: dict[str, FloatArray]) -> FloatArray | None:
    """A derived per-participant series from the recorded ones, (T, P); None if `name` is not
    derived from them (the baseline and network series come from other runs).

    The per-side prices assume what the EMS's books are: one order per participant and slot
    (a participant with fills on both sides shows the price of all its fills on both)."""
    s = recorded
    if name == "storage_charge_kwh":
        return s["battery_charge_kwh"] + s["ev_charge_kwh"]
    if name == "storage_discharge_kwh":
        return s["battery_discharge_kwh"] + s["ev_discharge_kwh"]
    if name == "p2p_buy_price":
        return np.where(s["p2p_bought_kwh"] > 0.0, s["fill_price"], np.nan)
    if name == "p2p_sell_price":
        return np.where(s["p2p_sold_kwh"] > 0.0, s["fill_price"], np.nan)
    if name == "buy_limit_price":
        return np.where(s["committed_kwh"] < -_NO_ORDER_KWH, s["bid_buy_limit_price"], np.nan)
    if name == "sell_limit_price":
        return np.where(s["committed_kwh"] > _NO_ORDER_KWH, s["bid_sell_limit_price"], np.nan)
    return None
