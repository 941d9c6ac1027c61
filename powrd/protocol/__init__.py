"""Sans-I/O NIP-01: events, verification, filters, messages, relay sessions.

Nothing in this package touches a socket, a clock or a database.
"""
