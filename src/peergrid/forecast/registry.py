"""The registry of forecasters: one line per method, looked up by name.

    forecaster = make_forecaster("seasonal-naive", {"period": "week"}, data, seed=42)

`make_forecaster` validates the parameters (pydantic, unknown keys rejected) and binds the
forecaster to one run's `ForecastData`; the message of every `InputError` names the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from peergrid.errors import InputError
from peergrid.forecast.base import ForecastData, Forecaster, ForecastParams
from peergrid.forecast.ml import GradientBoosting
from peergrid.forecast.perfect import Perfect
from peergrid.forecast.persistence import Persistence
from peergrid.forecast.seasonal_naive import SeasonalNaive
from peergrid.params import ParamInfo, param_infos, params_error_text

# name → forecaster class; each class carries its `Params` model and a description
_FORECASTERS: dict[str, Any] = {
    Perfect.name: Perfect,
    Persistence.name: Persistence,
    SeasonalNaive.name: SeasonalNaive,
    GradientBoosting.name: GradientBoosting,
}


@dataclass(frozen=True)
class ForecasterInfo:
    """What `list_forecasters` reports about one forecaster."""

    name: str
    description: str
    params: tuple[ParamInfo, ...]


def forecaster_names() -> list[str]:
    """Names of the registered forecasters, sorted."""
    return sorted(_FORECASTERS)


def list_forecasters() -> list[ForecasterInfo]:
    """Every registered forecaster with its description and parameters, sorted by name."""
    return [
        ForecasterInfo(name=name, description=str(cls.description), params=param_infos(cls.Params))
        for name, cls in sorted(_FORECASTERS.items())
    ]


def _validated(name: str, params: dict[str, Any] | None) -> ForecastParams:
    if name not in _FORECASTERS:
        raise InputError(
            f"forecast.method: unknown forecaster {name!r}; choose one of "
            f"{', '.join(forecaster_names())}"
        )
    if params is not None and not isinstance(params, dict):
        raise InputError(f"forecast.params: must be a table of parameters (got {params!r})")
    try:
        validated: ForecastParams = _FORECASTERS[name].Params.model_validate(params or {})
    except ValidationError as exc:
        raise InputError(
            params_error_text(exc, "forecast.params", f"forecaster {name!r}")
        ) from None
    return validated


def forecaster_params(name: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The forecaster's validated parameters with every default explicit (for
    scenario.resolved.toml).

    Raises:
        InputError: as `make_forecaster`.
    """
    return _validated(name, params).model_dump(exclude_none=True)


def make_forecaster(
    name: str, params: dict[str, Any] | None, data: ForecastData, *, seed: int
) -> Forecaster:
    """Build a forecaster by name with validated parameters, bound to `data`.

    Raises:
        InputError: the name is not registered, a parameter is unknown or out of range (the
            message names it), or the method needs an optional package that is missing.
    """
    validated = _validated(name, params)
    forecaster: Forecaster = _FORECASTERS[name](validated, data, seed=seed)
    return forecaster
