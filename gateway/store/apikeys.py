"""API keys in Redis: records, the index from a secret's SHA-256 to its key, and the changes
an admin makes to them.

A secret is ``sk-lg-`` plus 32 random bytes, url-safe; it is shown once, at creation, and
only its SHA-256 is stored. A record is a HASH of field -> JSON value (plus ``sha256``), so a
change writes only the fields it names. Every change that touches more than one field or key
is one script (``apikeys_*.lua`` beside this module), so two admins or two replicas never
see half of one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar, cast

import msgspec
from redis.asyncio import Redis

from gateway.errors import InvalidRequest, KeyNotFound
from gateway.store import keys
from gateway.store.connection import reachable, script

SECRET_PREFIX = "sk-lg-"
SECRET_BYTES = 32

# -- the record ----------------------------------------------------------------------------
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
ModelName = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Models = Annotated[list[ModelName], msgspec.Meta(max_length=1000)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=10**15)]
Weight = Annotated[float, msgspec.Meta(gt=0, le=1_000_000)]
Priority = Annotated[int, msgspec.Meta(ge=-1000, le=1000)]
Timestamp = Annotated[int, msgspec.Meta(ge=0, le=10**11)]


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """One API key, as stored (without its hash). Times are unix seconds."""

    id: str
    name: str
    created: int
    expires_at: int | None = None
    #: Models the key may use; empty means every model.
    models: tuple[str, ...] = ()
    #: Requests per minute.
    rpm: int | None = None
    #: Tokens (prompt + completion) per minute.
    tpm: int | None = None
    #: Requests in flight at once.
    max_concurrency: int | None = None
    #: Tokens per UTC day / calendar month (UTC).
    daily_tokens: int | None = None
    monthly_tokens: int | None = None
    #: Share of a busy model's slots, relative to other keys' weights.
    weight: float = 1.0
    #: Order of this key's own waiting requests: higher goes first.
    priority: int = 0
    disabled: bool = False
    revoked_at: int | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def state(self, now: float) -> str:
        """``revoked``, ``disabled``, ``expired`` or ``active``."""
        if self.revoked:
            return "revoked"
        if self.disabled:
            return "disabled"
        return "expired" if self.expired(now) else "active"

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models

    @property
    def has_limits(self) -> bool:
        return any(
            value is not None
            for value in (
                self.rpm,
                self.tpm,
                self.max_concurrency,
                self.daily_tokens,
                self.monthly_tokens,
            )
        )

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready builtins: what the admin API and the CLI show."""
        return msgspec.to_builtins(self)


class _NewKey(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    expires_at: Timestamp | None = None
    models: Models = []
    rpm: Limit | None = None
    tpm: Limit | None = None
    max_concurrency: Limit | None = None
    daily_tokens: Limit | None = None
    monthly_tokens: Limit | None = None
    weight: Weight = 1.0
    priority: Priority = 0
    disabled: bool = False


class _Changes(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    expires_at: Timestamp | msgspec.UnsetType | None = msgspec.UNSET
    models: Models | msgspec.UnsetType = msgspec.UNSET
    rpm: Limit | msgspec.UnsetType | None = msgspec.UNSET
    tpm: Limit | msgspec.UnsetType | None = msgspec.UNSET
    max_concurrency: Limit | msgspec.UnsetType | None = msgspec.UNSET
    daily_tokens: Limit | msgspec.UnsetType | None = msgspec.UNSET
    monthly_tokens: Limit | msgspec.UnsetType | None = msgspec.UNSET
    weight: Weight | msgspec.UnsetType = msgspec.UNSET
    priority: Priority | msgspec.UnsetType = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET


EDITABLE_FIELDS = tuple(field.name for field in msgspec.structs.fields(_Changes))


# -- the store -----------------------------------------------------------------------------
class KeyStore:
    """API keys in Redis. Round trips: ``create``, ``get``, ``find``, ``lookup``, ``update``,
    ``revoke`` one each; ``list`` two."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._create = redis.register_script(script("apikeys_create.lua"))
        self._update = redis.register_script(script("apikeys_update.lua"))
        self._revoke = redis.register_script(script("apikeys_revoke.lua"))
        self._lookup = redis.register_script(script("apikeys_lookup.lua"))

    async def create(self, /, **fields: Any) -> tuple[ApiKey, str]:
        """Make a key from validated ``fields``; returns the record and the secret, which is
        never stored and cannot be shown again."""
        values = msgspec.to_builtins(_validate(fields, _NewKey))
        values["models"] = _unique(values["models"])
        for _ in range(3):
            key_id = "key_" + secrets.token_hex(6)
            secret = SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
            digest = hash_secret(secret)
            with reachable("key store"):
                created = await self._create(
                    keys=[keys.api_key(key_id), keys.api_key_by_hash(digest), keys.API_KEY_IDS],
                    args=[key_id, digest, *_pairs({"id": key_id, **values})],
                )
            if created != -1:
                return msgspec.convert({**values, "id": key_id, "created": created}, ApiKey), secret
        raise RuntimeError("could not find a free key id in three tries")

    async def get(self, key_id: str) -> ApiKey | None:
        with reachable("key store"):
            # The store's clients decode nothing (decode_responses=False): bytes throughout.
            fields = cast(dict[bytes, bytes], await self._redis.hgetall(keys.api_key(key_id)))
        return _decode(fields)[0] if fields else None

    async def list(self) -> list[ApiKey]:
        """Every key, revoked ones too, oldest first."""
        with reachable("key store"):
            ids = sorted(cast(set[bytes], await self._redis.smembers(keys.API_KEY_IDS)))
            if not ids:
                return []
            pipe = self._redis.pipeline(transaction=False)
            for key_id in ids:
                pipe.hgetall(keys.api_key(key_id.decode()))
            records = await pipe.execute()
        found = [_decode(fields)[0] for fields in records if fields]
        return sorted(found, key=lambda key: (key.created, key.id))

    async def update(self, key_id: str, /, **changes: Any) -> ApiKey:
        """Change the named fields of a key that is not revoked; returns the new record."""
        values = msgspec.to_builtins(_validate(changes, _Changes))
        if not values:
            raise InvalidRequest(
                f"Nothing to change: give one of {', '.join(EDITABLE_FIELDS)}.", param=None
            )
        if "models" in values:
            values["models"] = _unique(values["models"])
        with reachable("key store"):
            result = await self._update(keys=[keys.api_key(key_id)], args=_pairs(values))
        if result == b"missing":
            raise _not_found(key_id)
        if result == b"revoked":
            raise InvalidRequest(f"API key {key_id} is revoked and cannot be changed.")
        return _decode(_as_mapping(result))[0]

    async def revoke(self, key_id: str) -> ApiKey:
        """Stop the key's secret from working (its hash index goes); the record stays, marked
        revoked. Revoking a revoked key returns it unchanged."""
        with reachable("key store"):
            result = await self._revoke(
                keys=[keys.api_key(key_id)], args=[keys.api_key_by_hash("")]
            )
        if result == b"missing":
            raise _not_found(key_id)
        return _decode(_as_mapping(result))[0]

    async def lookup(self, sha256_hex: str) -> tuple[ApiKey, str] | None:
        """The key whose secret has this SHA-256, with the stored hash, or ``None``."""
        with reachable("key store"):
            result = await self._lookup(
                keys=[keys.api_key_by_hash(sha256_hex)], args=[keys.api_key("")]
            )
        return _decode(_as_mapping(result)) if result else None

    async def find(self, secret: str) -> ApiKey | None:
        """The key of this secret, whatever its state (the caller judges expiry and the like)."""
        digest = hash_secret(secret)
        found = await self.lookup(digest)
        if found is None or not hmac.compare_digest(found[1], digest):
            return None
        return found[0]


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# -- helpers -------------------------------------------------------------------------------
_T = TypeVar("_T")
_AT_FIELD = re.compile(r" - at `\$\.([A-Za-z_]+)[^`]*`$")
_UNKNOWN = re.compile(r"Object contains unknown field `(.+)`")
_MISSING = re.compile(r"Object missing required field `(.+)`")


def _validate(fields: Mapping[str, Any], kind: type[_T]) -> _T:
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if match := _UNKNOWN.match(text):
            raise InvalidRequest(
                f"Unknown API key field '{match[1]}'; known fields: {', '.join(EDITABLE_FIELDS)}.",
                param=match[1],
            ) from None
        if match := _MISSING.match(text):
            raise InvalidRequest(f"Missing required field '{match[1]}'.", param=match[1]) from None
        match = _AT_FIELD.search(text)
        if match is None:
            raise InvalidRequest(f"Invalid API key fields: {text}.") from None
        detail = text[: match.start()]
        raise InvalidRequest(f"Invalid value for '{match[1]}': {detail}.", param=match[1]) from None


def _unique(models: list[str]) -> list[str]:
    return list(dict.fromkeys(models))


def _pairs(values: Mapping[str, Any]) -> list[bytes | str]:
    flat: list[bytes | str] = []
    for name, value in values.items():
        flat += [name, msgspec.json.encode(value)]
    return flat


def _as_mapping(result: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(result[::2], result[1::2], strict=True))


def _decode(fields: Mapping[bytes, bytes]) -> tuple[ApiKey, str]:
    values = {name.decode(): value for name, value in fields.items()}
    digest = values.pop("sha256", b"").decode()
    decoded = {name: msgspec.json.decode(value) for name, value in values.items()}
    return msgspec.convert(decoded, ApiKey), digest


def _not_found(key_id: str) -> KeyNotFound:
    return KeyNotFound(f"No API key with id '{key_id}'.", param="id")
