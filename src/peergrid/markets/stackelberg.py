"""The Stackelberg community market (Liu et al. 2017): the manager leads with prices, homes follow.

The game itself is played by the `stackelberg` EMS policy (`ems/stackelberg.py`): over each
day-ahead horizon the community manager iterates internal supply-demand-ratio prices with the
homes' price-aware best responses to a fixed point, reports the iterations and falls back to the
retailer's prices where it does not converge. The engine runs that policy for the P2P run
(`ems_policy` below, with this mechanism's parameters as the leader's) and keeps the homes' own
EMS for the baseline. In each slot the realised net positions are then cleared exactly as `sdr`
clears them: the leader's pricing rule, budget balanced, within [feed-in, retail].
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from peergrid.markets.base import Family, MechanismParams
from peergrid.markets.sdr import SdrParams, SupplyDemandRatio


class StackelbergMarketParams(MechanismParams):
    """The leader's iteration (the followers use the `price-aware` EMS with its defaults)."""

    horizon_h: float = Field(24.0, gt=0.0, le=168.0, description="planning horizon [h]")
    max_iterations: int = Field(60, ge=1, le=10_000, description="leader updates per horizon")
    tolerance_per_kwh: float = Field(
        5e-3,
        gt=0.0,
        description="converged when the mean price residual is below this [currency/kWh]",
    )


class StackelbergMarket(SupplyDemandRatio):
    """`stackelberg`: SDR clearing of the net positions the leader-follower game produced."""

    name: ClassVar[str] = "stackelberg"
    family: ClassVar[Family] = "community"
    description: ClassVar[str] = (
        "Stackelberg game (Liu et al. 2017, Algorithm 1): the community manager leads with "
        "internal SDR prices, homes follow with price-aware demand response, iterated to a "
        "fixed point day ahead; slots clear with SDR."
    )
    Params: ClassVar[type[MechanismParams]] = StackelbergMarketParams
    #: The EMS policy the P2P run needs: the engine uses it instead of the homes' own EMS.
    ems_policy: ClassVar[str] = "stackelberg"

    def __init__(self, params: StackelbergMarketParams | None = None) -> None:
        super().__init__(SdrParams())
        self.params = params if params is not None else StackelbergMarketParams()

    def ems_params(self) -> dict[str, Any]:
        """The leader's parameters, handed to the `stackelberg` policy."""
        return self.params.model_dump()
