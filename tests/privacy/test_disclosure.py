"""Disclosure control: no published cell aggregates fewer than k households or is dominated by
one household; suppressed cells are marked with their reason."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from peergrid.privacy.disclosure import (
    REASON_LABELS,
    Disclosed,
    DisclosureRule,
    Reason,
    disclose,
    disclose_profile,
    render_cells,
    suppression_marker,
)

# the dominance check recomputed with math.fsum may differ from numpy's sum in the last bits
REL_TOL = 1e-12


def _community(
    draw: st.DrawFn, *, max_h: int = 25, max_c: int = 8, elements: st.SearchStrategy[float]
) -> np.ndarray:
    n_h = draw(st.integers(0, max_h))
    n_c = draw(st.integers(0, max_c))
    values = draw(hnp.arrays(np.float64, (n_h, n_c), elements=elements))
    # sparse: each household contributes to a random subset of the cells
    mask = draw(hnp.arrays(np.bool_, (n_h, n_c)))
    return np.where(mask, values, 0.0)


@st.composite
def communities(draw: st.DrawFn) -> tuple[np.ndarray, DisclosureRule]:
    magnitude = st.one_of(
        st.floats(-50.0, 50.0, allow_nan=False, allow_subnormal=False),
        st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e-9, 1e6]),
    )
    contributions = _community(draw, elements=magnitude)
    rule = DisclosureRule(
        min_households=draw(st.integers(1, 15)),
        dominance_share=draw(
            st.one_of(st.floats(0.05, 1.0), st.sampled_from([0.5, 1.0, 1.0 / 3.0]))
        ),
    )
    return contributions, rule


def _cell_facts(column: np.ndarray) -> tuple[int, float, float]:
    """Independent scalar recomputation: (contributors, largest |x|, Σ|x|) of one cell."""
    magnitudes = [abs(float(v)) for v in column if v != 0.0]
    return len(magnitudes), max(magnitudes, default=0.0), math.fsum(magnitudes)


@settings(max_examples=300, deadline=None)
@given(communities())
@example((np.array([[1.0, 1.0], [1.0, 0.0]]), DisclosureRule(2, 0.5)))  # a 50/50 tie is released
@example((np.array([[3.0], [-3.0], [1e-9]]), DisclosureRule(3, 0.5)))  # cancelling net flows
@example((np.zeros((0, 3)), DisclosureRule(1, 1.0)))  # no households at all
def test_no_released_cell_violates_the_rule(case: tuple[np.ndarray, DisclosureRule]) -> None:
    contributions, rule = case
    out = disclose(contributions, rule)
    n_cells = contributions.shape[1]
    for arr in (out.value, out.suppressed, out.reason, out.n_households):
        assert arr.shape == (n_cells,)
    true_sum = contributions.sum(axis=0)
    for c in range(n_cells):
        n, largest, total_abs = _cell_facts(contributions[:, c])
        assert out.n_households[c] == n
        if out.suppressed[c]:
            # marked, with a reason that really holds, and no value leaks
            assert math.isnan(out.value[c])
            assert out.reason[c] in (Reason.TOO_FEW_HOUSEHOLDS, Reason.DOMINATED)
            if out.reason[c] == Reason.TOO_FEW_HOUSEHOLDS:
                assert n < rule.min_households
            else:
                assert n >= rule.min_households
                assert largest > rule.dominance_share * total_abs * (1.0 - REL_TOL)
        else:
            assert out.reason[c] == Reason.RELEASED
            assert n >= rule.min_households
            assert largest <= rule.dominance_share * total_abs * (1.0 + REL_TOL)
            assert out.value[c] == true_sum[c]  # exactly the true sum


@st.composite
def grouped_profiles(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, DisclosureRule]:
    # quarter-kWh steps: every sum is exact in any order, so the two paths must agree bit for bit
    steps = st.integers(-40, 40).map(lambda k: k * 0.25)
    values_tp = _community(draw, max_h=6, max_c=30, elements=steps)  # (T, P)
    groups = draw(hnp.arrays(np.int64, (values_tp.shape[1],), elements=st.integers(-2, 3)))
    rule = DisclosureRule(draw(st.integers(1, 6)), draw(st.sampled_from([0.3, 0.5, 1.0])))
    return values_tp, groups, rule


@settings(max_examples=150, deadline=None)
@given(grouped_profiles())
def test_grouped_profile_equals_dense_cells(
    case: tuple[np.ndarray, np.ndarray, DisclosureRule],
) -> None:
    """disclose_profile's reduceat path equals disclose() on the dense (household, cell) matrix."""
    values_tp, groups, rule = case
    out = disclose_profile(values_tp, rule, groups)
    labels = np.unique(groups)
    n_slots = values_tp.shape[0]
    assert out.value.shape == (n_slots, labels.size)
    # dense contributions: household h → cell (t, g), zero outside its own group
    member = groups[:, None] == labels[None, :]  # (P, G)
    n_households = values_tp.shape[1]
    dense = (values_tp.T[:, :, None] * member[:, None, :]).reshape(
        n_households, n_slots * labels.size
    )
    ref = disclose(dense, rule)
    np.testing.assert_array_equal(out.value.reshape(-1), ref.value)
    np.testing.assert_array_equal(out.reason.reshape(-1), ref.reason)
    np.testing.assert_array_equal(out.n_households.reshape(-1), ref.n_households)


def test_profile_without_groups_publishes_slot_totals() -> None:
    rng = np.random.default_rng(3)
    demand_kwh = rng.uniform(0.1, 0.5, size=(96, 12))
    demand_kwh[5, 1:] = 0.0  # only one household consumes in slot 5
    demand_kwh[7, 0] = 100.0  # one household dominates slot 7
    out = disclose_profile(demand_kwh, DisclosureRule())
    assert out.value.shape == (96,)
    assert out.reason[5] == Reason.TOO_FEW_HOUSEHOLDS
    assert out.reason[7] == Reason.DOMINATED
    released = ~out.suppressed
    assert released.sum() == 94
    np.testing.assert_array_equal(out.value[released], demand_kwh.sum(axis=1)[released])


def test_worked_example() -> None:
    """Four cells, one per outcome, with the default rule (k = 10, dominance > 50 %)."""
    x = np.zeros((12, 4))
    x[:, 0] = 1.0  # 12 equal households: released
    x[:3, 1] = 1.0  # 3 households: too few
    x[:, 2] = 1.0
    x[0, 2] = 100.0  # 100 of 111: dominated
    x[:, 3] = np.arange(12) - 5.5  # signed flows that cancel: released, sum 0
    out = disclose(x)
    np.testing.assert_array_equal(out.value, [12.0, np.nan, np.nan, 0.0])
    np.testing.assert_array_equal(out.reason, [0, 1, 2, 0])
    np.testing.assert_array_equal(out.n_households, [12, 3, 12, 12])
    assert out.n_suppressed == 2
    assert out.reason.dtype == np.int8
    assert [Disclosed.reason_labels[r] for r in out.reason] == [
        "released",
        "too few households",
        "dominated",
        "released",
    ]
    assert render_cells(out, decimals=1).tolist() == [
        "12.0",
        "suppressed (n<k)",
        "suppressed (dominance)",
        "0.0",
    ]


def test_markers_and_labels() -> None:
    assert suppression_marker(Reason.RELEASED) == ""
    assert suppression_marker(Reason.TOO_FEW_HOUSEHOLDS) == "suppressed (n<k)"
    assert suppression_marker(Reason.DOMINATED) == "suppressed (dominance)"
    assert len(REASON_LABELS) == len(Reason)
    grouped = disclose_profile(np.ones((2, 3)), DisclosureRule(2, 1.0), np.array([0, 0, 1]))
    assert render_cells(grouped, decimals=0).tolist() == [
        ["2", "suppressed (n<k)"],
        ["2", "suppressed (n<k)"],
    ]


def test_dominance_share_one_disables_dominance() -> None:
    out = disclose(np.array([[5.0], [0.0]]), DisclosureRule(1, 1.0))
    assert not out.suppressed[0]
    assert disclose(np.array([[5.0]]), DisclosureRule(1, 0.99)).reason[0] == Reason.DOMINATED


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_households": 0}, "min_households"),
        ({"min_households": 2.5}, "min_households"),
        ({"min_households": True}, "min_households"),
        ({"dominance_share": 0.0}, "dominance_share"),
        ({"dominance_share": 1.5}, "dominance_share"),
        ({"dominance_share": float("nan")}, "dominance_share"),
    ],
)
def test_rule_validation_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        DisclosureRule(**kwargs)  # type: ignore[arg-type]


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="finite"):
        disclose(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="2-D"):
        disclose(np.ones(3))
    with pytest.raises(ValueError, match="groups"):
        disclose_profile(np.ones((2, 3)), groups=np.array([0, 1]))
    with pytest.raises(ValueError, match="groups"):
        disclose_profile(np.ones((2, 3)), groups=np.array([0.0, 1.0, 1.0]))
