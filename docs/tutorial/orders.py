"""An orders service that pushes every change to its dashboards (the tutorial's app).

Run it from this directory: ``sanic orders:app --port 8000``.
"""

import itertools
from pathlib import Path

from sanic import Sanic, json
from sanic.exceptions import BadRequest, NotFound
from sanic.response import file

# --8<-- [start:realtime]
from sanic_realtime import Realtime

realtime = Realtime.from_yaml("realtime.yaml")
# --8<-- [end:realtime]

app = Sanic("orders")
# --8<-- [start:blueprint]
app.blueprint(realtime.blueprint)
# --8<-- [end:blueprint]

ORDERS: dict[int, dict] = {}
_next_id = itertools.count(1)
PRIORITIES = ("low", "normal", "high", "urgent")
STATUSES = ("placed", "packed", "shipped", "delivered", "cancelled")
PAGE = Path(__file__).with_name("static") / "index.html"


def _body(request, *required: str) -> dict:
    body = request.json if isinstance(request.json, dict) else {}
    missing = [key for key in required if key not in body]
    if missing:
        raise BadRequest(f"missing: {', '.join(missing)}")
    return body


# --8<-- [start:create]
@app.post("/orders")
async def create_order(request):
    body = _body(request, "customer", "item")
    priority = body.get("priority", "normal")
    if priority not in PRIORITIES:
        raise BadRequest(f"priority must be one of {', '.join(PRIORITIES)}")
    order = {
        "id": next(_next_id),
        "customer": body["customer"],
        "item": body["item"],
        "priority": priority,
        "status": "placed",
    }
    ORDERS[order["id"]] = order
    await realtime.publish("orders", "order.created", order)
    return json(order, status=201)
    # --8<-- [end:create]


# --8<-- [start:update]
@app.patch("/orders/<order_id:int>")
async def update_order(request, order_id: int):
    order = ORDERS.get(order_id)
    if order is None:
        raise NotFound(f"no order {order_id}")
    status = _body(request, "status")["status"]
    if status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
    order["status"] = status
    await realtime.publish("orders", "order.updated", order)
    return json(order)
    # --8<-- [end:update]


@app.get("/orders/<order_id:int>")
async def get_order(request, order_id: int):
    if order_id not in ORDERS:
        raise NotFound(f"no order {order_id}")
    return json(ORDERS[order_id])


# --8<-- [start:page]
@app.get("/")
async def page(request):
    return await file(PAGE)
    # --8<-- [end:page]
