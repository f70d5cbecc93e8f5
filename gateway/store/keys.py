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
LIMIT_PARTS = ("rate", "conc", "budget")
"""``rate``: HASH both token buckets, ``rpm`` and ``tpm`` (tokens left; empty for a limit the
key does not have), as of ``ts`` (ms); gone once both are full again. (Before 2026-12 each
bucket was a hash of its own, ``rpm`` and ``tpm``: those expire within a minute of their last
use, so an upgrade starts the buckets full once.)
``conc``: ZSET request id -> expiry (ms), requests in flight.
``budget``: HASH ``day``, ``day_used``, ``month``, ``month_used`` (UTC calendar periods)."""


def limit(key_id: str, what: str) -> str:
    """One of :data:`LIMIT_PARTS` for one key; all of a key's parts share its hash tag."""
    return f"{PREFIX}:{{key:{key_id}}}:{what}"


# -- admission: slot leases and the fair queue (tag: the model) ----------------------------
# The admission scripts derive every key of a model from its prefix (see admission_lib.lua):
# ``leases:<backend>`` ZSET, ``q:keys`` ZSET, ``q:k:<key id>`` ZSET, ``w:<waiter>`` HASH,
# ``q:n``, ``q:seq``, ``vt`` STRING, ``ft`` HASH and ``r:<replica>`` STRING — all in the
# model's hash slot.
def model_prefix(model: str) -> str:
    """The prefix of every admission key of one model."""
    return f"{PREFIX}:{{{model}}}:"


def leases(model: str, backend: str) -> str:
    """ZSET lease id -> expiry (ms): requests in flight on one backend."""
    return f"{model_prefix(model)}leases:{backend}"


def queue_keys(model: str) -> str:
    """ZSET API key id -> finish tag of its head waiter: which key is served next."""
    return f"{model_prefix(model)}q:keys"


def replica_record(model: str, replica: str) -> str:
    """STRING ``<alive until, ms>,<backend>,<backend>,…,``: one gateway replica's heartbeat
    (renewed with its leases) and the backends of the model it can use. A waiter is granted
    only a backend its replica's record lists, and dropped once the record has lapsed."""
    return f"{model_prefix(model)}r:{replica}"


def grants(replica: str) -> str:
    """LIST of ``model\twaiter\tbackend`` grants for one gateway replica to hand out."""
    return f"{PREFIX}:grants:{replica}"


# -- prefix affinity (tag: the model) --------------------------------------------------------
def affinity_entry(model: str, entry: str) -> str:
    """HASH backend url -> ``slot:tokens held`` (``-1``: slot unknown) of the backends that
    served a prompt prefix whose fingerprint chain holds ``entry``. Expires with the TTL."""
    return f"{PREFIX}:{{{model}}}:aff:e:{entry}"


def affinity_index(model: str) -> str:
    """ZSET entry -> last recorded (ms): bounds the model's entries, oldest evicted first."""
    return f"{PREFIX}:{{{model}}}:aff:idx"
