"""The registry of market mechanisms: name → class, and nothing else.

Adding a mechanism is one module under `markets/` and one line in `_MECHANISMS`. The table is a
read-only constant; `get_mechanism` builds a fresh instance per call, so two runs in one process
never share a mechanism object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Protocol

from pydantic import ValidationError

from peergrid.errors import InputError
from peergrid.markets.base import Family, Mechanism, MechanismParams, make_params
from peergrid.markets.bilateral.mechanism import BilateralMarket
from peergrid.markets.bilateral.private_mechanism import PrivateBilateralMarket
from peergrid.markets.bill_sharing import BillSharing
from peergrid.markets.cda import ContinuousDoubleAuction
from peergrid.markets.coordinated import CoordinatedMarket
from peergrid.markets.k_double import KDoubleAuction
from peergrid.markets.mcafee import McAfeeTradeReduction
from peergrid.markets.mmr import MidMarketRate
from peergrid.markets.pay_as_bid import PayAsBidAuction
from peergrid.markets.sdr import SupplyDemandRatio
from peergrid.markets.stackelberg import StackelbergMarket
from peergrid.markets.uniform import UniformPriceAuction
from peergrid.params import ParamInfo, param_infos


class MechanismClass(Protocol):
    """What the registry needs of a mechanism class: its class-level description and a
    constructor taking its validated `Params`."""

    @property
    def name(self) -> str: ...
    @property
    def family(self) -> Family: ...
    @property
    def description(self) -> str: ...
    @property
    def Params(self) -> type[MechanismParams]: ...
    @property
    def uses_net_positions(self) -> bool: ...
    def __call__(self, params: Any) -> Mechanism: ...


_MECHANISMS: Final[Mapping[str, MechanismClass]] = MappingProxyType(
    {
        SupplyDemandRatio.name: SupplyDemandRatio,
        StackelbergMarket.name: StackelbergMarket,
        CoordinatedMarket.name: CoordinatedMarket,
        MidMarketRate.name: MidMarketRate,
        BillSharing.name: BillSharing,
        PayAsBidAuction.name: PayAsBidAuction,
        KDoubleAuction.name: KDoubleAuction,
        UniformPriceAuction.name: UniformPriceAuction,
        McAfeeTradeReduction.name: McAfeeTradeReduction,
        ContinuousDoubleAuction.name: ContinuousDoubleAuction,
        BilateralMarket.name: BilateralMarket,
        PrivateBilateralMarket.name: PrivateBilateralMarket,
    }
)


@dataclass(frozen=True)
class MechanismInfo:
    """What `list_mechanisms` reports about one mechanism."""

    name: str
    family: Family
    description: str
    uses_net_positions: bool
    params: tuple[ParamInfo, ...]


def _known() -> str:
    return ", ".join(sorted(_MECHANISMS))


def _lookup(name: str) -> MechanismClass:
    try:
        return _MECHANISMS[name]
    except (KeyError, TypeError):
        raise InputError(
            f"unknown market mechanism {name!r}; known mechanisms: {_known()}"
        ) from None


def _describe_validation_error(name: str, err: ValidationError) -> str:
    reasons = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(part) for part in e["loc"]) or "params"
        reasons.append(f"parameter {loc!r}: {e['msg']}")
    return f"market mechanism {name!r}: " + "; ".join(reasons)


def get_mechanism(name: str, params: dict[str, Any] | None = None) -> Mechanism:
    """A new instance of the mechanism registered as `name`, with validated parameters.

    Args:
        name: registry name, e.g. "sdr" or "uniform".
        params: raw parameters (from TOML or CLI); None or {} for the defaults.

    Raises:
        InputError: unknown name (the message lists the known names), or a parameter that is
            unknown or invalid (the message names each parameter and the reason).
    """
    cls = _lookup(name)
    try:
        validated = make_params(cls.Params, params)
    except ValidationError as err:
        raise InputError(_describe_validation_error(name, err)) from None
    return cls(validated)


def list_mechanisms() -> list[MechanismInfo]:
    """Every registered mechanism with its family, description and parameters, sorted by name."""
    return [
        MechanismInfo(
            name=name,
            family=cls.family,
            description=cls.description,
            uses_net_positions=cls.uses_net_positions,
            params=param_infos(cls.Params),
        )
        for name, cls in sorted(_MECHANISMS.items())
    ]
