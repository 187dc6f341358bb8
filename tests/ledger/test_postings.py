"""Exact money: postings sum to zero in every entry, and every account's postings sum to its
float total rounded to the minor unit (the accrual never drifts)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from peergrid.ledger.encoding import Account, Memo
from peergrid.ledger.postings import Accrual, balances

amounts = st.floats(-50.0, 50.0, allow_nan=False, allow_subnormal=False)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 6),
    steps=st.integers(1, 40),
    exponent=st.sampled_from([0, 2, 3]),
    data=st.data(),
)
def test_entries_sum_to_zero_and_totals_round_exactly(
    n: int, steps: int, exponent: int, data: st.DataObject
) -> None:
    acc = Accrual(n, exponent)
    history = []
    posted = []
    energies = []
    for _ in range(steps):
        pay = data.draw(arrays(np.float64, n, elements=amounts))
        kwh = data.draw(arrays(np.float64, n, elements=amounts))
        op = data.draw(amounts)
        retailer = -float(pay.sum()) - op  # the counterparties receive what participants pay
        p = acc.post(pay, {Account.RETAILER: retailer, Account.OPERATOR: op}, Memo.ENERGY, kwh)
        assert int(p.amount_minor.sum()) == 0
        assert int(p.energy_wh.sum()) == 0
        assert set(p.account[p.account < 0].tolist()) <= {a.value for a in Account}
        history.append(pay)
        energies.append(kwh)
        posted.append(p)
    got = balances(posted, n)
    scale = 10**exponent
    for i in range(n):
        exact = math.fsum(float(h[i]) * scale for h in history)
        # the float total rounded to the minor unit (ties excepted: the running sum is exact
        # to far below a minor unit, so it may only differ where exact is within 1e-6 of .5)
        assert abs(got[i][0] - exact) <= 0.5 + 1e-6
        wh = math.fsum(float(e[i]) * 1000 for e in energies)
        assert abs(got[i][1] - wh) <= 0.5 + 1e-6
    assert -acc.participant_totals()[0] == got[0][0]


def test_the_residue_goes_to_the_rounding_account() -> None:
    acc = Accrual(3, 2)
    # three participants each pay a third of a cent; the retailer receives one cent
    p = acc.post(np.full(3, -1 / 300), {Account.RETAILER: 0.01}, Memo.ENERGY)
    assert p.amount_minor.sum() == 0
    assert Account.ROUNDING in p.account.tolist()
    assert p.memo[p.account == Account.ROUNDING][0] == Memo.ROUNDING


def test_a_year_of_small_amounts_does_not_drift() -> None:
    rng = np.random.default_rng(1)
    acc = Accrual(4, 2)
    total = np.zeros(4)
    got = np.zeros(4, dtype=np.int64)
    for _ in range(35_040):
        pay = -rng.uniform(0, 0.02, 4)  # fractions of a cent, every slot
        total += pay
        p = acc.post(pay, {Account.RETAILER: float(-pay.sum())}, Memo.ENERGY)
        got += p.amount_minor[:4]
    np.testing.assert_array_equal(got, np.rint(total * 100).astype(np.int64))
