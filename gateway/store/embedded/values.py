"""What every command shares: the error a command answers with, the status reply, and Redis's
own reading of integers and floats from arguments (stricter than Python's ``int``/``float``:
no spaces, no ``+`` on integers, no underscores, no NaN) and writing of doubles (``%.17g``, as
redis-server 7.0 formats scores and Lua numbers)."""

from __future__ import annotations

import math
import re

__all__ = [
    "NOT_FLOAT",
    "NOT_INTEGER",
    "OK",
    "SYNTAX",
    "WRONGTYPE",
    "CommandError",
    "Status",
    "format_double",
    "parse_float",
    "parse_int",
]

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
NOT_INTEGER = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"
SYNTAX = "ERR syntax error"

_INTEGER = re.compile(rb"-?[1-9][0-9]{0,18}|0")
_INT64 = 2**63


class CommandError(Exception):
    """A command's error reply, its text as Redis sends it: ``CODE message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Status(bytes):
    """A status reply (``+OK``): in Lua a ``{ok = ...}`` table, to a client plain bytes."""


OK = Status(b"OK")


def parse_int(value: bytes, error: str = NOT_INTEGER) -> int:
    if value.isdigit() and len(value) < 19 and (value[0] != 48 or len(value) == 1):
        return int(value)  # the common case, without the regular expression
    if _INTEGER.fullmatch(value) is None:
        raise CommandError(error)
    number = int(value)
    if not -_INT64 <= number < _INT64:
        raise CommandError(error)
    return number


def parse_float(value: bytes, error: str = NOT_FLOAT) -> float:
    """A score or timeout as ``strtod`` reads it, with Redis's refusals."""
    if not value or value[:1].isspace() or value[-1:].isspace() or b"_" in value:
        raise CommandError(error)
    try:
        number = float(value)
    except ValueError:
        raise CommandError(error) from None
    if math.isnan(number):
        raise CommandError(error)
    return number


def format_double(value: float) -> bytes:
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    return b"%.17g" % value
