"""Sorted-set commands: ``ZADD`` (``NX``/``XX``/``GT``/``LT``/``CH``/``INCR``), ``ZINCRBY``,
``ZCARD``, ``ZSCORE``, ``ZMSCORE``, ``ZREM``, ``ZRANK``/``ZREVRANK``, ``ZCOUNT``, ``ZRANGE``
(by rank or ``BYSCORE``, ``REV``, ``LIMIT``, ``WITHSCORES``), ``ZRANGEBYSCORE``/
``ZREVRANGEBYSCORE``, ``ZREVRANGE``, ``ZREMRANGEBYSCORE``, ``ZREMRANGEBYRANK``,
``ZPOPMIN``/``ZPOPMAX``. ``BYLEX`` is refused with an error.

A sorted set is a member → score ``dict`` beside its ``(score, member)`` entries in Redis's
order (score, then the member's bytes): see :class:`ZSet`."""

from __future__ import annotations

import bisect
import math
from typing import Any

from sortedcontainers import SortedList

from gateway.store.embedded.keyspace import Handler, Keyspace
from gateway.store.embedded.values import (
    SYNTAX,
    CommandError,
    format_double,
    parse_float,
    parse_int,
)

__all__ = ["COMMANDS", "ZSet"]

#: Entries past which a sorted set's order moves from a plain list to a ``SortedList``.
SMALL = 512
_BOUND = "ERR min or max is not a float"
_ZADD_FLAGS = frozenset({b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR"})


class ZSet:
    """Members → scores, and ``(score, member)`` in order: a plain sorted ``list`` while the
    set is small (bisect on a short list beats any tree; the gateway's lease sets and
    queues hold a few dozen), a ``SortedList`` once it passes :data:`SMALL` (the affinity
    index, refreshed in its middle and trimmed at its old end) — as Redis keeps a small
    sorted set in a listpack and a large one in a skiplist."""

    __slots__ = ("order", "scores")

    def __init__(self) -> None:
        self.scores: dict[bytes, float] = {}
        self.order: Any = []

    def __len__(self) -> int:
        return len(self.scores)

    def put(self, member: bytes, score: float) -> None:
        old = self.scores.get(member)
        order = self.order
        if old is not None:
            if old == score:
                return
            if type(order) is list:
                del order[bisect.bisect_left(order, (old, member))]
            else:
                order.remove((old, member))
        self.scores[member] = score
        if type(order) is list:
            bisect.insort(order, (score, member))
            if len(order) > SMALL:
                self.order = SortedList(order)
        else:
            order.add((score, member))

    def remove(self, member: bytes) -> bool:
        score = self.scores.pop(member, None)
        if score is None:
            return False
        if type(self.order) is list:
            del self.order[bisect.bisect_left(self.order, (score, member))]
        else:
            self.order.remove((score, member))
        return True

    def rank(self, member: bytes, score: float) -> int:
        if type(self.order) is list:
            return bisect.bisect_left(self.order, (score, member))
        return int(self.order.index((score, member)))

    def entries(self, start: int, stop: int, reverse: bool = False) -> Any:
        """The ``(score, member)`` entries at indices ``[start, stop)``, reversed if asked."""
        if type(self.order) is list:
            return self.order[start:stop][::-1] if reverse else self.order[start:stop]
        return self.order.islice(start, stop, reverse=reverse)

    def score_span(self, low: tuple[float, bool], high: tuple[float, bool]) -> tuple[int, int]:
        """Indices ``[start, stop)`` of the entries whose score lies between the bounds
        (each ``(score, exclusive)``)."""
        start = self._first_above(low[0], not low[1])
        stop = self._first_above(high[0], high[1])
        return start, max(start, stop)

    def _first_above(self, score: float, inclusive: bool) -> int:
        """Index of the first entry with a score ``>= score`` (``inclusive``) or ``> score``."""
        if not inclusive:
            if score == math.inf:
                return len(self.order)
            score = math.nextafter(score, math.inf)
        if type(self.order) is list:
            return bisect.bisect_left(self.order, (score, b""))
        return int(self.order.bisect_left((score, b"")))

    def delete_slice(self, start: int, stop: int) -> int:
        for _score, member in self.order[start:stop]:
            del self.scores[member]
        del self.order[start:stop]
        return stop - start


def _bound(value: bytes) -> tuple[float, bool]:
    exclusive = value.startswith(b"(")
    return parse_float(value[1:] if exclusive else value, _BOUND), exclusive


def _zset(ks: Keyspace, key: bytes) -> ZSet | None:
    value: ZSet | None = ks.typed(key, ZSet)
    return value


def _zadd(ks: Keyspace, args: tuple[bytes, ...]) -> Any:
    if len(args) == 3 and args[1][:1] not in b"NXGLCIngxlci":  # one score, no flags
        zset = _zset(ks, args[0])
        score = parse_float(args[1])
        if zset is None:
            zset = ks.data[args[0]] = ZSet()
        is_new = args[2] not in zset.scores
        zset.put(args[2], score)
        return int(is_new)
    key, i, flags = args[0], 1, set()
    while i < len(args) and (flag := args[i].upper()) in (
        b"NX",
        b"XX",
        b"GT",
        b"LT",
        b"CH",
        b"INCR",
    ):
        flags.add(flag)
        i += 1
    pairs = args[i:]
    if not pairs or len(pairs) % 2:
        raise CommandError(SYNTAX)
    incr = b"INCR" in flags
    if incr and len(pairs) > 2:
        raise CommandError("ERR INCR option supports a single increment-element pair")
    if {b"NX", b"XX"} <= flags:
        raise CommandError("ERR XX and NX options at the same time are not compatible")
    if len(flags & {b"NX", b"GT", b"LT"}) > 1:
        raise CommandError("ERR GT, LT, and/or NX options at the same time are not compatible")
    scores = [parse_float(pairs[j]) for j in range(0, len(pairs), 2)]
    zset = _zset(ks, key)
    if zset is None:
        if b"XX" in flags:
            return None if incr else 0
        zset = ks.data[key] = ZSet()
    added = changed = 0
    result: float | None = None
    for score, member in zip(scores, pairs[1::2], strict=True):
        current = zset.scores.get(member)
        if current is None:
            if b"XX" in flags:
                continue
            zset.put(member, score)
            added += 1
            result = score
            continue
        if b"NX" in flags:
            continue
        new = current + score if incr else score
        if math.isnan(new):
            raise CommandError("ERR resulting score is not a number (NaN)")
        if (b"GT" in flags and new <= current) or (b"LT" in flags and new >= current):
            continue
        result = new
        if new != current:
            zset.put(member, new)
            changed += 1
    if not zset:
        ks.delete(key)
    if incr:
        return None if result is None else format_double(result)
    return added + changed if b"CH" in flags else added


def _zincrby(ks: Keyspace, args: tuple[bytes, ...]) -> Any:
    return _zadd(ks, (args[0], b"INCR", args[1], args[2]))


def _zscore(ks: Keyspace, args: tuple[bytes, ...]) -> bytes | None:
    zset = _zset(ks, args[0])
    score = None if zset is None else zset.scores.get(args[1])
    return None if score is None else format_double(score)


def _zmscore(ks: Keyspace, args: tuple[bytes, ...]) -> list[bytes | None]:
    return [_zscore(ks, (args[0], member)) for member in args[1:]]


def _zrem(ks: Keyspace, args: tuple[bytes, ...]) -> int:
    zset = _zset(ks, args[0])
    if zset is None:
        return 0
    removed = sum(zset.remove(member) for member in args[1:])
    if not zset:
        ks.delete(args[0])
    return removed


def _zrank(ks: Keyspace, args: tuple[bytes, ...], reverse: bool) -> int | None:
    zset = _zset(ks, args[0])
    score = None if zset is None else zset.scores.get(args[1])
    if zset is None or score is None:
        return None
    rank = zset.rank(args[1], score)
    return len(zset) - 1 - rank if reverse else rank


def _zcount(ks: Keyspace, args: tuple[bytes, ...]) -> int:
    low, high = _bound(args[1]), _bound(args[2])
    zset = _zset(ks, args[0])
    if zset is None:
        return 0
    start, stop = zset.score_span(low, high)
    return stop - start


def _ranks(length: int, start: int, stop: int) -> tuple[int, int]:
    """Redis's reading of a rank range: ``[start, stop)`` indices, possibly empty."""
    if start < 0:
        start = max(0, start + length)
    if stop < 0:
        stop += length
    stop = min(stop, length - 1)
    return start, max(start, stop + 1)


def _range(
    ks: Keyspace,
    key: bytes,
    first: bytes,
    last: bytes,
    *,
    by_score: bool,
    reverse: bool,
    limit: tuple[int, int] | None,
    with_scores: bool,
) -> list[bytes]:
    if by_score:
        low, high = (_bound(last), _bound(first)) if reverse else (_bound(first), _bound(last))
    else:
        ranks = parse_int(first), parse_int(last)
    zset = _zset(ks, key)
    if zset is None:
        return []
    if by_score:
        start, stop = zset.score_span(low, high)
        entries = zset.entries(start, stop, reverse)
        if limit is not None:
            offset, count = limit
            if offset < 0:
                return []
            end = None if count < 0 else offset + count
            entries = list(entries)[offset:end]
    else:
        start, stop = _ranks(len(zset), *ranks)
        if reverse:
            start, stop = len(zset) - stop, len(zset) - start
        entries = zset.entries(start, stop, reverse)
    if with_scores:
        return [item for score, member in entries for item in (member, format_double(score))]
    return [member for _score, member in entries]


def _range_options(options: tuple[bytes, ...], allowed: set[bytes]) -> dict[str, Any]:
    found: dict[str, Any] = {"by_score": False, "reverse": False, "limit": None}
    found["with_scores"] = False
    i = 0
    while i < len(options):
        option = options[i].upper()
        if option not in allowed:
            raise CommandError(SYNTAX)
        if option == b"LIMIT":
            if i + 2 >= len(options):
                raise CommandError(SYNTAX)
            found["limit"] = (parse_int(options[i + 1]), parse_int(options[i + 2]))
            i += 2
        elif option == b"BYLEX":
            raise CommandError("ERR BYLEX is not supported by the gateway's embedded store")
        else:
            key = {b"BYSCORE": "by_score", b"REV": "reverse", b"WITHSCORES": "with_scores"}
            found[key[option]] = True
        i += 1
    return found


def _zrange(ks: Keyspace, args: tuple[bytes, ...]) -> list[bytes]:
    if len(args) == 3:  # by rank, members only: the scripts' usual case
        first, last = parse_int(args[1]), parse_int(args[2])
        zset = _zset(ks, args[0])
        if zset is None:
            return []
        start, stop = _ranks(len(zset), first, last)
        return [member for _score, member in zset.entries(start, stop)]
    found = _range_options(args[3:], {b"BYSCORE", b"BYLEX", b"REV", b"LIMIT", b"WITHSCORES"})
    if found["limit"] is not None and not found["by_score"]:
        raise CommandError(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
        )
    return _range(ks, args[0], args[1], args[2], **found)


def _zrangebyscore(ks: Keyspace, args: tuple[bytes, ...], reverse: bool) -> list[bytes]:
    found = _range_options(args[3:], {b"LIMIT", b"WITHSCORES"})
    found.update(by_score=True, reverse=reverse)
    return _range(ks, args[0], args[1], args[2], **found)


def _zrevrange(ks: Keyspace, args: tuple[bytes, ...]) -> list[bytes]:
    found = _range_options(args[3:], {b"WITHSCORES"})
    found["reverse"] = True
    return _range(ks, args[0], args[1], args[2], **found)


def _zremrangebyscore(ks: Keyspace, args: tuple[bytes, ...]) -> int:
    low, high = _bound(args[1]), _bound(args[2])
    zset = _zset(ks, args[0])
    if zset is None:
        return 0
    removed = zset.delete_slice(*zset.score_span(low, high))
    if not zset:
        ks.delete(args[0])
    return removed


def _zremrangebyrank(ks: Keyspace, args: tuple[bytes, ...]) -> int:
    first, last = parse_int(args[1]), parse_int(args[2])
    zset = _zset(ks, args[0])
    if zset is None:
        return 0
    removed = zset.delete_slice(*_ranks(len(zset), first, last))
    if not zset:
        ks.delete(args[0])
    return removed


def _zpop(ks: Keyspace, args: tuple[bytes, ...], highest: bool) -> list[bytes]:
    count = parse_int(args[1]) if len(args) > 1 else 1
    if len(args) > 2:
        raise CommandError(SYNTAX)
    if count < 0:
        raise CommandError("ERR value is out of range, must be positive")
    zset = _zset(ks, args[0])
    if zset is None:
        return []
    count = min(count, len(zset))
    start, stop = (len(zset) - count, len(zset)) if highest else (0, count)
    entries = list(zset.entries(start, stop, highest))
    zset.delete_slice(start, stop)
    if not zset:
        ks.delete(args[0])
    return [item for score, member in entries for item in (member, format_double(score))]


COMMANDS: dict[bytes, tuple[Handler, int]] = {
    b"ZADD": (_zadd, -4),
    b"ZINCRBY": (_zincrby, 4),
    b"ZCARD": (lambda ks, a: len(_zset(ks, a[0]) or ()), 2),
    b"ZSCORE": (_zscore, 3),
    b"ZMSCORE": (_zmscore, -3),
    b"ZREM": (_zrem, -3),
    b"ZRANK": (lambda ks, a: _zrank(ks, a, False), 3),
    b"ZREVRANK": (lambda ks, a: _zrank(ks, a, True), 3),
    b"ZCOUNT": (_zcount, 4),
    b"ZRANGE": (_zrange, -4),
    b"ZRANGEBYSCORE": (lambda ks, a: _zrangebyscore(ks, a, False), -4),
    b"ZREVRANGEBYSCORE": (lambda ks, a: _zrangebyscore(ks, a, True), -4),
    b"ZREVRANGE": (_zrevrange, -4),
    b"ZREMRANGEBYSCORE": (_zremrangebyscore, 4),
    b"ZREMRANGEBYRANK": (_zremrangebyrank, 4),
    b"ZPOPMIN": (lambda ks, a: _zpop(ks, a, False), -2),
    b"ZPOPMAX": (lambda ks, a: _zpop(ks, a, True), -2),
}
