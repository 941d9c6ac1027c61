"""The network: relay connections, subscriptions, ingest pipeline, resolver, publisher."""
