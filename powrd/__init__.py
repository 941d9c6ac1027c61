"""powrd: keeps Nostr workout data (NIP-101e) in sync in a local SQLite store."""

__version__ = "0.1.0"
