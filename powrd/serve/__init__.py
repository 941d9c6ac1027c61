"""The local relay endpoint: a NIP-01/11/45 relay on loopback over the synced store."""
