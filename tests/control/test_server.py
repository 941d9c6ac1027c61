"""ControlServer over real Unix sockets with raw clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from powrd.control.rpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    PARSE_ERROR,
    PERMISSION_DENIED,
    SERVER_BUSY,
    InvalidParams,
    MethodError,
    Stream,
)
from powrd.control.server import AlreadyRunning, ControlServer

TIMEOUT = 5.0
MAX_REQUEST = 1024


class Handlers:
    """A method table whose handlers record what they saw."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.slow_started = asyncio.Event()
        self.notified: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.stream_closed = asyncio.Event()

    def table(self) -> dict[str, Any]:
        return {
            "echo": self.echo,
            "bad_params": self.bad_params,
            "missing": self.missing,
            "crash": self.crash,
            "not_json": self.not_json,
            "slow": self.slow,
            "record": self.record,
            "count": self.count,
            "count_then_fail": self.count_then_fail,
            "endless": self.endless,
        }

    async def echo(self, params: dict[str, Any]) -> Any:
        return params

    async def bad_params(self, params: dict[str, Any]) -> Any:
        raise InvalidParams("n must be an integer")

    async def missing(self, params: dict[str, Any]) -> Any:
        raise MethodError(NOT_FOUND, "no such exercise", {"d": "squat"})

    async def crash(self, params: dict[str, Any]) -> Any:
        raise RuntimeError("Traceback: secret at /var/lib/powrd")

    async def not_json(self, params: dict[str, Any]) -> Any:
        return {"value": object()}

    async def slow(self, params: dict[str, Any]) -> Any:
        self.slow_started.set()
        await self.gate.wait()
        return "done"

    async def record(self, params: dict[str, Any]) -> Any:
        await self.notified.put(params)
        return "recorded"

    async def count(self, params: dict[str, Any]) -> Any:
        async def chunks() -> AsyncIterator[int]:
            for number in range(params["n"]):
                yield number

        return Stream(chunks())

    async def count_then_fail(self, params: dict[str, Any]) -> Any:
        async def chunks() -> AsyncIterator[int]:
            yield 0
            raise MethodError(NOT_FOUND, "blob vanished")

        return Stream(chunks())

    async def endless(self, params: dict[str, Any]) -> Any:
        async def chunks() -> AsyncIterator[str]:
            try:
                while True:
                    yield "x" * 1000
            finally:
                self.stream_closed.set()

        return Stream(chunks())


class RawClient:
    """Speaks bytes to the socket so that malformed input can be sent."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, path: Path) -> RawClient:
        reader, writer = await asyncio.open_unix_connection(os.fspath(path))
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(self, method: str, request_id: Any = 1, **extra: Any) -> None:
        message = {"jsonrpc": "2.0", "method": method, "id": request_id, **extra}
        await self.send(json.dumps(message).encode() + b"\n")

    async def receive(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        assert line.endswith(b"\n"), f"connection ended: {line!r}"
        decoded: dict[str, Any] = json.loads(line)
        assert decoded["jsonrpc"] == "2.0"
        return decoded

    async def at_eof(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), TIMEOUT) == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
def handlers() -> Handlers:
    return Handlers()


@pytest.fixture
async def server(tmp_path: Path, handlers: Handlers) -> AsyncIterator[ControlServer]:
    control = ControlServer(tmp_path / "ctl.sock", handlers.table(), MAX_REQUEST)
    await control.start()
    yield control
    await control.close()


@pytest.fixture
async def client(server: ControlServer) -> AsyncIterator[RawClient]:
    raw = await RawClient.connect(server.path)
    yield raw
    await raw.close()


def error_of(response: dict[str, Any]) -> tuple[Any, int]:
    return response["id"], response["error"]["code"]


async def test_echo_with_and_without_params(client: RawClient) -> None:
    await client.request("echo", 1, params={"a": [1, "b"]})
    assert await client.receive() == {"jsonrpc": "2.0", "id": 1, "result": {"a": [1, "b"]}}
    await client.request("echo", "two")
    assert await client.receive() == {"jsonrpc": "2.0", "id": "two", "result": {}}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"{not json\n", (None, PARSE_ERROR)),
        (b"\xff\xfe\n", (None, PARSE_ERROR)),
        (b'[{"jsonrpc":"2.0","method":"echo","id":1}]\n', (None, INVALID_REQUEST)),
        (b'"just a string"\n', (None, INVALID_REQUEST)),
        (b'{"jsonrpc":"2.0","id":5}\n', (5, INVALID_REQUEST)),
        (b'{"method":"echo","id":5}\n', (5, INVALID_REQUEST)),
        (b'{"jsonrpc":"2.0","method":"echo","id":[1]}\n', (None, INVALID_REQUEST)),
        (b'{"jsonrpc":"2.0","method":"echo","params":[1,2],"id":6}\n', (6, INVALID_PARAMS)),
        (b'{"jsonrpc":"2.0","method":"nope","id":7}\n', (7, METHOD_NOT_FOUND)),
        (b'{"jsonrpc":"2.0","method":"bad_params","id":8}\n', (8, INVALID_PARAMS)),
        (b'{"jsonrpc":"2.0","method":"not_json","id":9}\n', (9, INTERNAL_ERROR)),
    ],
)
async def test_error_responses_keep_the_connection_usable(
    client: RawClient, line: bytes, expected: tuple[Any, int]
) -> None:
    await client.send(line)
    assert error_of(await client.receive()) == expected
    await client.request("echo", 99)
    assert (await client.receive())["id"] == 99


async def test_method_error_carries_code_message_and_data(client: RawClient) -> None:
    await client.request("missing", 3)
    assert (await client.receive())["error"] == {
        "code": NOT_FOUND,
        "message": "no such exercise",
        "data": {"d": "squat"},
    }


async def test_handler_crash_is_logged_and_not_leaked(client: RawClient) -> None:
    with capture_logs() as logs:
        await client.request("crash", 4)
        response = await client.receive()
    assert response["error"] == {"code": INTERNAL_ERROR, "message": "internal error"}
    assert "secret" not in json.dumps(response)
    failures = [entry for entry in logs if entry["event"] == "control handler failed"]
    assert len(failures) == 1 and failures[0]["method"] == "crash"


async def test_notifications_run_but_get_no_response(
    client: RawClient, handlers: Handlers
) -> None:
    await client.send(b'{"jsonrpc":"2.0","method":"record","params":{"n":1}}\n')
    await client.send(b'{"jsonrpc":"2.0","method":"no_such_method"}\n')
    await client.send(b'{"jsonrpc":"2.0","method":"crash"}\n')
    await client.send(b'{"jsonrpc":"2.0","method":"count","params":{"n":3}}\n')
    await client.request("echo", 10)
    # Requests are answered in order, so anything sent for the notifications would
    # arrive before this response.
    assert await client.receive() == {"jsonrpc": "2.0", "id": 10, "result": {}}
    assert handlers.notified.get_nowait() == {"n": 1}


async def test_null_id_is_a_request_not_a_notification(client: RawClient) -> None:
    await client.request("echo", None)
    assert await client.receive() == {"jsonrpc": "2.0", "id": None, "result": {}}


async def test_request_too_large_then_valid_request_on_same_connection(
    client: RawClient,
) -> None:
    await client.send(b'{"jsonrpc":"2.0","method":"echo","params":{"pad":"' + b"a" * 3000)
    # The error arrives before the line is even finished.
    response = await client.receive()
    assert response["error"] == {"code": INVALID_REQUEST, "message": "request too large"}
    assert response["id"] is None
    await client.send(b"b" * 5000 + b'"},"id":1}\n')
    await client.request("echo", 2, params={"ok": True})
    assert await client.receive() == {"jsonrpc": "2.0", "id": 2, "result": {"ok": True}}


async def test_request_at_the_limit_is_served(client: RawClient) -> None:
    head = b'{"jsonrpc":"2.0","method":"echo","id":1,"params":{"p":"'
    tail = b'"}}'
    line = head + b"a" * (MAX_REQUEST - len(head) - len(tail)) + tail
    assert len(line) == MAX_REQUEST
    await client.send(line + b"\n")
    assert (await client.receive())["id"] == 1


async def test_last_request_without_newline_is_answered_at_eof(client: RawClient) -> None:
    await client.send(b'{"jsonrpc":"2.0","method":"echo","id":1}')
    client.writer.write_eof()
    assert (await client.receive())["id"] == 1
    assert await client.at_eof()


async def test_blank_lines_are_ignored(client: RawClient) -> None:
    await client.send(b"\n  \r\n")
    await client.send(b'{"jsonrpc":"2.0","method":"echo","id":1}\r\n')
    assert (await client.receive())["id"] == 1


async def test_garbage_from_one_client_does_not_affect_another(server: ControlServer) -> None:
    noisy = await RawClient.connect(server.path)
    calm = await RawClient.connect(server.path)
    try:
        await noisy.send(b"\x00\x01garbage\n" + b"z" * 10_000)
        for request_id in range(5):
            await calm.request("echo", request_id)
            assert (await calm.receive())["id"] == request_id
        assert error_of(await noisy.receive()) == (None, PARSE_ERROR)
        assert error_of(await noisy.receive()) == (None, INVALID_REQUEST)
    finally:
        await noisy.close()
        await calm.close()


async def test_slow_handler_does_not_block_other_clients(
    server: ControlServer, handlers: Handlers
) -> None:
    slow = await RawClient.connect(server.path)
    fast = await RawClient.connect(server.path)
    try:
        await slow.request("slow", 1)
        await asyncio.wait_for(handlers.slow_started.wait(), TIMEOUT)
        await fast.request("echo", 2)
        assert (await fast.receive())["id"] == 2
        handlers.gate.set()
        assert await slow.receive() == {"jsonrpc": "2.0", "id": 1, "result": "done"}
    finally:
        await slow.close()
        await fast.close()


async def test_streaming_framing(client: RawClient) -> None:
    await client.request("count", 7, params={"n": 3})
    responses = [await client.receive() for _ in range(4)]
    assert [r["result"] for r in responses] == [
        {"chunk": 0, "more": True},
        {"chunk": 1, "more": True},
        {"chunk": 2, "more": True},
        {"more": False},
    ]
    assert {r["id"] for r in responses} == {7}


async def test_empty_stream_is_just_the_end_marker(client: RawClient) -> None:
    await client.request("count", 1, params={"n": 0})
    assert (await client.receive())["result"] == {"more": False}


async def test_stream_failure_ends_with_an_error(client: RawClient) -> None:
    await client.request("count_then_fail", 8)
    assert (await client.receive())["result"] == {"chunk": 0, "more": True}
    last = await client.receive()
    assert last == {
        "jsonrpc": "2.0",
        "id": 8,
        "error": {"code": NOT_FOUND, "message": "blob vanished"},
    }
    await client.request("echo", 9)
    assert (await client.receive())["id"] == 9


async def test_stream_is_closed_when_the_client_leaves(
    client: RawClient, handlers: Handlers
) -> None:
    await client.request("endless", 1)
    assert (await client.receive())["result"]["more"] is True
    await client.close()
    await asyncio.wait_for(handlers.stream_closed.wait(), TIMEOUT)


async def test_socket_mode_is_0600_and_umask_restored(tmp_path: Path, handlers: Handlers) -> None:
    before = os.umask(0o022)
    try:
        control = ControlServer(tmp_path / "mode.sock", handlers.table(), MAX_REQUEST)
        await control.start()
        try:
            assert os.stat(control.path).st_mode & 0o777 == 0o600
            assert os.umask(0o022) == 0o022
        finally:
            await control.close()
    finally:
        os.umask(before)


async def test_stale_socket_file_is_replaced(tmp_path: Path, handlers: Handlers) -> None:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(os.fspath(path))  # bound, never listening: connections are refused
    control = ControlServer(path, handlers.table(), MAX_REQUEST)
    with capture_logs() as logs:
        await control.start()
    try:
        assert "stale control socket removed" in [entry["event"] for entry in logs]
        raw = await RawClient.connect(path)
        await raw.request("echo", 1)
        assert (await raw.receive())["id"] == 1
        await raw.close()
    finally:
        await control.close()
    assert not path.exists()


async def test_live_socket_is_refused(server: ControlServer, handlers: Handlers) -> None:
    second = ControlServer(server.path, handlers.table(), MAX_REQUEST)
    with pytest.raises(AlreadyRunning):
        await second.start()
    raw = await RawClient.connect(server.path)
    await raw.request("echo", 1)
    assert (await raw.receive())["id"] == 1
    await raw.close()


async def test_non_socket_file_is_left_alone(tmp_path: Path, handlers: Handlers) -> None:
    path = tmp_path / "not-a-socket"
    path.write_text("precious")
    with pytest.raises(FileExistsError):
        await ControlServer(path, handlers.table(), MAX_REQUEST).start()
    assert path.read_text() == "precious"


async def test_close_does_not_remove_a_successors_socket(
    tmp_path: Path, handlers: Handlers
) -> None:
    path = tmp_path / "shared.sock"
    first = ControlServer(path, handlers.table(), MAX_REQUEST)
    await first.start()
    path.unlink()
    second = ControlServer(path, handlers.table(), MAX_REQUEST)
    await second.start()
    await first.close()
    try:
        raw = await RawClient.connect(path)
        await raw.request("echo", 1)
        assert (await raw.receive())["id"] == 1
        await raw.close()
    finally:
        await second.close()


async def test_close_cancels_clients_with_running_handlers(
    tmp_path: Path, handlers: Handlers
) -> None:
    control = ControlServer(tmp_path / "c.sock", handlers.table(), MAX_REQUEST)
    await control.start()
    raw = await RawClient.connect(control.path)
    await raw.request("slow", 1)
    await asyncio.wait_for(handlers.slow_started.wait(), TIMEOUT)
    await asyncio.wait_for(control.close(), TIMEOUT)
    assert control.client_count == 0
    assert await raw.at_eof()
    await raw.close()


async def test_clients_beyond_the_limit_are_turned_away(
    tmp_path: Path, handlers: Handlers
) -> None:
    control = ControlServer(tmp_path / "b.sock", handlers.table(), MAX_REQUEST, max_clients=2)
    await control.start()
    admitted = [await RawClient.connect(control.path) for _ in range(2)]
    try:
        for index, raw in enumerate(admitted):
            await raw.request("echo", index)
            assert (await raw.receive())["id"] == index
        extra = await RawClient.connect(control.path)
        assert error_of(await extra.receive()) == (None, SERVER_BUSY)
        assert await extra.at_eof()
        await extra.close()
        await admitted.pop().close()
        # A slot frees once the server has noticed the departure; the server offers no
        # event for that, so poll the condition under a deadline.
        async with asyncio.timeout(TIMEOUT):
            while control.client_count > 1:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        late = await RawClient.connect(control.path)
        await late.request("echo", 5)
        assert (await late.receive())["id"] == 5
        admitted.append(late)
    finally:
        for raw in admitted:
            await raw.close()
        await control.close()


def test_socket_path_length_is_checked(handlers: Handlers) -> None:
    with pytest.raises(ValueError):
        ControlServer(Path("/tmp/" + "x" * 120), handlers.table(), MAX_REQUEST)


# --- peers with another uid -------------------------------------------------------------

OTHER_UID = 65534  # nobody


def _connect_as_other_uid(path: Path) -> str:
    """Fork a child that drops to another uid, connects and reports what happened."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: plain syscalls only, then _exit
        outcome = b""
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(TIMEOUT)
                sock.connect(os.fspath(path))
                # The server may answer and hang up before the request is written.
                with contextlib.suppress(BrokenPipeError):
                    sock.sendall(b'{"jsonrpc":"2.0","method":"echo","id":1}\n')
                received = b""
                while not received.endswith(b"\n") and (chunk := sock.recv(4096)):
                    received += chunk
                outcome = b"received:" + received
        except BaseException as exc:
            outcome = f"raised:{type(exc).__name__}".encode()
        finally:
            os.write(write_end, outcome)
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        outcome_text = pipe.read().decode()
    os.waitpid(pid, 0)
    return outcome_text


@pytest.fixture
def world_traversable_dir() -> Any:
    # pytest's tmp_path lives under a 0700 directory that the other uid cannot enter.
    directory = Path(tempfile.mkdtemp(prefix="powrd-uid-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="switching to another uid in a child needs root"
)


@needs_root
async def test_peer_with_other_uid_is_refused_by_peercred(
    world_traversable_dir: Path, handlers: Handlers
) -> None:
    control = ControlServer(world_traversable_dir / "ctl.sock", handlers.table(), MAX_REQUEST)
    await control.start()
    try:
        # Loosen the file mode so the connection gets through and SO_PEERCRED decides.
        control.path.chmod(0o666)
        with capture_logs() as logs:
            outcome = await asyncio.to_thread(_connect_as_other_uid, control.path)
        if outcome == "raised:PermissionError" and not logs:
            pytest.skip("this environment does not allow setuid in a child")
        assert outcome.startswith("received:"), outcome
        lines = outcome.removeprefix("received:").splitlines()
        assert len(lines) == 1
        response = json.loads(lines[0])
        assert error_of(response) == (None, PERMISSION_DENIED)
        refusals = [entry for entry in logs if entry["event"] == "control client refused"]
        assert refusals and refusals[0]["uid"] == OTHER_UID
    finally:
        await control.close()


@needs_root
async def test_peer_with_other_uid_cannot_open_the_0600_socket(
    world_traversable_dir: Path, handlers: Handlers
) -> None:
    control = ControlServer(world_traversable_dir / "ctl.sock", handlers.table(), MAX_REQUEST)
    await control.start()
    try:
        outcome = await asyncio.to_thread(_connect_as_other_uid, control.path)
        assert outcome == "raised:PermissionError"
    finally:
        await control.close()
