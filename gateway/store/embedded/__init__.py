"""``memory://``: the store inside the gateway's process, for one replica.

The gateway's Lua scripts run unchanged — one copy of each, the same ``.lua`` files that
``redis://`` runs — on lupa's LuaJIT (or its Lua 5.1), with ``redis.call`` bound straight to
Python data instead of a Redis server: no sockets, no RESP, no general-purpose command
machinery between a script and a dict. Writing the scripts again in Python would be ~1,000
lines kept in step with the ``.lua`` files by hand, where a drift is a limit or a lease that
holds on one store and not on the other; binding Lua to our own keyspace keeps a single copy
of each.

The parts, each a module:

- :mod:`~gateway.store.embedded.values` — the error reply, the status reply, Redis's
  parsing of integers/floats and writing of doubles;
- :mod:`~gateway.store.embedded.keyspace` — keys, TTLs (lazy and swept), the key commands;
- :mod:`~gateway.store.embedded.strings`, ``hashes``, ``zsets``, ``sets``, ``lists`` — the
  commands of each type, only those the gateway's scripts and code send (and their kin);
- :mod:`~gateway.store.embedded.scripting` — the script cache, ``EVAL``/``EVALSHA``,
  ``redis.call``, Redis's Lua↔reply conversions;
- :mod:`~gateway.store.embedded.server` — the command table and ``BLPOP``'s waiters;
- :mod:`~gateway.store.embedded.client` — the redis-py ``Redis`` subset the gateway uses.

``tests/store`` runs every store test against a real Redis and against this;
``tests/store/test_embedded_differential.py`` sends both the same commands and compares
the replies byte for byte.
"""

from gateway.store.embedded.client import EmbeddedPipeline, EmbeddedRedis
from gateway.store.embedded.server import Server

__all__ = ["EmbeddedPipeline", "EmbeddedRedis", "Server"]
