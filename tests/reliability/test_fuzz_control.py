"""Fuzzing the control socket: every line is answered (or, as a notification, not) and
the server never dies.

A real daemon (tests/support/daemon.py ``running_daemon``, with the real method table
from powrd/service/methods.py and a store holding a small corpus) runs in a thread of
its own; hypothesis writes request lines to one long-lived connection. After each fuzz
line a sentinel ``status`` request follows on the same connection, so the responses in
between are exactly the fuzz line's: one for a request or an invalid line, none for a
notification or a blank line. No response may be an internal error (-32603), which
would mean an exception escaped a handler.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powrd.control.rpc import INTERNAL_ERROR
from powrd.protocol.event import loads
from powrd.service.daemon import Daemon
from powrd.service.methods import build_methods
from tests.support.corpus import generate_corpus, keys_for
from tests.support.daemon import running_daemon, write_config

USER = keys_for("control-fuzz", 0)
METHODS = sorted(build_methods(cast(Daemon, None)))  # the real table's names
PARAM_NAMES = ["filter", "state", "pending", "author", "search", "equipment", "tag", "limit",
               "coordinate", "since", "until", "kind", "content", "tags", "created_at", "id", "relay"]
STRUCTURED_EXAMPLES = 800
CALL_EXAMPLES = 1200
RAW_EXAMPLES = 400
CASES = {"structured": 0, "calls": 0, "raw": 0}
OUTCOMES: Counter[str] = Counter()  # "<method> <result|error code>", reported at teardown
SENTINELS = itertools.count()


# -- the daemon in its own thread -------------------------------------------------------


class DaemonThread:
    """``running_daemon`` on a private event loop, so blocking tests can talk to it."""

    def __init__(self, config: Path, corpus: list[str]) -> None:
        self.config = config
        self.corpus = corpus
        self.ready = threading.Event()
        self.daemon: Daemon | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        try:
            async with running_daemon(self.config) as daemon:
                assert daemon.pipeline is not None
                await daemon.pipeline.submit("import", [(loads(e), len(e)) for e in self.corpus])
                self.daemon, self._loop, self._stop = daemon, asyncio.get_running_loop(), asyncio.Event()
                self.ready.set()
                await self._stop.wait()
        except BaseException as error:
            self.error = error
            raise
        finally:
            self.ready.set()

    def start(self) -> Daemon:
        self._thread.start()
        assert self.ready.wait(60), "the daemon did not start"
        assert self.error is None and self.daemon is not None, self.error
        return self.daemon

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def parameters(self) -> dict[str, list[str]]:
        """Each method's parameter names, as its own "unknown parameter" error lists them."""
        conn = LineConnection(self.config.parent / "powrd.sock")
        names: dict[str, list[str]] = {}
        try:
            for method in METHODS:
                probe = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"probe\u00b7": 1}}
                conn.send(json.dumps(probe).encode() + b"\n")
                message = loads(conn.read_line()).get("error", {}).get("message", "")
                _, _, listed = message.partition("expected one of ")
                try:
                    names[method] = [str(n) for n in json.loads(listed.replace("'", '"'))]
                except ValueError:
                    names[method] = PARAM_NAMES
        finally:
            conn.close()
        return names

    def tasks_alive(self) -> bool:
        daemon = self.daemon
        assert daemon is not None
        return all(not task.done() for task in daemon._background)


class LineConnection:
    """A blocking line-oriented connection to the control socket."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(str(path))
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def daemon_thread(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonThread]:
    directory = tmp_path_factory.mktemp("control-fuzz")
    key = directory / "user.nsec"
    key.write_text(USER.secret_key().to_bech32() + "\n")
    key.chmod(0o600)
    runner = DaemonThread(write_config(directory, secret_key_file=key), generate_corpus(150, 3, seed=31))
    runner.start()
    yield runner
    runner.stop()
    print(f"control fuzz: {CASES['structured']} structured request lines, {CASES['calls']} method "
          f"calls and {CASES['raw']} raw lines")
    for outcome, count in sorted(OUTCOMES.items()):
        print(f"  {outcome}: {count}")


@pytest.fixture(scope="module")
def parameters(daemon_thread: DaemonThread) -> dict[str, list[str]]:
    return daemon_thread.parameters()


@pytest.fixture(scope="module")
def connection(daemon_thread: DaemonThread) -> Iterator[LineConnection]:
    conn = LineConnection(daemon_thread.config.parent / "powrd.sock")
    yield conn
    conn.close()


# -- what a line deserves ---------------------------------------------------------------


def expected_responses(line: bytes) -> int:
    """JSON-RPC 2.0: a valid request without ``id`` is a notification; all else is answered."""
    if not line.strip():
        return 0
    try:
        message = loads(line)
    except (ValueError, RecursionError):
        return 1
    if not isinstance(message, dict) or "id" in message:
        return 1
    valid = (
        message.get("jsonrpc") == "2.0"
        and isinstance(message.get("method"), str)
        and isinstance(message.get("params", {}), dict)
    )
    return 0 if valid else 1


def request_id(line: bytes) -> object:
    """The id a response must carry: the request's if it was readable and valid, else null."""
    try:
        message = loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict):
        return None
    value = message.get("id")
    valid = value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    return value if valid else None


def exchange(connection: LineConnection, line: bytes) -> list[dict[str, Any]]:
    """Send ``line`` then a sentinel; return the responses that came before the sentinel's."""
    sentinel = f"sentinel-{next(SENTINELS)}"
    connection.send(line + b"\n" + json.dumps({"jsonrpc": "2.0", "id": sentinel, "method": "status"}).encode() + b"\n")
    responses = []
    while True:
        response = loads(connection.read_line())
        assert isinstance(response, dict), response
        if response.get("id") == sentinel:
            assert "result" in response, response
            return responses
        responses.append(response)


def check_line(daemon_thread: DaemonThread, connection: LineConnection, line: bytes) -> None:
    responses = exchange(connection, line)
    assert len(responses) == expected_responses(line), (line, responses)
    method = loads(line).get("method") if expected_responses(line) and request_id(line) is not None else None
    for response in responses:
        OUTCOMES[f"{method if isinstance(method, str) and method in METHODS else '-'} "
                 f"{response['error']['code'] if 'error' in response else 'result'}"] += 1
        assert response.get("jsonrpc") == "2.0", response
        assert ("result" in response) != ("error" in response), response
        assert "id" in response and response["id"] == request_id(line), (line, response)
        if "error" in response:
            error = response["error"]
            assert isinstance(error.get("code"), int) and isinstance(error.get("message"), str), response
            assert error["code"] != INTERNAL_ERROR, f"an exception escaped a handler for {line!r}"
    assert daemon_thread.tasks_alive()


# -- request lines --------------------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(["", "0" * 64, "33402:" + "a" * 64 + ":d", USER.public_key().to_bech32(), "pending"]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10,
)
FILTERS = st.dictionaries(
    st.sampled_from(["ids", "authors", "kinds", "since", "until", "limit", "#d", "#t", "#e", "search", "x"]),
    st.one_of(JSON_VALUES, st.lists(st.one_of(st.integers(-1, 70000), st.text(max_size=64)), max_size=3)),
    max_size=4,
)
TAGS = st.lists(
    st.lists(st.one_of(
        st.sampled_from(["d", "title", "format", "format_units", "equipment", "type", "exercise",
                         "start", "end", "completed", "e", "a", "barbell", "kg", "weight", "true"]),
        st.text(max_size=12)), min_size=0, max_size=4),
    max_size=6,
)
PARAM_VALUES = st.one_of(JSON_VALUES, FILTERS, TAGS, st.sampled_from([33401, 33402, 1301, 33403, 5, 1, 0]))


@st.composite
def request_lines(draw: st.DrawFn) -> bytes:
    message: dict[str, Any] = {}
    if draw(st.integers(0, 15)):
        message["jsonrpc"] = "2.0"
    elif draw(st.booleans()):
        message["jsonrpc"] = draw(JSON_SCALARS)
    id_kind = draw(st.integers(0, 9))
    if id_kind < 7:
        message["id"] = draw(st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=10)))
    elif id_kind == 8:
        message["id"] = draw(JSON_VALUES)
    message["method"] = draw(st.one_of(st.sampled_from(METHODS), st.sampled_from(METHODS),
                                       st.text(max_size=15), JSON_SCALARS))
    params_kind = draw(st.integers(0, 9))
    if params_kind < 7:
        message["params"] = draw(st.dictionaries(st.sampled_from(PARAM_NAMES), PARAM_VALUES, max_size=4))
    elif params_kind == 8:
        message["params"] = draw(JSON_VALUES)
    if draw(st.integers(0, 9)) == 0:
        message[draw(st.text(max_size=6))] = draw(JSON_VALUES)
    items = list(message.items())
    order = draw(st.permutations(range(len(items))))
    return json.dumps({items[i][0]: items[i][1] for i in order}).encode()


SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large]


@settings(max_examples=STRUCTURED_EXAMPLES, deadline=None, suppress_health_check=SUPPRESS)
@given(line=request_lines())
def test_request_lines(daemon_thread: DaemonThread, connection: LineConnection, line: bytes) -> None:
    CASES["structured"] += 1
    check_line(daemon_thread, connection, line)


TYPED_VALUES = {
    "limit": st.integers(-(2**70), 2**70), "since": st.integers(-(2**70), 2**70),
    "until": st.integers(-(2**70), 2**70), "created_at": st.integers(-(2**70), 2**70),
    "kind": st.integers(-1, 70000), "author": JSON_SCALARS, "filter": FILTERS, "tags": TAGS,
}


@settings(max_examples=CALL_EXAMPLES, deadline=None, suppress_health_check=SUPPRESS)
@given(data=st.data())
def test_method_calls(daemon_thread: DaemonThread, connection: LineConnection,
                      parameters: dict[str, list[str]], data: st.DataObject) -> None:
    """Well-formed requests to real methods with their real parameter names, odd values."""
    CASES["calls"] += 1
    method = data.draw(st.sampled_from(METHODS), label="method")
    names = parameters[method] or ["x"]
    params = data.draw(st.dictionaries(
        st.sampled_from(names),
        st.one_of(*(TYPED_VALUES[n] for n in names if n in TYPED_VALUES), PARAM_VALUES),
        max_size=len(names)), label="params")
    line = json.dumps({"jsonrpc": "2.0", "id": data.draw(st.integers(0, 2**31)), "method": method,
                       "params": params}).encode()
    check_line(daemon_thread, connection, line)


@settings(max_examples=RAW_EXAMPLES, deadline=None, suppress_health_check=SUPPRESS)
@given(line=st.one_of(
    st.binary(max_size=200),
    st.builds(lambda line, cut: line[:cut], request_lines(), st.integers(0, 200)),
    st.text(max_size=100).map(lambda text: text.encode("utf-8", "surrogatepass")),
))
def test_raw_lines(daemon_thread: DaemonThread, connection: LineConnection, line: bytes) -> None:
    CASES["raw"] += 1
    check_line(daemon_thread, connection, line.replace(b"\n", b" "))


def test_the_server_survived(daemon_thread: DaemonThread) -> None:
    fresh = LineConnection(daemon_thread.config.parent / "powrd.sock")
    try:
        assert exchange(fresh, b"") == []
    finally:
        fresh.close()
    assert daemon_thread.tasks_alive()
    assert daemon_thread.daemon is not None and daemon_thread.daemon.state == "running"
