"""The privacy budget is never exceeded; a refused release leaves it unchanged; it round-trips
through JSON."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.privacy.budget import BudgetEntry, BudgetExceeded, PrivacyBudget


def _decimal(x: float) -> Fraction:
    return Fraction(repr(x))


spend_requests = st.lists(
    st.tuples(
        st.one_of(
            st.floats(1e-6, 3.0),
            st.sampled_from([0.1, 0.2, 0.3, 1.0 / 3.0, 0.7, 1e-12]),
        ),
        st.one_of(st.just(0.0), st.floats(0.0, 1e-5), st.sampled_from([1e-7, 1e-6])),
        st.sampled_from(["laplace", "gaussian"]),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(
    epsilon_total=st.one_of(st.floats(0.0, 5.0), st.sampled_from([0.0, 1.0, 0.3])),
    delta_total=st.one_of(st.just(0.0), st.floats(0.0, 1e-4)),
    requests=spend_requests,
)
def test_spends_never_exceed_the_budget(
    epsilon_total: float, delta_total: float, requests: list[tuple[float, float, str]]
) -> None:
    """Against an independent model (exact decimal sums): each spend is granted iff it fits,
    a refused spend leaves the budget as it was, and the total is never exceeded."""
    budget = PrivacyBudget(epsilon_total=epsilon_total, delta_total=delta_total)
    model_eps, model_delta = Fraction(0), Fraction(0)
    for i, (eps, delta, mechanism) in enumerate(requests):
        fits = model_eps + _decimal(eps) <= _decimal(epsilon_total) and (
            model_delta + _decimal(delta) <= _decimal(delta_total)
        )
        assert budget.can_spend(eps, delta) == fits
        before = budget
        if fits:
            budget = budget.spend(eps, delta, label=f"release-{i}", mechanism=mechanism)  # type: ignore[arg-type]
            model_eps += _decimal(eps)
            model_delta += _decimal(delta)
        else:
            with pytest.raises(BudgetExceeded, match=f"release-{i}"):
                budget.spend(eps, delta, label=f"release-{i}", mechanism=mechanism)  # type: ignore[arg-type]
            assert budget == before
        spent_eps = sum((_decimal(r.epsilon) for r in budget.releases), Fraction(0))
        spent_delta = sum((_decimal(r.delta) for r in budget.releases), Fraction(0))
        assert spent_eps <= _decimal(epsilon_total)
        assert spent_delta <= _decimal(delta_total)
        assert budget.epsilon_remaining >= 0.0 and budget.delta_remaining >= 0.0
    assert PrivacyBudget.from_json(budget.to_json()) == budget


def test_ten_releases_of_a_tenth_fit_a_budget_of_one_exactly() -> None:
    budget = PrivacyBudget(epsilon_total=1.0)
    for i in range(10):
        budget = budget.spend(0.1, label=f"profile-{i}", mechanism="laplace")
    assert budget.epsilon_spent == 1.0
    assert budget.epsilon_remaining == 0.0
    with pytest.raises(BudgetExceeded, match="refused"):
        budget.spend(1e-9, label="one more", mechanism="laplace")
    mixed = PrivacyBudget(epsilon_total=1.0)
    for eps in (0.7, 0.2, 0.1):
        mixed = mixed.spend(eps, label=str(eps), mechanism="laplace")
    assert mixed.epsilon_remaining == 0.0


def test_refusal_message_and_unchanged_budget() -> None:
    budget = PrivacyBudget(epsilon_total=1.0, delta_total=1e-6).spend(
        0.8, 5e-7, label="load", mechanism="gaussian"
    )
    with pytest.raises(BudgetExceeded) as err:
        budget.spend(0.3, label="generation", mechanism="laplace")
    message = str(err.value)
    assert "'generation'" in message and "exceed" in message and "0.2" in message
    assert isinstance(err.value, ValueError)
    with pytest.raises(BudgetExceeded, match="δ"):
        budget.spend(0.1, 6e-7, label="traded", mechanism="gaussian")
    assert budget.releases == (BudgetEntry("load", 0.8, 5e-7, "gaussian"),)


def test_json_document() -> None:
    budget = (
        PrivacyBudget(epsilon_total=2.0, delta_total=1e-5)
        .spend(1.0, label="community_load_profile", mechanism="laplace")
        .spend(0.5, 1e-6, label="p2p_traded_kwh", mechanism="gaussian")
    )
    doc = json.loads(budget.to_json())
    assert doc["composition"] == "basic sequential"
    assert doc["epsilon_remaining"] == 0.5
    assert doc["delta_remaining"] == pytest.approx(9e-6)
    assert doc["releases"] == [
        {"label": "community_load_profile", "epsilon": 1.0, "delta": 0.0, "mechanism": "laplace"},
        {"label": "p2p_traded_kwh", "epsilon": 0.5, "delta": 1e-6, "mechanism": "gaussian"},
    ]
    assert PrivacyBudget.from_json(budget.to_json()) == budget


def test_from_json_rejects_inconsistent_documents() -> None:
    budget = PrivacyBudget(epsilon_total=1.0).spend(0.6, label="a", mechanism="laplace")
    doc = json.loads(budget.to_json())
    with pytest.raises(ValueError, match="epsilon_remaining"):
        PrivacyBudget.from_json(json.dumps(doc | {"epsilon_remaining": 0.9}))
    over = doc | {"epsilon_total": 0.5}
    del over["epsilon_remaining"]
    with pytest.raises(BudgetExceeded):
        PrivacyBudget.from_json(json.dumps(over))
    with pytest.raises(ValueError, match="schema"):
        PrivacyBudget.from_json(json.dumps({"epsilon_total": 1.0}))
    with pytest.raises(ValueError, match="malformed"):
        PrivacyBudget.from_json(json.dumps({k: v for k, v in doc.items() if k != "releases"}))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: PrivacyBudget(epsilon_total=-1.0), "epsilon_total"),
        (lambda: PrivacyBudget(epsilon_total=float("inf")), "epsilon_total"),
        (lambda: PrivacyBudget(epsilon_total=1.0, delta_total=1.0), "delta_total"),
        (lambda: PrivacyBudget(1.0).spend(0.0, label="x", mechanism="laplace"), "epsilon"),
        (lambda: PrivacyBudget(1.0).spend(0.1, -1e-9, label="x", mechanism="laplace"), "delta"),
        (lambda: PrivacyBudget(1.0).spend(0.1, label=" ", mechanism="laplace"), "label"),
        (lambda: PrivacyBudget(1.0).spend(0.1, label="x", mechanism="exp"), "mechanism"),  # type: ignore[arg-type]
    ],
)
def test_validation(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]
