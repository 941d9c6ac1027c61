"""ControlClient and call_sync against a real ControlServer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from powrd.control.client import (
    ConnectionLost,
    ControlClient,
    DaemonNotRunning,
    RpcError,
    call_sync,
)
from powrd.control.rpc import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    NOT_READY,
    SERVER_BUSY,
    InvalidParams,
    MethodError,
    Stream,
)
from powrd.control.server import ControlServer

TIMEOUT = 5.0


class Methods:
    def __init__(self) -> None:
        self.notified: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.blocked = asyncio.Event()
        self.release = asyncio.Event()

    def table(self) -> dict[str, Any]:
        return {
            "echo": self.echo,
            "not_ready": self.not_ready,
            "bad": self.bad,
            "record": self.record,
            "block": self.block,
            "big": self.big,
            "count": self.count,
            "count_then_fail": self.count_then_fail,
        }

    async def echo(self, params: dict[str, Any]) -> Any:
        return params

    async def not_ready(self, params: dict[str, Any]) -> Any:
        raise MethodError(NOT_READY, "store is opening", {"retry_after": 1})

    async def bad(self, params: dict[str, Any]) -> Any:
        raise InvalidParams("id must be 64 hex characters")

    async def record(self, params: dict[str, Any]) -> Any:
        await self.notified.put(params)

    async def block(self, params: dict[str, Any]) -> Any:
        self.blocked.set()
        await self.release.wait()
        return "released"

    async def big(self, params: dict[str, Any]) -> Any:
        return "x" * params["size"]

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


@pytest.fixture
def methods() -> Methods:
    return Methods()


@pytest.fixture
async def server(tmp_path: Path, methods: Methods) -> AsyncIterator[ControlServer]:
    control = ControlServer(tmp_path / "ctl.sock", methods.table(), 1 << 20)
    await control.start()
    yield control
    await control.close()


@pytest.fixture
async def client(server: ControlServer) -> AsyncIterator[ControlClient]:
    async with ControlClient(server.path) as control_client:
        yield control_client


@pytest.fixture
def stale_socket(tmp_path: Path) -> Path:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(os.fspath(path))
    return path


async def test_call_returns_results_over_one_connection(
    client: ControlClient, server: ControlServer
) -> None:
    assert await client.call("echo", {"a": 1}) == {"a": 1}
    assert await client.call("echo") == {}
    assert server.client_count == 1


async def test_rpc_errors_carry_code_message_and_data(client: ControlClient) -> None:
    with pytest.raises(RpcError) as caught:
        await client.call("not_ready")
    assert (caught.value.code, caught.value.message, caught.value.data) == (
        NOT_READY,
        "store is opening",
        {"retry_after": 1},
    )
    with pytest.raises(RpcError) as caught:
        await client.call("bad")
    assert caught.value.code == INVALID_PARAMS
    with pytest.raises(RpcError) as caught:
        await client.call("nope")
    assert caught.value.code == METHOD_NOT_FOUND
    assert await client.call("echo", {"still": "usable"}) == {"still": "usable"}


async def test_absent_socket_means_not_running(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotRunning):
        await ControlClient(tmp_path / "absent.sock").call("echo")


async def test_refusing_socket_means_not_running(stale_socket: Path) -> None:
    with pytest.raises(DaemonNotRunning):
        await ControlClient(stale_socket).call("echo")


async def test_notify_runs_the_method_without_waiting(
    client: ControlClient, methods: Methods
) -> None:
    await client.notify("record", {"n": 1})
    assert await asyncio.wait_for(methods.notified.get(), TIMEOUT) == {"n": 1}
    assert await client.call("echo", {"after": True}) == {"after": True}


async def test_stream_yields_chunks(client: ControlClient) -> None:
    assert [chunk async for chunk in client.stream("count", {"n": 3})] == [0, 1, 2]
    assert [chunk async for chunk in client.stream("count", {"n": 0})] == []
    assert await client.call("echo") == {}


async def test_stream_error_after_chunks(client: ControlClient) -> None:
    received = []
    with pytest.raises(RpcError) as caught:
        async for chunk in client.stream("count_then_fail"):
            received.append(chunk)
    assert received == [0]
    assert caught.value.code == NOT_FOUND
    assert await client.call("echo") == {}


async def test_leaving_a_stream_early_keeps_the_client_usable(client: ControlClient) -> None:
    async with contextlib.aclosing(client.stream("count", {"n": 1000})) as chunks:
        async for chunk in chunks:
            if chunk == 2:
                break
    assert await client.call("echo", {"next": 1}) == {"next": 1}


async def test_stream_on_a_plain_method_is_reported(client: ControlClient) -> None:
    with pytest.raises(ConnectionLost):
        async for _ in client.stream("echo"):
            pass


async def test_server_going_away_mid_call(
    client: ControlClient, server: ControlServer, methods: Methods
) -> None:
    call = asyncio.create_task(client.call("block"))
    await asyncio.wait_for(methods.blocked.wait(), TIMEOUT)
    await server.close()
    with pytest.raises(ConnectionLost):
        await asyncio.wait_for(call, TIMEOUT)
    with pytest.raises(DaemonNotRunning):
        await client.call("echo")


async def test_cancelled_call_does_not_confuse_the_next_one(
    client: ControlClient, methods: Methods
) -> None:
    call = asyncio.create_task(client.call("block"))
    await asyncio.wait_for(methods.blocked.wait(), TIMEOUT)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    methods.release.set()  # its answer must not be taken for the next call's
    assert await client.call("echo", {"fresh": 1}) == {"fresh": 1}


async def test_response_larger_than_the_client_limit(server: ControlServer) -> None:
    async with ControlClient(server.path, max_response_bytes=1000) as small:
        with pytest.raises(ConnectionLost):
            await small.call("big", {"size": 5000})
        assert await small.call("big", {"size": 10}) == "x" * 10


async def test_refusal_by_a_full_server_is_an_rpc_error(tmp_path: Path, methods: Methods) -> None:
    control = ControlServer(tmp_path / "full.sock", methods.table(), 1024, max_clients=1)
    await control.start()
    try:
        async with ControlClient(control.path) as first, ControlClient(control.path) as second:
            assert await first.call("echo") == {}
            with pytest.raises(RpcError) as caught:
                await second.call("echo")
            assert caught.value.code == SERVER_BUSY
    finally:
        await control.close()


async def test_call_sync(server: ControlServer) -> None:
    result = await asyncio.to_thread(call_sync, server.path, "echo", {"x": [1, 2]}, TIMEOUT)
    assert result == {"x": [1, 2]}
    assert await asyncio.to_thread(call_sync, server.path, "echo") == {}


async def test_call_sync_errors(server: ControlServer, methods: Methods) -> None:
    with pytest.raises(RpcError) as caught:
        await asyncio.to_thread(call_sync, server.path, "not_ready", None, TIMEOUT)
    assert caught.value.code == NOT_READY
    with pytest.raises(TimeoutError):
        await asyncio.to_thread(call_sync, server.path, "block", None, 0.2)
    methods.release.set()


async def test_call_sync_large_response(server: ControlServer) -> None:
    size = 300_000  # several recv() calls
    assert await asyncio.to_thread(call_sync, server.path, "big", {"size": size}) == "x" * size


def test_call_sync_not_running(tmp_path: Path, stale_socket: Path) -> None:
    with pytest.raises(DaemonNotRunning):
        call_sync(tmp_path / "absent.sock", "echo")
    with pytest.raises(DaemonNotRunning):
        call_sync(stale_socket, "echo")


def test_call_sync_when_the_peer_hangs_up_without_answering(tmp_path: Path) -> None:
    path = tmp_path / "mute.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(os.fspath(path))
        listener.listen(1)

        def hang_up() -> None:
            connection, _ = listener.accept()
            connection.close()

        thread = threading.Thread(target=hang_up)
        thread.start()
        try:
            with pytest.raises(ConnectionLost):
                call_sync(path, "echo", timeout=TIMEOUT)
        finally:
            thread.join(TIMEOUT)
