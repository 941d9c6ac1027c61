"""Bounds on what one control request may ask for.

A request is answered or refused with -32602 naming the parameter; its size alone never
makes a handler fail (-32603). The bounds, per method:

============================  ==============================================  =========
method                        parameter                                       bounds
============================  ==============================================  =========
``library.exercises``         ``limit`` (default 1,000)                       1..10,000
``library.records``           ``limit`` (default 500)                         1..10,000
``library.records``           ``since``, ``until`` (unix seconds)             0..2^53-1
``publish``                   ``created_at`` (unix seconds)                   0..2^53-1
``events.query``              ``filter.limit`` (default 5,000)                1..5,000
``events.query``              ``filter.ids``, ``filter.authors``, each        10,000
                              ``filter.#<letter>`` (values per list)
``events.query``              ``filter.kinds`` (values)                       1,000
============================  ==============================================  =========
"""

from __future__ import annotations

from typing import Any, Final

from powrd.control.rpc import InvalidParams
from powrd.protocol.event import MAX_TIMESTAMP

MAX_LIBRARY_LIMIT: Final = 10_000
MAX_QUERY_LIMIT: Final = 5_000
MAX_FILTER_VALUES: Final = 10_000
MAX_FILTER_KINDS: Final = 1_000


def limit(params: dict[str, Any], *, default: int, maximum: int, name: str = "limit") -> int:
    """``params[name]`` as an integer from 1 to ``maximum``, ``default`` when absent."""
    value = _bounded(params, name, 1, maximum, f"an integer from 1 to {maximum:,}")
    return default if value is None else value


def timestamp(params: dict[str, Any], name: str) -> int | None:
    """``params[name]`` as unix seconds (0..2^53-1), None when absent."""
    return _bounded(params, name, 0, MAX_TIMESTAMP, f"unix seconds from 0 to {MAX_TIMESTAMP}")


def check_query_filter(raw: object) -> None:
    """Refuse an ``events.query`` filter whose lists or limit are too large.

    Runs before the filter is parsed, so a huge list costs a length check only.
    Other problems (types, hex) are left to :func:`powrd.protocol.filters.parse_filter`.
    """
    if not isinstance(raw, dict):
        return
    for key, value in raw.items():
        if not isinstance(value, list) or not isinstance(key, str):
            continue
        if key == "kinds":
            cap = MAX_FILTER_KINDS
        elif key in ("ids", "authors") or key.startswith("#"):
            cap = MAX_FILTER_VALUES
        else:
            continue
        if len(value) > cap:
            raise InvalidParams(
                f"filter.{key}: at most {cap:,} values per request, found {len(value):,};"
                " split the query"
            )
    what = f"an integer from 1 to {MAX_QUERY_LIMIT:,}"
    _bounded(raw, "limit", 1, MAX_QUERY_LIMIT, what, label="filter.limit")


def _bounded(
    params: dict[str, Any], name: str, low: int, high: int, what: str, *, label: str = ""
) -> int | None:
    """``params[name]`` if it is an integer from ``low`` to ``high``, None when absent.

    Raises:
        InvalidParams: naming ``label`` (default ``name``) and ``what`` was expected.
    """
    value = params.get(name)
    if value is not None and (type(value) is not int or not low <= value <= high):
        raise InvalidParams(f"{label or name}: expected {what}, found {_show(value)}")
    return value


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"
