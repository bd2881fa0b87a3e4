# app.py
from pathlib import Path

from sanic import Sanic
from sanic.response import json

from sanic_realtime import Realtime

realtime = Realtime.from_yaml(Path(__file__).with_name("realtime.yaml"))
app = Sanic("ops")
app.blueprint(realtime.blueprint)


@app.post("/logs")
async def ingest(request):
    result = await realtime.publish("logs", "log_update", request.json)
    return json({"id": result.id, "recipients": result.recipients}, status=201)
