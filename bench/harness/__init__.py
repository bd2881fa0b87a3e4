"""The benchmark harness shared by ``bench/fanout.py``, ``compare.py``, ``redis_fanout.py``
and ``profile.py``. The method is described in those scripts' docstrings; here is only
who owns what:

``apps``     the server programs, each run in its own subprocess (``python -m
             harness.apps --serve KIND`` or, for the Sanic CLI, ``harness.apps:create_app``):
             sanic-realtime, websockets.broadcast, the raw reference server, the
             hand-written Sanic hub and gather, python-socketio.
``servers``  the kinds of server, starting and stopping their subprocesses (own session,
             CPU pinning), reading ``/proc``, the generator's Redis probe.
``loadgen``  the raw-asyncio load generator: WebSocket clients that count frames by their
             headers, per-worker counters, one-shot HTTP requests.
``target``   one server and its N clients: a timed burst, a steady-rate step, the checks
             for lost, extra and out-of-order frames; ``Run`` and ``Step``.
``runner``   rows of a table, start-up of targets side by side, the untimed warm-up and
             the timed bursts interleaved in a rotating order.
``report``   the run header, every table, the per-run lines and the checks.
``args``     the command-line options the scripts share.
"""
