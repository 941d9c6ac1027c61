"""Test support shared by the whole suite (import as ``tests.support.<module>``).

- :mod:`tests.support.events`: deterministic signed NIP-101e events, one at a time.
- :mod:`tests.support.corpus`: :func:`~tests.support.corpus.generate_corpus`, large
  realistic corpora (cached under ``tests/.cache/``), and the builders re-exported.
- :mod:`tests.support.relays`: nostr-sdk's in-process relay with publish/fetch helpers.
- :mod:`tests.support.faultrelay`: a scripted relay that breaks the protocol on demand.
- :mod:`tests.support.proxy`: a loopback proxy that stays bound: relay downtime without
  re-binding a port.

Fixtures built on these live in ``tests/conftest.py``: ``local_relay``,
``relay_factory`` and ``corpus_small``.
"""
