"""JSON-RPC request parsing, response encoding and dispatch, without sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from powrd.control.rpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    PARSE_ERROR,
    ErrorReply,
    InvalidParams,
    MethodError,
    Request,
    error_line,
    invoke,
    parse_request,
    request_line,
    result_line,
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # orjson reads wider ones as floats
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert isinstance(parse_request(raw), Request | ErrorReply)


@given(json_values)
def test_arbitrary_json_never_raises_and_errors_serialize(value: Any) -> None:
    parsed = parse_request(json.dumps(value).encode())
    if isinstance(parsed, ErrorReply):
        decoded = json.loads(parsed.to_line())
        assert decoded["error"]["code"] in (INVALID_REQUEST, INVALID_PARAMS)
    else:
        assert isinstance(value, dict)
        assert parsed.is_notification == ("id" not in value)


@given(
    method=st.text(),
    params=st.dictionaries(st.text(), json_values, max_size=4),
    request_id=st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(),
)
def test_request_line_round_trips(method: str, params: dict[str, Any], request_id: Any) -> None:
    line = request_line(request_id, method, params)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    parsed = parse_request(line)
    assert parsed == Request(method, params, request_id, is_notification=request_id is None)


@pytest.mark.parametrize(
    ("line", "code", "request_id"),
    [
        (b"{not json", PARSE_ERROR, None),
        (b"\xff\xfe", PARSE_ERROR, None),
        (b'[{"jsonrpc":"2.0","method":"a","id":1}]', INVALID_REQUEST, None),
        (b"[]", INVALID_REQUEST, None),
        (b"42", INVALID_REQUEST, None),
        (b'{"method":"a","id":3}', INVALID_REQUEST, 3),
        (b'{"jsonrpc":"1.0","method":"a","id":3}', INVALID_REQUEST, 3),
        (b'{"jsonrpc":"2.0","method":5,"id":"x"}', INVALID_REQUEST, "x"),
        (b'{"jsonrpc":"2.0","method":"a","id":true}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","method":"a","id":1.5}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","method":"a","id":{}}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","method":"a","params":[1],"id":4}', INVALID_PARAMS, 4),
        (b'{"jsonrpc":"2.0","method":"a","params":"x","id":4}', INVALID_REQUEST, 4),
        (b'{"jsonrpc":"2.0","method":"a","params":null,"id":4}', INVALID_REQUEST, 4),
    ],
)
def test_invalid_lines(line: bytes, code: int, request_id: Any) -> None:
    parsed = parse_request(line)
    assert isinstance(parsed, ErrorReply)
    assert (parsed.code, parsed.id) == (code, request_id)


def test_missing_params_is_an_empty_object_and_missing_id_a_notification() -> None:
    assert parse_request(b'{"jsonrpc":"2.0","method":"ping"}') == Request(
        "ping", {}, None, is_notification=True
    )
    assert parse_request(b'{"jsonrpc":"2.0","method":"ping","id":null}') == Request(
        "ping", {}, None, is_notification=False
    )


def test_result_line_falls_back_for_what_orjson_refuses() -> None:
    line = result_line(1, {"big": 2**70, "s": "\ud800"})
    assert json.loads(line)["result"] == {"big": 2**70, "s": "\ud800"}
    line.decode("utf-8")  # still valid UTF-8 on the wire


def test_result_line_rejects_non_json() -> None:
    with pytest.raises(TypeError):
        result_line(1, object())


def test_error_line_drops_unserializable_data() -> None:
    decoded = json.loads(error_line(1, NOT_FOUND, "gone", data=object()))
    assert decoded["error"] == {"code": NOT_FOUND, "message": "gone"}


def test_method_error_code_range_is_enforced() -> None:
    with pytest.raises(ValueError):
        MethodError(-32600, "reserved")
    with pytest.raises(ValueError):
        MethodError(1, "positive")


async def _raise_params(params: dict[str, Any]) -> Any:
    raise InvalidParams("limit must be positive")


async def _raise_method(params: dict[str, Any]) -> Any:
    raise MethodError(NOT_FOUND, "no such template", {"d": "x"})


async def _crash(params: dict[str, Any]) -> Any:
    raise RuntimeError("secret internal detail")


METHODS = {"params": _raise_params, "method": _raise_method, "crash": _crash}


async def test_invoke_maps_handler_failures() -> None:
    assert await invoke(Request("nope", {}, 1), METHODS) == ErrorReply(
        METHOD_NOT_FOUND, "method not found: nope", 1
    )
    assert await invoke(Request("params", {}, 2), METHODS) == ErrorReply(
        INVALID_PARAMS, "invalid params: limit must be positive", 2
    )
    assert await invoke(Request("method", {}, 3), METHODS) == ErrorReply(
        NOT_FOUND, "no such template", 3, {"d": "x"}
    )
    with capture_logs() as logs:
        reply = await invoke(Request("crash", {}, 4), METHODS)
    assert reply == ErrorReply(INTERNAL_ERROR, "internal error", 4)
    assert [entry["event"] for entry in logs] == ["control handler failed"]
