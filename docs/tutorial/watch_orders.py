"""Print the orders service's urgent orders as they change.

python watch_orders.py ws://127.0.0.1:8000/ws
"""

import asyncio
import sys

from sanic_realtime.client import RealtimeClient


async def main(url: str) -> None:
    async with RealtimeClient(url, channels=["orders"], filters={"priority": "urgent"}) as client:
        async for event in client:  # reconnects and resumes by itself
            if event.type == "resume_failed":
                print("missed events on", event.channel, "- reload the orders", flush=True)
            else:
                order = event.data
                print(event.id, event.type, order["id"], order["item"], order["status"], flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000/ws"))
