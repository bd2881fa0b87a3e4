"""The Sanic glue: handler factories, one module per kind of route. Each factory gets
the parts it needs (config, hub, guard, ...), never the ``Realtime`` facade, so imports
run one way: ``extension`` -> ``blueprint`` -> ``routes`` -> the core."""
