"""The forecaster registry: names, listing, and errors that name the field."""

from __future__ import annotations

import pytest

from peergrid.errors import InputError
from peergrid.forecast.base import ForecastData, Forecaster
from peergrid.forecast.registry import forecaster_names, list_forecasters, make_forecaster


def test_names_and_listing() -> None:
    assert forecaster_names() == ["ml", "perfect", "persistence", "seasonal-naive"]
    infos = {i.name: i for i in list_forecasters()}
    period = {p.name: p for p in infos["seasonal-naive"].params}["period"]
    assert period.default == "day" and not period.required
    assert {p.name for p in infos["ml"].params} >= {"retrain_days", "num_threads"}
    assert infos["perfect"].params == ()


def test_built_forecasters_satisfy_the_protocol(small: ForecastData) -> None:
    for name in forecaster_names():
        f = make_forecaster(name, None, small, seed=0)
        assert isinstance(f, Forecaster)
        assert f.name == name


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("oracle", None, r"forecast\.method: unknown forecaster 'oracle'; choose one of ml, "),
        ("seasonal-naive", {"period": "month"}, r"forecast\.params\.period: Input should be"),
        ("persistence", {"window": 2}, r"forecast\.params\.window: unknown parameter"),
        ("ml", {"retrain_days": 0}, r"forecast\.params\.retrain_days: Input should be greater"),
        ("ml", {"base_hour": 12.1}, r"forecast\.params\.base_hour: 12\.1 h is not the start"),
        ("perfect", [1], r"forecast\.params: must be a table"),
    ],
)
def test_errors_name_the_field(small: ForecastData, name: str, params: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        make_forecaster(name, params, small, seed=0)  # type: ignore[arg-type]
