"""The bilateral market's parameters (`bilateral.mechanism` has the model they set)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from peergrid.markets.base import MechanismParams

Algorithm = Literal["admm", "consensus-innovation"]
PartnerRule = Literal["nearest", "random"]


class BilateralParams(MechanismParams):
    """Parameters of the bilateral market; see `bilateral.mechanism` for the model."""

    algorithm: Algorithm = Field(
        default="admm",
        description="'admm' (Baroche et al. 2019) or 'consensus-innovation' (Sorin et al. 2019).",
    )
    curvature: float = Field(
        default=1e-4,
        gt=0.0,
        description="a in C_n = ½·a·P_n² + b_n·P_n [currency/kWh²]: how far a peer's marginal "
        "value moves from its limit price per kWh traded.",
    )
    rho: float = Field(
        default=0.1,
        gt=0.0,
        description="ADMM penalty / proximal weight ρ [currency/kWh²].",
    )
    alpha: float = Field(
        default=0.05,
        gt=0.0,
        description="consensus-innovation: price step on the imbalance P_nm + P_mn "
        "[currency/kWh²]; rho/2 or less recommended.",
    )
    beta: float = Field(
        default=0.1,
        gt=0.0,
        le=0.5,
        description="consensus-innovation: weight of the partner's price in the price update [-].",
    )
    max_iterations: int = Field(default=20_000, ge=1, description="iteration limit [-].")
    primal_tol_kwh: float = Field(
        default=1e-5, gt=0.0, description="stop when ‖P_nm + P_mn‖₂ ≤ this [kWh]."
    )
    dual_tol_per_kwh: float = Field(
        default=1e-5, gt=0.0, description="stop when the dual residual ≤ this [currency/kWh]."
    )
    partners_k: int | None = Field(
        default=None,
        ge=1,
        description="partners each peer picks on the other side; None for the complete graph.",
    )
    partner_rule: PartnerRule = Field(
        default="nearest",
        description="sparse graph: 'nearest' (k cheapest by differentiation cost, seeded random "
        "tie-break) or 'random' (seeded circulant choice).",
    )
    seed: int = Field(default=0, description="seed of the sparse graph's random choices.")
    coordinates_km: tuple[tuple[float, float], ...] | None = Field(
        default=None, description="(x, y) of each participant index [km]."
    )
    distance_km: tuple[tuple[float, ...], ...] | None = Field(
        default=None, description="distance matrix between participant indices [km]."
    )
    distance_cost_per_kwh_km: float = Field(
        default=0.0, ge=0.0, description="γ: buyer's cost per kWh and km of distance."
    )
    green_sellers: tuple[int, ...] = Field(
        default=(), description="participant indices whose energy buyers count as green."
    )
    green_premium_per_kwh: float = Field(
        default=0.0,
        ge=0.0,
        description="buyers' cost per kWh bought from a seller not in green_sellers "
        "[currency/kWh].",
    )
    preferred: tuple[tuple[int, int], ...] = Field(
        default=(), description="(participant, preferred partner) pairs."
    )
    preference_premium_per_kwh: float = Field(
        default=0.0,
        ge=0.0,
        description="a participant naming preferred partners pays this per kWh traded with "
        "anyone else [currency/kWh].",
    )
    network_charges_as_cost: bool = Field(
        default=True,
        description="add the network's pair fee (ctx.network.pair_fee_per_kwh) to c_nm, half "
        "to each side, when the context has a network.",
    )

    @model_validator(mode="after")
    def _one_distance_source(self) -> BilateralParams:
        if self.coordinates_km is not None and self.distance_km is not None:
            raise ValueError("give coordinates_km or distance_km, not both")
        if self.distance_km is not None:
            n = len(self.distance_km)
            if any(len(row) != n for row in self.distance_km):
                raise ValueError("distance_km must be a square matrix")
        return self
