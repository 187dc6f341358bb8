"""From the books a gate's bid produced to each home's signed order submission.

The lifecycle's `bid` returns one book per slot the gate closes, each with at most one order per
home and side (`settlement.slot.orders_from_net`: a deficit is a buy, a surplus a sell).
`gate_orders` gathers them into one table for all homes; `clipped` keeps every order inside what
the market accepts, so that a valid bid is never refused: its limit price inside the market's
floor and cap, its quantity at most the connection's capacity in the slot (the server checks the
sum per slot and side; a home's book has one order per slot and side). `signed_body` is the
JSON body of `POST /v1/orders`: the orders and the home's Ed25519 signature over
`ledger.encoding.order_message` — the bytes the server rebuilds from the body and the ledger
logs. JSON floats round-trip exactly, so those bytes are the ones signed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from numpy.typing import NDArray

from peergrid.ledger import encoding as enc
from peergrid.markets.base import SELL_CODE, OrderBook

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class GateOrders:
    """The orders of one gate for every home, as parallel arrays (n,), in slot order.

    Attributes:
        gate_slot: the slot at whose start the gate closes.
        home: the home that places each order (index among the agent's homes).
        slot: its delivery slot.
        side: `markets.base.Side` values as int8.
        quantity_kwh: energy [kWh], > 0.
        limit_price: the most a buyer pays, the least a seller accepts [currency/kWh].
    """

    gate_slot: int
    home: IntArray
    slot: IntArray
    side: NDArray[np.int8]
    quantity_kwh: FloatArray
    limit_price: FloatArray

    @property
    def n_orders(self) -> int:
        return int(self.home.size)

    def of_home(self, home: int) -> GateOrders:
        """One home's orders (in the same order)."""
        sel = self.home == home
        return GateOrders(
            self.gate_slot,
            self.home[sel],
            self.slot[sel],
            self.side[sel],
            self.quantity_kwh[sel],
            self.limit_price[sel],
        )


def gate_orders(gate_slot: int, first_slot: int, books: Sequence[OrderBook]) -> GateOrders:
    """Every home's orders of the gate whose books, one per slot from `first_slot` on, are
    `books` (the book's participant is the home)."""
    slot = np.concatenate(
        [np.full(b.n_orders, first_slot + k, dtype=np.int64) for k, b in enumerate(books)]
        or [np.zeros(0, np.int64)]
    )

    def cat(arrays: list[NDArray[Any]], dtype: Any) -> NDArray[Any]:
        return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)

    return GateOrders(
        gate_slot,
        cat([b.participant for b in books], np.int64),
        slot,
        cat([b.side for b in books], np.int8),
        cat([b.quantity_kwh for b in books], np.float64),
        cat([b.price for b in books], np.float64),
    )


def clipped(
    orders: GateOrders, price_floor_per_kwh: float, price_cap_per_kwh: float, max_kwh: FloatArray
) -> GateOrders:
    """The orders inside the market's limits (module docstring): limit prices clipped into
    [floor, cap], quantities to each home's `max_kwh` (P,) [kWh in the slot]; an order left
    with no energy (or a non-finite one) is dropped."""
    q = np.minimum(orders.quantity_kwh, max_kwh[orders.home])
    price = np.clip(orders.limit_price, price_floor_per_kwh, price_cap_per_kwh)
    keep = np.isfinite(q) & (q > 0.0) & np.isfinite(price)
    return GateOrders(
        orders.gate_slot,
        orders.home[keep],
        orders.slot[keep],
        orders.side[keep],
        q[keep],
        price[keep],
    )


def order_message(orders: GateOrders, ledger_id: bytes, ledger_index: int) -> bytes:
    """The canonical bytes one home's orders are signed over (`ledger.encoding.order_message`)."""
    return enc.order_message(
        ledger_id,
        ledger_index,
        orders.gate_slot,
        orders.slot,
        orders.side,
        orders.quantity_kwh,
        orders.limit_price,
    )


def signed_body(
    orders: GateOrders, key: Ed25519PrivateKey, ledger_id: bytes, ledger_index: int
) -> dict[str, Any]:
    """The JSON body of `POST /v1/orders` for one home's orders (all of `orders` are its own),
    signed with its key as the market member at `ledger_index`."""
    signature = key.sign(order_message(orders, ledger_id, ledger_index))
    return {
        "gate_slot": orders.gate_slot,
        "orders": [
            {
                "slot": s,
                "side": "sell" if side == int(SELL_CODE) else "buy",
                "quantity_kwh": q,
                "limit_price": p,
            }
            for s, side, q, p in zip(
                orders.slot.tolist(),
                orders.side.tolist(),
                orders.quantity_kwh.tolist(),
                orders.limit_price.tolist(),
                strict=True,
            )
        ],
        "signature": signature.hex(),
    }
