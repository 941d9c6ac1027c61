"""The local control socket: JSON-RPC 2.0 server, client, method table."""
