"""Clear one order book without the simulator: what `peergrid.clear` and `peergrid clear` call.

    from peergrid.markets.api import clear
    report = clear({"id": [1, 2], "participant": ["ann", "bob"], "side": ["buy", "sell"],
                    "quantity_kwh": [2.0, 1.5], "price": [0.30, 0.10]}, "uniform")
    report.clearing_price, report.fills, report.to_json()

The report carries the issue's JSON fields:

- `mechanism`: the registry name;
- `clearing_price`, `buy_price`, `sell_price` [currency/kWh]: the mechanism's published prices,
  None where it has none;
- `traded_kwh`: energy traded inside the community (= bought = sold) [kWh];
- `welfare` [currency]: the gains from trade measured with the book's limit prices. Where the
  mechanism pairs orders it is Σ over trades (buyer's bid − seller's ask)·kWh; for pool mechanisms
  (SDR, MMR, bill sharing: orders trade with the community pool, not with named peers) it is
  Σ over buy fills bid·kWh − Σ over sell fills ask·kWh, which is the same number whenever both
  exist. Net-position mechanisms ignore limit prices when clearing, so their welfare is only as
  meaningful as the prices in the book (with bids at retail and asks at feed-in it is the
  retail/feed-in spread the community saves on its shared energy). Payments cancel out of it.
- `operator_surplus` [currency]: Σ buyer payments − Σ seller receipts (0 when budget balanced);
- `fills`: one entry per order, in book order: `id` (the user's id), `filled_kwh`, `price` (per
  kWh of the fill; None where nothing filled);
- `trades`: one entry per bilateral trade (`buy_id`, `sell_id`, `quantity_kwh`, `price`) for
  mechanisms that pair orders; None for pool mechanisms (there are no pairs);
- `info`: the mechanism's diagnostics (non-finite values as None).

Non-finite numbers become None, so `to_json` always writes strict JSON.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import pandas as pd

from peergrid.errors import InputError
from peergrid.markets.base import BUY_CODE, ClearingResult, MarketContext, OrderBook
from peergrid.markets.book import LabelledBook, book_from_frame
from peergrid.markets.registry import get_mechanism

OrderId = int | str


class FillRow(TypedDict):
    """One order's outcome."""

    id: OrderId
    filled_kwh: float
    price: float | None


class TradeRow(TypedDict):
    """One bilateral trade."""

    buy_id: OrderId
    sell_id: OrderId
    quantity_kwh: float
    price: float


@dataclass(frozen=True)
class ClearReport:
    """The outcome of clearing one book, with the issue's JSON fields (module docstring).

    `result` keeps the mechanism's raw `ClearingResult` (arrays by book position) for programs;
    it is not part of `to_dict`.
    """

    mechanism: str
    clearing_price: float | None
    buy_price: float | None
    sell_price: float | None
    traded_kwh: float
    welfare: float
    operator_surplus: float
    fills: list[FillRow]
    trades: list[TradeRow] | None
    info: dict[str, float | None]
    result: ClearingResult = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data (lists and dicts of numbers, strings, None)."""
        return {
            "mechanism": self.mechanism,
            "clearing_price": self.clearing_price,
            "buy_price": self.buy_price,
            "sell_price": self.sell_price,
            "traded_kwh": self.traded_kwh,
            "welfare": self.welfare,
            "operator_surplus": self.operator_surplus,
            "fills": [dict(row) for row in self.fills],
            "trades": None if self.trades is None else [dict(row) for row in self.trades],
            "info": dict(self.info),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The report as strict JSON (no NaN or Infinity)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _user_ids(book: OrderBook) -> list[OrderId]:
    if isinstance(book, LabelledBook):
        return [v if isinstance(v, str) else int(v) for v in book.order_id.tolist()]
    return [int(v) for v in book.id.tolist()]


def _tariff(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a number [currency/kWh], got {value!r}")
    if not math.isfinite(value):
        raise InputError(f"{name} must be finite, got {value}")
    return float(value)


def _check_net_positions(book: OrderBook, mechanism: str) -> None:
    """Net-position mechanisms price one net order per participant."""
    counts = np.bincount(book.participant) if book.n_orders else np.zeros(0, np.int64)
    twice = np.flatnonzero(counts > 1)
    if twice.size:
        who = int(twice[0])
        name = book.participant_name[who] if isinstance(book, LabelledBook) else str(who)
        raise InputError(
            f"market mechanism {mechanism!r} clears net positions, one order per participant; "
            f"participant {name!r} has {int(counts[who])} orders (net them first)"
        )


def welfare(book: OrderBook, result: ClearingResult) -> float:
    """Gains from trade at the book's limit prices [currency] (module docstring)."""
    if not result.pool and result.trade_kwh.size:
        spread = book.price[result.trade_buy] - book.price[result.trade_sell]
        return float(np.dot(spread, result.trade_kwh))
    signed = np.where(book.side == BUY_CODE, book.price, -book.price)
    return float(np.dot(signed, result.filled_kwh))


def report(name: str, book: OrderBook, result: ClearingResult) -> ClearReport:
    """Build the `ClearReport` of a result of mechanism `name` on `book`."""
    ids = _user_ids(book)
    fills: list[FillRow] = [
        {"id": i, "filled_kwh": float(q), "price": _finite_or_none(p)}
        for i, q, p in zip(ids, result.filled_kwh.tolist(), result.price.tolist(), strict=True)
    ]
    trades: list[TradeRow] | None = None
    if not result.pool:
        trades = [
            {"buy_id": ids[b], "sell_id": ids[s], "quantity_kwh": float(q), "price": float(p)}
            for b, s, q, p in zip(
                result.trade_buy.tolist(),
                result.trade_sell.tolist(),
                result.trade_kwh.tolist(),
                result.trade_price.tolist(),
                strict=True,
            )
        ]
    return ClearReport(
        mechanism=name,
        clearing_price=_finite_or_none(result.clearing_price),
        buy_price=_finite_or_none(result.buy_price),
        sell_price=_finite_or_none(result.sell_price),
        traded_kwh=result.traded_kwh,
        welfare=welfare(book, result),
        operator_surplus=float(result.operator_surplus),
        fills=fills,
        trades=trades,
        info={key: _finite_or_none(v) for key, v in result.info.items()},
        result=result,
    )


def clear(
    book: pd.DataFrame | Mapping[str, Any] | OrderBook,
    mechanism: str,
    *,
    retail: float | None = None,
    feed_in: float | None = None,
    **params: Any,
) -> ClearReport:
    """Clear one order book with a registered mechanism.

    Args:
        book: a DataFrame or a dict of arrays with the columns `id, participant, side,
            quantity_kwh, price` (validated by `book.book_from_frame`), or an already validated
            book (e.g. from `book.read_book`).
        mechanism: registry name, e.g. "uniform", "sdr", "k-double".
        retail: the retailer's import price λ_buy [currency/kWh]; required by mechanisms that
            clear net positions against the tariff (sdr, mmr, bill-sharing).
        feed_in: the retailer's export price λ_sell [currency/kWh]; required likewise.
        **params: the mechanism's parameters (e.g. k=0.3), validated by its pydantic model.

    Raises:
        InputError: unknown mechanism or parameter, invalid book, missing or invalid tariff, or a
            net-position mechanism given more than one order per participant.
    """
    mech = get_mechanism(mechanism, params)
    lam_buy = _tariff(retail, "retail")
    lam_sell = _tariff(feed_in, "feed_in")
    if mech.uses_net_positions:
        if lam_buy is None or lam_sell is None:
            missing = " and ".join(
                flag
                for flag, v in (("retail (--retail)", lam_buy), ("feed_in (--feed-in)", lam_sell))
                if v is None
            )
            raise InputError(
                f"market mechanism {mechanism!r} prices net positions against the retail tariff: "
                f"give {missing} [currency/kWh]"
            )
        if not 0.0 <= lam_sell <= lam_buy:
            raise InputError(
                f"market mechanism {mechanism!r} needs 0 <= feed_in <= retail, got "
                f"feed_in {lam_sell} and retail {lam_buy}"
            )
    if not isinstance(book, OrderBook):
        book = book_from_frame(book)
    if mech.uses_net_positions:
        _check_net_positions(book, mechanism)
    ctx = MarketContext(
        retail_price=math.nan if lam_buy is None else lam_buy,
        feed_in_price=math.nan if lam_sell is None else lam_sell,
    )
    return report(mechanism, book, mech.clear(book, ctx))


_INT = re.compile(r"[+-]?\d+")


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _INT.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """Turn CLI `key=value` strings into mechanism parameters.

    Values become bool (`true`/`false`, any case), int (digits with an optional sign), float
    (anything `float()` reads, e.g. `0.5`, `1e-3`) or else stay strings; the mechanism's pydantic
    model then validates them. Blanks around key and value are dropped.

    Raises:
        InputError: an item without `=`, an empty key, or a key given twice.
    """
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise InputError(f"--param {item!r}: expected key=value")
        if key in params:
            raise InputError(f"--param {key!r} given twice")
        params[key] = _parse_value(value)
    return params
