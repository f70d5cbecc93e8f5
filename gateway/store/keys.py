"""Every Redis key the gateway uses, in one place.

Keys that one script touches together share a hash tag (``{…}``), so every script runs
unchanged on Redis Cluster, where a script may only touch keys of one hash slot:
per-model admission state is tagged by model, per-API-key limit state by the key's id, and the
API-key records all share one tag.
"""

from __future__ import annotations

PREFIX = "lg"


# -- API keys (tag: ``apikeys``) -----------------------------------------------------------
# Every API-key record, hash index and the id set share one hash tag, so creating a key
# (record + index + id set) is one script on one slot. The lookup and revoke scripts derive a
# record's or an index's name from these prefixes; on Redis Cluster that is the same slot,
# which Redis allows for keys a script did not declare.
API_KEYS_TAG = f"{PREFIX}:{{apikeys}}"


def api_key(key_id: str) -> str:
    """HASH: one API key's record, field -> JSON value, plus ``sha256`` of the secret."""
    return f"{API_KEYS_TAG}:key:{key_id}"


def api_key_by_hash(sha256_hex: str) -> str:
    """STRING: SHA-256 hex of the secret -> key id. Gone once the key is revoked."""
    return f"{API_KEYS_TAG}:hash:{sha256_hex}"


API_KEY_IDS = f"{API_KEYS_TAG}:ids"
"""SET: every key id, revoked ones too (their records stay, marked revoked)."""


# -- per-key limits and usage (tag: ``key:<id>``) ------------------------------------------
LIMIT_PARTS = ("rpm", "tpm", "conc", "budget")
"""``rpm``, ``tpm``: HASH token bucket (``tokens``, ``ts`` ms), gone once full again.
``conc``: ZSET request id -> expiry (ms), requests in flight.
``budget``: HASH ``day``, ``day_used``, ``month``, ``month_used`` (UTC calendar periods)."""


def limit(key_id: str, what: str) -> str:
    """One of :data:`LIMIT_PARTS` for one key; all of a key's parts share its hash tag."""
    return f"{PREFIX}:{{key:{key_id}}}:{what}"


# -- admission: slot leases and the fair queue (tag: the model) ----------------------------
def leases(model: str, backend: str) -> str:
    """ZSET lease_id -> expiry (ms): requests in flight on one backend."""
    return f"{PREFIX}:{{{model}}}:leases:{backend}"


def slots(model: str) -> str:
    """HASH backend -> slot count, written by the pool probes."""
    return f"{PREFIX}:{{{model}}}:slots"


def queue_keys(model: str) -> str:
    """ZSET key_id -> virtual finish tag of its head waiter: which key is served next."""
    return f"{PREFIX}:{{{model}}}:q:keys"


def queue_of_key(model: str, key_id: str) -> str:
    """LIST of waiter ids of one API key, FIFO."""
    return f"{PREFIX}:{{{model}}}:q:k:{key_id}"


def waiter(model: str, waiter_id: str) -> str:
    """HASH: one waiter's key, cost, replica, deadline."""
    return f"{PREFIX}:{{{model}}}:w:{waiter_id}"


def virtual_time(model: str) -> str:
    """STRING: the model's fair-queueing clock."""
    return f"{PREFIX}:{{{model}}}:vt"


def finish_tags(model: str) -> str:
    """HASH key_id -> last finish tag."""
    return f"{PREFIX}:{{{model}}}:ft"


def grants(replica: str) -> str:
    """LIST of "model waiter lease backend" grants for one gateway replica to hand out."""
    return f"{PREFIX}:grants:{replica}"
