"""The scenario format (TOML, `schema_version = 1`), as pydantic models.

This module is the single source of truth for every scenario field: its unit (in the name), its
default and its bounds. The engine trusts a validated `Scenario` and does not re-check.

Explicit participants take plain numbers. Groups (`[[groups]]`) describe many similar
participants: a numeric field is either a number or a `[low, high]` range drawn uniformly per
participant, a text field is either a string or a list of choices, and each optional asset has a
`share` (the fraction of the group that has it). Groups are expanded with the scenario seed;
`scenario.resolved.toml` lists the expanded participants explicitly.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

SCHEMA_VERSION = 1

#: The forecaster a scenario uses unless it says otherwise (docs/forecasting.md says why).
DEFAULT_FORECAST_METHOD = "persistence"

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")

DemandKind = Literal["working", "family", "retired", "student"]
ThermalKind = Literal["heat-pump", "air-conditioner"]
DayFilter = Literal["all", "weekdays", "weekends"]
FillPolicy = Literal["error", "zero", "interpolate", "ffill"]
EnergyUnit = Literal["kWh", "Wh", "kW", "W"]


class Strict(BaseModel):
    """Base model: unknown keys are an error, values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_hhmm(value: str) -> str:
    if not _HHMM.match(value):
        raise ValueError(f"must be a local clock time 'HH:MM' (got {value!r})")
    return value


def hhmm_to_hours(value: str) -> float:
    """'07:30' → 7.5 [h]."""
    hh, mm = value.split(":")
    return int(hh) + int(mm) / 60.0


# ---------------------------------------------------------------------------------------------
# time, location, tariff, market, EMS, data


class TimeSpec(Strict):
    """The run's time axis: whole local days from `start`."""

    start: dt.date = Field(description="first local day of the run")
    days: int = Field(ge=1, le=3660, description="number of local days [d]")
    slot_minutes: Literal[5, 10, 15, 20, 30, 60] = Field(15, description="slot length [min]")
    timezone: str = Field("Europe/Berlin", description="IANA time zone of the community")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value


class LocationSpec(Strict):
    """Where the community is and which offline weather drives PV and heating."""

    weather: str = Field("dwd-try-2010:4", description="weather source (see `peergrid weather`)")
    latitude: float | None = Field(None, ge=-90, le=90, description="[deg]; default: station")
    longitude: float | None = Field(None, ge=-180, le=180, description="[deg]; default: station")
    altitude_m: float | None = Field(None, ge=-500, le=9000, description="[m]; default: station")


class TouPeriod(Strict):
    """A time-of-use period: `price_per_kwh` applies from `start` to `end` local clock time."""

    start: str
    end: str
    price_per_kwh: float = Field(ge=0)
    days: DayFilter = "all"

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        return _check_hhmm(value)


class TariffSpec(Strict):
    """The retailer's prices. Every P2P saving is measured against these."""

    currency: str = Field("EUR", min_length=1, max_length=8)
    retail_per_kwh: float = Field(0.32, ge=0, description="flat import price [currency/kWh]")
    retail_tou: list[TouPeriod] = Field(
        default_factory=list, description="time-of-use periods overriding the flat import price"
    )
    feed_in_per_kwh: float = Field(0.08, ge=0, description="export price [currency/kWh]")
    daily_charge: float = Field(0.0, ge=0, description="fixed charge per participant and day")

    @model_validator(mode="after")
    def _feed_in_below_retail(self) -> TariffSpec:
        lowest = min([self.retail_per_kwh, *(p.price_per_kwh for p in self.retail_tou)])
        if self.feed_in_per_kwh > lowest:
            raise ValueError(
                f"feed_in_per_kwh ({self.feed_in_per_kwh}) must not exceed the lowest retail "
                f"price ({lowest}): P2P prices live between the two"
            )
        return self


class MarketSpec(Strict):
    mechanism: str = Field("sdr", description="market mechanism (see `peergrid markets`)")
    params: dict[str, Any] = Field(default_factory=dict)
    gate_closure: str | None = Field(
        None,
        description="when orders are due: 'day-ahead HH:MM' (local time on the day before) or "
        "'intraday K' (K slots before each slot); default: one hour before each slot",
    )


class ForecastSpec(Strict):
    """How each home's EMS forecasts its demand and PV at gate closure (`peergrid forecasters`)."""

    method: str = Field(
        DEFAULT_FORECAST_METHOD, description="forecaster (see `peergrid forecasters`)"
    )
    params: dict[str, Any] = Field(default_factory=dict)
    history_days: int = Field(
        28, ge=1, le=400, description="days of meter and weather history before the run [d]"
    )


class SettlementSpec(Strict):
    """How deviations (metered − committed energy) are settled."""

    deviation_rule: Literal["retail", "net-then-causer", "penalty"] = Field(
        "retail",
        description="'retail': each deviation with the retailer at retail / feed-in; "
        "'net-then-causer': netted in the community first, the residual's cost to those who "
        "caused it; 'penalty': 'retail' plus penalty_per_kwh",
    )
    penalty_per_kwh: float = Field(
        0.05, ge=0, le=10, description="spread of the 'penalty' rule [currency/kWh]"
    )


class PrivacySpec(Strict):
    """What the community publishes, and how (docs/privacy.md).

    Every published cell passes disclosure control (at least `min_households` contributing,
    none above `dominance_share` of the cell); with `dp = true` the published profiles are
    instead released with user-level differential privacy (OpenDP), spending `epsilon` (and
    `delta`) of the run's budget, split equally over the released series.
    """

    min_households: int = Field(10, ge=1, le=100_000, description="k: fewest households per cell")
    dominance_share: float = Field(
        0.5, gt=0, le=1, description="largest share one household may hold of a cell"
    )
    dp: bool = Field(False, description="release the public profiles with differential privacy")
    epsilon: float = Field(1.0, gt=0, le=100, description="the run's privacy budget ε")
    delta: float = Field(0.0, ge=0, lt=1, description="the run's δ (Gaussian only, > 0 then)")
    mechanism: Literal["laplace", "gaussian"] = Field(
        "laplace", description="noise of the DP releases"
    )
    clip_kw: float = Field(
        10.0,
        gt=0,
        le=1000,
        description="each household's contribution per slot is clipped to this power × slot "
        "length (the connection's capacity) [kW]",
    )

    @model_validator(mode="after")
    def _gaussian_needs_delta(self) -> PrivacySpec:
        if self.dp and self.mechanism == "gaussian" and self.delta <= 0:
            raise ValueError("mechanism 'gaussian' needs delta > 0")
        return self


class LiveSpec(Strict):
    """How `peergrid serve` runs the scenario as a live market (docs/live.md).

    Slot s of the live market is slot `first_slot` + s of the scenario's period (its tariff,
    its local days, its households' data); on the wall clock it starts `slot_seconds` × s after
    the market opens.
    """

    first_slot: int = Field(
        0,
        ge=0,
        description="slot of the scenario's period the live market's slot 0 is; default: the "
        "first (local midnight of the first day)",
    )
    slot_seconds: float | None = Field(
        None,
        gt=0,
        le=86_400,
        description="wall-clock length of a slot [s]; default: the slot length (real time); "
        "shorter accelerates a demonstration",
    )
    settle_after_s: float | None = Field(
        None,
        ge=0,
        le=86_400,
        description="how long after a slot ends its meters have to report before it settles "
        "[s]; default: a quarter of slot_seconds",
    )
    connection_kw: float = Field(
        24.0,
        gt=0,
        le=100_000,
        description="each participant's connection capacity unless registered with its own "
        "(3 × 35 A × 230 V ≈ 24 kW) [kW]",
    )
    price_floor_per_kwh: float = Field(
        0.0, ge=-100, le=100, description="lowest limit price an order may carry [currency/kWh]"
    )
    price_cap_per_kwh: float = Field(
        1.0, ge=-100, le=100, description="highest limit price an order may carry [currency/kWh]"
    )

    @model_validator(mode="after")
    def _floor_below_cap(self) -> LiveSpec:
        if self.price_floor_per_kwh > self.price_cap_per_kwh:
            raise ValueError(
                f"price_floor_per_kwh ({self.price_floor_per_kwh}) must not exceed "
                f"price_cap_per_kwh ({self.price_cap_per_kwh})"
            )
        return self


class EmsSpec(Strict):
    policy: str = Field("self-consumption", description="EMS policy of every participant")
    params: dict[str, Any] = Field(default_factory=dict)


class ChargesSpec(Strict):
    """Network usage charges on P2P trades, paid to the network operator (Baroche et al. 2019)."""

    kind: Literal["none", "uniform", "distance", "zonal"] = Field(
        "none", description="uniform per kWh, by electrical distance, or on inter-zone trades"
    )
    fee_per_kwh: float = Field(
        0.0, ge=0, le=10, description="uniform fee, or the inter-zone fee [currency/kWh]"
    )
    fee_per_kwh_per_ohm: float = Field(
        0.0, ge=0, le=100, description="distance fee per kWh and ohm of electrical distance"
    )
    intra_zone_fee_per_kwh: float = Field(0.0, ge=0, le=10, description="fee inside a zone")
    payer: Literal["buyer", "seller", "split"] = Field("split", description="who pays the fee")


class NetworkSpec(Strict):
    """The distribution feeder the participants sit on, its limits and the operator's rules."""

    feeder: str | None = Field(None, description="built-in feeder (see `peergrid feeders`)")
    file: str | None = Field(
        None, description="pandapower JSON network, relative to the scenario file"
    )
    buses: dict[str, int] = Field(
        default_factory=dict,
        description="participant name → pandapower bus index; the others are placed by seed "
        "on household connection points",
    )
    v_min_pu: float = Field(0.94, gt=0.5, lt=1.0, description="lower voltage limit [pu]")
    v_max_pu: float = Field(1.10, gt=1.0, lt=1.5, description="upper voltage limit [pu]")
    max_loading_pct: float = Field(100.0, gt=0, le=500, description="line/transformer limit")
    load_power_factor: float = Field(
        0.95, gt=0.5, le=1.0, description="power factor of imports (lagging); exports at 1"
    )
    export_limit_kw: float | None = Field(
        None, gt=0, description="static export cap per connection point [kW]"
    )
    import_limit_kw: float | None = Field(
        None, gt=0, description="static import cap per connection point [kW]"
    )
    envelopes: Literal["none", "dynamic"] = Field(
        "none", description="dynamic operating envelopes computed by the network operator"
    )
    permissioning: bool = Field(
        True, description="the operator blocks CDA trades that would breach a limit"
    )
    coordinated_constraints: bool = Field(
        True, description="the coordinated market schedules with LinDistFlow constraints"
    )
    charges: ChargesSpec = Field(default_factory=ChargesSpec)
    loss_allocation: bool = Field(
        True, description="allocate losses to trades with bilateral exchange coefficients"
    )
    compare_unconstrained: bool = Field(
        False,
        description="also run P2P without envelopes, permissioning and network constraints "
        "and report its voltages and savings",
    )

    @model_validator(mode="after")
    def _one_source(self) -> NetworkSpec:
        if (self.feeder is None) == (self.file is None):
            raise ValueError("give exactly one of 'feeder' (built-in) or 'file' (pandapower JSON)")
        if self.v_min_pu >= self.v_max_pu:
            raise ValueError("v_min_pu must be below v_max_pu")
        return self


class DataSpec(Strict):
    """User meter data: participants named in the file take demand and PV from it."""

    meter_file: str = Field(description="CSV or Parquet, relative to the scenario file")
    unit: EnergyUnit = "kWh"
    fill: FillPolicy = "error"


# ---------------------------------------------------------------------------------------------
# assets of one participant


class DemandSpec(Strict):
    annual_kwh: float = Field(3500.0, gt=0, le=1e6, description="expected annual consumption")
    occupants: int = Field(2, ge=1, le=12)
    kind: DemandKind = "family"


class PvSpec(Strict):
    kwp: float = Field(gt=0, le=10_000, description="DC peak power [kWp]")
    tilt_deg: float = Field(30.0, ge=0, le=90)
    azimuth_deg: float = Field(180.0, ge=0, lt=360, description="clockwise from north")


class BatterySpec(Strict):
    capacity_kwh: float = Field(gt=0, le=100_000)
    power_kw: float = Field(gt=0, le=100_000)
    round_trip_efficiency: float = Field(0.9, gt=0, le=1)
    soc_min: float = Field(0.05, ge=0, lt=1, description="fraction of capacity")
    soc_max: float = Field(1.0, gt=0, le=1, description="fraction of capacity")
    soc_initial: float = Field(0.5, ge=0, le=1, description="fraction of capacity")

    @model_validator(mode="after")
    def _soc_order(self) -> BatterySpec:
        if not self.soc_min < self.soc_max:
            raise ValueError(f"soc_min ({self.soc_min}) must be < soc_max ({self.soc_max})")
        if not self.soc_min <= self.soc_initial <= self.soc_max:
            raise ValueError(
                f"soc_initial ({self.soc_initial}) must lie in [soc_min, soc_max] "
                f"= [{self.soc_min}, {self.soc_max}]"
            )
        return self


class EvSpec(Strict):
    capacity_kwh: float = Field(60.0, gt=0, le=300)
    power_kw: float = Field(11.0, gt=0, le=350, description="home charger limit [kW]")
    round_trip_efficiency: float = Field(0.88, gt=0, le=1)
    v2h: bool = Field(False, description="may discharge to the home and grid while plugged")
    soc_min: float = Field(0.2, ge=0, lt=1, description="v2h never goes below this fraction")
    target_soc: float = Field(0.8, gt=0, le=1, description="wanted at every departure")
    soc_initial: float = Field(0.6, ge=0, le=1)
    daily_km: float = Field(35.0, ge=0, le=1000, description="mean distance on a driving day")
    kwh_per_km: float = Field(0.18, gt=0, le=1)

    @model_validator(mode="after")
    def _soc_order(self) -> EvSpec:
        if self.soc_min > self.target_soc:
            raise ValueError(f"soc_min ({self.soc_min}) must be <= target_soc ({self.target_soc})")
        return self


class ThermalSpec(Strict):
    kind: ThermalKind = "heat-pump"
    power_kw: float = Field(3.0, gt=0, le=1000, description="electric power limit [kW]")
    cop: float = Field(3.5, gt=0, le=10, description="rated coefficient of performance")
    ua_kw_per_k: float = Field(0.18, gt=0, le=100, description="building heat loss [kW/K]")
    capacity_kwh_per_k: float = Field(6.0, gt=0, le=10_000, description="heat capacity [kWh/K]")
    comfort_min_c: float = Field(19.5, ge=5, le=35)
    comfort_max_c: float = Field(22.5, ge=5, le=35)
    initial_c: float | None = Field(None, description="default: middle of the comfort band")

    @model_validator(mode="after")
    def _band(self) -> ThermalSpec:
        if not self.comfort_min_c < self.comfort_max_c:
            raise ValueError(
                f"comfort_min_c ({self.comfort_min_c}) must be < comfort_max_c "
                f"({self.comfort_max_c})"
            )
        return self


class ShiftableSpec(Strict):
    appliance: str = Field(min_length=1, max_length=40)
    energy_kwh: float = Field(gt=0, le=100, description="energy of one run")
    duration_min: int = Field(gt=0, le=24 * 60, description="length of one run")
    window_start: str = Field("08:00", description="earliest local start 'HH:MM'")
    window_end: str = Field("22:00", description="latest local end 'HH:MM' (may wrap midnight)")
    runs_per_week: float = Field(3.0, gt=0, le=14)

    @field_validator("window_start", "window_end")
    @classmethod
    def _clock(cls, value: str) -> str:
        return _check_hhmm(value)


_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class ParticipantSpec(Strict):
    """One participant (household or building) and its assets."""

    name: str = Field(pattern=_NAME)
    demand: DemandSpec = Field(default_factory=DemandSpec)
    pv: PvSpec | None = None
    battery: BatterySpec | None = None
    ev: EvSpec | None = None
    heating: ThermalSpec | None = None
    shiftable: list[ShiftableSpec] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# groups: ranges drawn per participant with the scenario seed


def _check_range(value: Any) -> Any:
    if isinstance(value, list):
        if len(value) != 2:
            raise ValueError(f"a range is [low, high] (got {len(value)} values)")
        low, high = value
        if low > high:
            raise ValueError(f"range low ({low}) must be <= high ({high})")
    return value


FloatOrRange = float | tuple[float, float]
IntOrRange = int | tuple[int, int]


class Share(Strict):
    share: float = Field(1.0, ge=0, le=1, description="fraction of the group that has it")


class DemandGroup(Strict):
    annual_kwh: FloatOrRange = (2500.0, 5000.0)
    occupants: IntOrRange = (1, 5)
    kind: DemandKind | list[DemandKind] = ["working", "family", "retired", "student"]


class PvGroup(Share):
    kwp: FloatOrRange = (3.0, 8.0)
    tilt_deg: FloatOrRange = (20.0, 40.0)
    azimuth_deg: FloatOrRange = (135.0, 225.0)


class BatteryGroup(Share):
    capacity_kwh: FloatOrRange = (5.0, 13.5)
    power_kw: FloatOrRange = (2.5, 5.0)
    round_trip_efficiency: FloatOrRange = 0.9
    soc_min: float = Field(0.05, ge=0, lt=1)
    soc_max: float = Field(1.0, gt=0, le=1)
    soc_initial: float = Field(0.5, ge=0, le=1)


class EvGroup(Share):
    capacity_kwh: FloatOrRange = (40.0, 80.0)
    power_kw: FloatOrRange = (7.4, 11.0)
    round_trip_efficiency: FloatOrRange = 0.88
    v2h: bool = False
    soc_min: float = Field(0.2, ge=0, lt=1)
    target_soc: float = Field(0.8, gt=0, le=1)
    soc_initial: FloatOrRange = (0.4, 0.8)
    daily_km: FloatOrRange = (15.0, 60.0)
    kwh_per_km: FloatOrRange = (0.15, 0.22)


class ThermalGroup(Share):
    kind: ThermalKind = "heat-pump"
    power_kw: FloatOrRange = (2.0, 4.0)
    cop: FloatOrRange = (3.0, 4.0)
    ua_kw_per_k: FloatOrRange = (0.12, 0.25)
    capacity_kwh_per_k: FloatOrRange = (4.0, 8.0)
    comfort_min_c: float = 19.5
    comfort_max_c: float = 22.5


class ShiftableGroup(Share):
    appliance: str = Field(min_length=1, max_length=40)
    energy_kwh: FloatOrRange
    duration_min: int = Field(gt=0, le=24 * 60)
    window_start: str = "08:00"
    window_end: str = "22:00"
    runs_per_week: FloatOrRange = 3.0

    @field_validator("window_start", "window_end")
    @classmethod
    def _clock(cls, value: str) -> str:
        return _check_hhmm(value)


class GroupSpec(Strict):
    """`count` similar participants named `{name_prefix}-01`, `{name_prefix}-02`, ..."""

    name_prefix: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,40}$")
    count: int = Field(ge=1, le=100_000)
    demand: DemandGroup = Field(default_factory=DemandGroup)
    pv: PvGroup | None = None
    battery: BatteryGroup | None = None
    ev: EvGroup | None = None
    heating: ThermalGroup | None = None
    shiftable: list[ShiftableGroup] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _ranges(cls, data: Any) -> Any:
        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for value in node.values():
                    if (
                        isinstance(value, list)
                        and value
                        and all(
                            isinstance(x, int | float) and not isinstance(x, bool) for x in value
                        )
                    ):
                        _check_range(value)
                    else:
                        walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk(data)
        return data


# ---------------------------------------------------------------------------------------------


class Scenario(Strict):
    """A community, its tariff, its market and its EMS over a period."""

    schema_version: Literal[1] = Field(description="scenario format version")
    name: str = Field(pattern=_NAME)
    description: str = ""
    seed: int = Field(0, ge=0, le=2**63 - 1)
    time: TimeSpec
    location: LocationSpec = Field(default_factory=LocationSpec)
    tariff: TariffSpec = Field(default_factory=TariffSpec)
    market: MarketSpec = Field(default_factory=MarketSpec)
    forecast: ForecastSpec = Field(default_factory=ForecastSpec)
    settlement: SettlementSpec = Field(default_factory=SettlementSpec)
    privacy: PrivacySpec = Field(default_factory=PrivacySpec)
    live: LiveSpec = Field(default_factory=LiveSpec)
    ems: EmsSpec = Field(default_factory=EmsSpec)
    data: DataSpec | None = None
    network: NetworkSpec | None = None
    participants: list[ParticipantSpec] = Field(default_factory=list)
    groups: list[GroupSpec] = Field(default_factory=list)

    _base_dir: Path | None = PrivateAttr(None)

    @property
    def base_dir(self) -> Path | None:
        """Folder that relative data paths (meter files) are read from; None if built in."""
        return self._base_dir

    def with_base_dir(self, base_dir: Path | None) -> Scenario:
        """A copy whose relative data paths are read from `base_dir`."""
        out = self.model_copy()
        out._base_dir = base_dir
        return out

    @model_validator(mode="after")
    def _someone(self) -> Scenario:
        if not self.participants and not self.groups:
            raise ValueError("a scenario needs at least one participant or group")
        names = [p.name for p in self.participants]
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name in seen:
                raise ValueError(f"participants[{i}].name: duplicate name {name!r}")
            seen.add(name)
        if self.market.gate_closure is not None:
            from peergrid.markets.gate import gate_closure_problem

            problem = gate_closure_problem(self.market.gate_closure, self.time.slot_minutes)
            if problem is not None:
                raise ValueError(f"market.gate_closure: {problem}")
        if self.network is not None and self.network.buses and not self.groups:
            unknown = sorted(set(self.network.buses) - seen)
            if unknown:
                raise ValueError(f"network.buses: unknown participant {unknown[0]!r}")
        return self
