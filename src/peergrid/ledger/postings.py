"""Exact money: the settlement's float amounts as integer postings (docs/ledger.md).

The settlement computes money in floats; the ledger posts integer minor units (cents for EUR)
and integer Wh. Rounding each slot's amount on its own would drift by up to half a cent per
slot (±175 EUR over a year of 15-minute slots in the worst case), so every account's amounts are
accrued instead: the account's running total is kept exactly enough (compensated summation) and
each posting is the change of the *rounded running total*,

    posting_k = R(S_k) − R(S_{k−1}),    S_k = Σ_{j≤k} amount_j,    R = round half to even,

so an account's postings always sum to R(its float total): a participant's bill in the ledger is
its float bill rounded to the minor unit. Within one entry the participants', the retailer's,
the operator's, the network operator's and the pool's postings are each rounded this way; what
they leave (a few minor units) is posted to the ROUNDING account, so every entry sums to zero
exactly and the residue is never lost. Energy is accrued the same way in Wh; the retailer's
energy is minus the participants' sum (the grid supplies the community's net), so energy sums to
zero too.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from peergrid.ledger.encoding import Account, Memo, Postings

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Counterparty accounts in a fixed order.
COUNTERPARTIES: tuple[Account, ...] = (
    Account.RETAILER,
    Account.OPERATOR,
    Account.NETWORK_OPERATOR,
    Account.POOL,
)


def _two_sum(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Knuth's TwoSum: s = fl(a + b) and the exact error e, a + b = s + e."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


class Accrual:
    """Running totals per account, and the postings that follow them (module docstring).

    One `Accrual` belongs to one ledger; it is the only state the postings need, and
    `state`/`from_state` let a live server persist it between slots.
    """

    def __init__(self, n_participants: int, minor_exponent: int) -> None:
        self.scale = float(10**minor_exponent)
        n = n_participants + len(COUNTERPARTIES)
        self.n_participants = n_participants
        self._hi = np.zeros(n)  # running total in minor units, high part
        self._lo = np.zeros(n)  # and its compensation
        self._posted = np.zeros(n, dtype=np.int64)  # Σ postings so far (minor units)
        self._e_hi = np.zeros(n_participants)
        self._e_lo = np.zeros(n_participants)
        self._e_posted = np.zeros(n_participants, dtype=np.int64)

    @staticmethod
    def _accrue(hi: FloatArray, lo: FloatArray, posted: IntArray, add: FloatArray) -> IntArray:
        """Add `add` to the running totals (hi + lo, updated in place) and return the change of
        their rounded value since the last posting (`posted`, updated in place)."""
        s, e = _two_sum(hi, add)
        lo += e
        hi[:] = s
        total = np.rint(hi + lo).astype(np.int64)
        out: IntArray = total - posted
        posted[:] = total
        return out

    def post(
        self,
        participant_amount: FloatArray,
        counterparty_amount: dict[Account, float],
        memo: Memo,
        participant_energy_kwh: FloatArray | None = None,
    ) -> Postings:
        """Postings of one entry.

        Args:
            participant_amount: what each participant receives (negative: pays) [currency], (P,).
            counterparty_amount: what each counterparty receives [currency].
            memo: what the amounts are for.
            participant_energy_kwh: each participant's metered net energy (export positive)
                [kWh], (P,); the retailer takes minus the sum. None: no energy is posted.

        Returns: one posting per participant (P,), then one per counterparty with a non-zero
        posting, then the ROUNDING residue when it is not zero. Money and energy sum to zero.
        """
        n_p = self.n_participants
        add = np.zeros(n_p + len(COUNTERPARTIES))
        add[:n_p] = participant_amount
        for i, acct in enumerate(COUNTERPARTIES):
            add[n_p + i] = counterparty_amount.get(acct, 0.0)
        money = self._accrue(self._hi, self._lo, self._posted, add * self.scale)
        if participant_energy_kwh is None:
            energy_p = np.zeros(n_p, dtype=np.int64)
        else:
            energy_p = self._accrue(
                self._e_hi,
                self._e_lo,
                self._e_posted,
                np.asarray(participant_energy_kwh, dtype=np.float64) * 1000.0,
            )
        counter = money[n_p:]
        energy_c = np.zeros(len(COUNTERPARTIES), dtype=np.int64)
        energy_c[0] = -int(energy_p.sum())
        keep = (counter != 0) | (energy_c != 0)
        residue = -int(money.sum())
        accounts = [np.arange(n_p, dtype=np.int64), np.array(COUNTERPARTIES, dtype=np.int64)[keep]]
        amounts = [money[:n_p], counter[keep]]
        energies = [energy_p, energy_c[keep]]
        memos = [np.full(n_p + int(keep.sum()), int(memo), dtype=np.uint8)]
        if residue:
            accounts.append(np.array([int(Account.ROUNDING)], dtype=np.int64))
            amounts.append(np.array([residue], dtype=np.int64))
            energies.append(np.zeros(1, dtype=np.int64))
            memos.append(np.array([int(Memo.ROUNDING)], dtype=np.uint8))
        return Postings(
            account=np.concatenate(accounts),
            memo=np.concatenate(memos),
            amount_minor=np.concatenate(amounts),
            energy_wh=np.concatenate(energies),
        )

    def state(self) -> dict[str, NDArray[np.generic]]:
        """The running totals (copies), enough to resume with `from_state` exactly."""
        return {
            "hi": self._hi.copy(),
            "lo": self._lo.copy(),
            "posted": self._posted.copy(),
            "e_hi": self._e_hi.copy(),
            "e_lo": self._e_lo.copy(),
            "e_posted": self._e_posted.copy(),
        }

    @classmethod
    def from_state(
        cls, n_participants: int, minor_exponent: int, state: dict[str, NDArray[np.generic]]
    ) -> Accrual:
        """The accrual whose `state()` is `state`.

        Raises:
            ValueError: an array of the wrong shape or a missing one.
        """
        out = cls(n_participants, minor_exponent)
        for name in ("hi", "lo", "posted", "e_hi", "e_lo", "e_posted"):
            mine = getattr(out, "_" + name)
            value = np.asarray(state[name], dtype=mine.dtype)
            if value.shape != mine.shape:
                raise ValueError(
                    f"accrual state {name!r} has shape {value.shape}, not {mine.shape}"
                )
            mine[:] = value
        return out

    def participant_totals(self) -> list[int]:
        """What each participant has paid so far (minus its postings) [minor units]: its
        bill in the ledger."""
        return [-int(v) for v in self._posted[: self.n_participants].tolist()]


def balances(postings: list[Postings], n_participants: int) -> dict[int, tuple[int, int]]:
    """Σ money [minor units] and Σ energy [Wh] per account over `postings`."""
    out: dict[int, tuple[int, int]] = {}
    if not postings:
        return out
    acct = np.concatenate([p.account for p in postings])
    money = np.concatenate([p.amount_minor for p in postings])
    energy = np.concatenate([p.energy_wh for p in postings])
    keys, inv = np.unique(acct, return_inverse=True)
    m = np.zeros(keys.size, dtype=np.int64)
    e = np.zeros(keys.size, dtype=np.int64)
    np.add.at(m, inv, money)
    np.add.at(e, inv, energy)
    for k, mm, ee in zip(keys.tolist(), m.tolist(), e.tolist(), strict=True):
        out[int(k)] = (int(mm), int(ee))
    return out
