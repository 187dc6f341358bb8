"""The registry of EMS policies: one line per policy, looked up by name.

    policy = make_policy("price-aware", {"horizon_h": 12}, n_participants, rng)

`make_policy` validates the parameters (pydantic, unknown keys rejected) and draws the
per-participant bidding factors from `rng`, so equal seeds give equal runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from peergrid.ems.base import EmsParams, EmsPolicy
from peergrid.ems.coordinated import Coordinated
from peergrid.ems.price_aware import PriceAware
from peergrid.ems.self_consumption import SelfConsumption
from peergrid.ems.stackelberg import Stackelberg
from peergrid.errors import InputError
from peergrid.params import ParamInfo, param_infos, params_error_text

# name → policy class; each class carries its `Params` model and a description
_POLICIES: dict[str, Any] = {
    SelfConsumption.name: SelfConsumption,
    PriceAware.name: PriceAware,
    Coordinated.name: Coordinated,
    Stackelberg.name: Stackelberg,
}


@dataclass(frozen=True)
class PolicyInfo:
    """What `list_policies` reports about one policy."""

    name: str
    description: str
    observes_market: bool
    params: tuple[ParamInfo, ...]


def policy_names() -> list[str]:
    """Names of the registered policies, sorted."""
    return sorted(_POLICIES)


def list_policies() -> list[PolicyInfo]:
    """Every registered policy with its description and parameters, sorted by name."""
    return [
        PolicyInfo(
            name=name,
            description=str(cls.description),
            observes_market=bool(cls.observes_market),
            params=param_infos(cls.Params),
        )
        for name, cls in sorted(_POLICIES.items())
    ]


def make_policy(
    name: str, params: dict[str, Any] | None, n_participants: int, rng: np.random.Generator
) -> EmsPolicy[Any]:
    """Build a policy by name with validated parameters.

    Raises:
        InputError: the name is not registered, or a parameter is unknown or out of range
            (the message names the parameter and the reason).
    """
    if name not in _POLICIES:
        raise InputError(
            f"ems.policy: unknown policy {name!r}; choose one of {', '.join(policy_names())}"
        )
    if params is not None and not isinstance(params, dict):
        raise InputError(f"ems.params: must be a table of parameters (got {params!r})")
    if n_participants < 1:
        raise InputError(f"ems: policy {name!r} needs at least one participant")
    cls = _POLICIES[name]
    try:
        validated: EmsParams = cls.Params.model_validate(params or {})
    except ValidationError as exc:
        raise InputError(params_error_text(exc, "ems.params", f"policy {name!r}")) from None
    policy: EmsPolicy[Any] = cls(validated, n_participants, rng)
    return policy
