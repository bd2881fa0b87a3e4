from sanic import Sanic, json

from sanic_realtime import Realtime

realtime = Realtime.from_yaml("realtime.yaml")
app = Sanic("quickstart")
app.blueprint(realtime.blueprint)  # /ws, /ws/<channel>, /ws/health, /ws/client.js, admin routes


@app.post("/logs")
async def ingest(request):
    result = await realtime.publish("logs", "log_update", request.json)
    return json({"id": result.id, "recipients": result.recipients})
