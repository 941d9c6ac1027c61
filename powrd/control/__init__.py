"""The local control socket: JSON-RPC 2.0 framing, server and client (a transport only)."""

from typing import Final

# sockaddr_un.sun_path is 108 bytes on Linux, one of them the terminating NUL. Here,
# not in server.py, so that checking a config does not import the server.
MAX_SOCKET_PATH_BYTES: Final = 107
