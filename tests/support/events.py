"""Signed NIP-101e test events, built one at a time.

Every builder returns the event as compact JSON text (the form a relay sends), with the
fields in NIP-01 order. Signatures are deterministic: the same keys and arguments give
the same bytes on every run and machine, so tests may compare whole events and cache
them. nostr-sdk supplies the keys and is the judge of validity (the support tests check
every generated event with ``nostr_sdk.Event.from_json(...).verify()``); the signing
itself is BIP-340 through libsecp256k1 (coincurve) with auxiliary randomness derived
from the event id, because nostr-sdk's own signer draws fresh randomness per signature
and is several times slower for events with many tags.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import coincurve
import nostr_sdk

from powrd.protocol.event import compute_id, dumps

KIND_EXERCISE = 33401
KIND_TEMPLATE = 33402
KIND_RECORD = 1301
KIND_LEGACY_RECORD = 33403
KIND_DELETION = 5
KIND_AUTH = 22242

# 2023-11-14: old enough never to look like a future timestamp, recent enough to be real.
DEFAULT_CREATED_AT = 1_700_000_000

TagOverride = str | Sequence[str] | None


def keys_for(seed: int | str, index: int) -> nostr_sdk.Keys:
    """The ``index``-th key pair of a seed: same seed and index, same keys, forever."""
    secret = hashlib.sha256(f"powrd-test-keys:{seed}:{index}".encode()).digest()
    return nostr_sdk.Keys(nostr_sdk.SecretKey.from_bytes(secret))


def pubkey_of(keys: nostr_sdk.Keys) -> str:
    """The 64-character lowercase hex public key of ``keys``."""
    return str(keys.public_key().to_hex())


def write_key_file(path: Path, keys: nostr_sdk.Keys) -> Path:
    """Write ``keys``' secret key (nsec) to ``path`` with mode 0600, as powrd requires."""
    path.write_text(keys.secret_key().to_bech32() + "\n")
    path.chmod(0o600)
    return path


def coordinate(kind: int, author: nostr_sdk.Keys | str, d: str) -> str:
    """``<kind>:<pubkey hex>:<d>``; ``author`` is keys or a hex public key."""
    pubkey = author if isinstance(author, str) else pubkey_of(author)
    return f"{kind}:{pubkey}:{d}"


class Signer:
    """Signs events for one key pair; build with :func:`signer_for` (cached per key)."""

    def __init__(self, secret_hex: str) -> None:
        self._key = coincurve.PrivateKey(bytes.fromhex(secret_hex))
        self.pubkey = self._key.public_key_xonly.format().hex()

    def event(self, kind: int, content: str, tags: Iterable[Sequence[str]], created_at: int) -> str:
        """Compact JSON of the signed event (tags are copied, never shared)."""
        tag_lists = [list(tag) for tag in tags]
        event_id = compute_id(self.pubkey, created_at, kind, tag_lists, content)
        id_bytes = bytes.fromhex(event_id)
        sig = self._key.sign_schnorr(id_bytes, hashlib.sha256(b"aux" + id_bytes).digest())
        return dumps(
            {
                "id": event_id,
                "pubkey": self.pubkey,
                "created_at": created_at,
                "kind": kind,
                "tags": tag_lists,
                "content": content,
                "sig": sig.hex(),
            }
        )


@lru_cache(maxsize=4096)
def _signer_for_secret(secret_hex: str) -> Signer:
    return Signer(secret_hex)


def signer_for(keys: nostr_sdk.Keys) -> Signer:
    """The (cached) :class:`Signer` of ``keys``."""
    return _signer_for_secret(str(keys.secret_key().to_hex()))


def make_event(
    keys: nostr_sdk.Keys,
    kind: int,
    content: str = "",
    tags: Iterable[Sequence[str]] = (),
    created_at: int = DEFAULT_CREATED_AT,
) -> str:
    """Any signed event: the generic builder the others use.

    Args:
        keys: the author.
        kind: event kind.
        content: event content.
        tags: tags in order; each a sequence of strings (copied into the event as lists).
        created_at: unix seconds.

    Returns:
        Compact JSON of a valid, signed event.
    """
    return signer_for(keys).event(kind, content, tags, created_at)


def _apply_overrides(
    tags: list[list[str]], overrides: Mapping[str, TagOverride]
) -> list[list[str]]:
    """Replace, add or (with None) drop tags by name, keeping the original tag order."""

    def replacement(name: str) -> list[str] | None:
        value = overrides[name]
        if value is None:
            return None
        return [name, value] if isinstance(value, str) else [name, *value]

    result: list[list[str]] = []
    placed: set[str] = set()
    for tag in tags:
        name = tag[0]
        if name not in overrides:
            result.append(tag)
        elif name not in placed:
            placed.add(name)
            new_tag = replacement(name)
            if new_tag is not None:
                result.append(new_tag)
    for name in [name for name in overrides if name not in placed]:
        new_tag = replacement(name)
        if new_tag is not None:
            result.append(new_tag)
    return result


def make_exercise(
    keys: nostr_sdk.Keys,
    d: str,
    *,
    title: str = "Back Squat",
    created_at: int = DEFAULT_CREATED_AT,
    content: str = "Stand with feet shoulder-width apart, squat to depth, drive up.",
    extra_tags: Iterable[Sequence[str]] = (),
    **overrides: TagOverride,
) -> str:
    """A kind 33401 exercise template with every tag the spec requires.

    Defaults: ``format`` weight/reps/rpe/set_type with matching ``format_units``,
    ``equipment`` barbell, ``difficulty`` intermediate, ``t`` legs. Keyword ``overrides``
    name a tag: a string or sequence of strings replaces every tag of that name with one
    tag holding those values, in the place of the first (or adds it at the end);
    ``None`` removes them, e.g. ``equipment="dumbbell"``, ``difficulty=None``,
    ``format=["reps"]``. ``extra_tags`` are appended verbatim (for repeated or
    non-spec tags).
    """
    tags = [
        ["d", d],
        ["title", title],
        ["format", "weight", "reps", "rpe", "set_type"],
        ["format_units", "kg", "count", "0-10", "warmup|normal|drop|failure"],
        ["equipment", "barbell"],
        ["difficulty", "intermediate"],
        ["t", "legs"],
    ]
    tags = _apply_overrides(tags, overrides) + [list(tag) for tag in extra_tags]
    return make_event(keys, KIND_EXERCISE, content, tags, created_at)


def make_template(
    keys: nostr_sdk.Keys,
    d: str,
    exercise_coords: Sequence[Sequence[str]],
    *,
    title: str = "Leg Day",
    created_at: int = DEFAULT_CREATED_AT,
    content: str = "",
    extra_tags: Iterable[Sequence[str]] = (),
    **overrides: TagOverride,
) -> str:
    """A kind 33402 workout template.

    Args:
        keys: the author.
        d: the template's identifier.
        exercise_coords: one ``exercise`` tag each, in order and never deduplicated:
            ``(coordinate, relay_hint, *parameters)``; a bare coordinate string is not
            accepted (it would be split into characters). Parameters are copied as given.
        title: the ``title`` tag.
        created_at: unix seconds.
        content: notes.
        extra_tags: appended verbatim.
        **overrides: as for :func:`make_exercise`; defaults are ``type`` strength and
            ``t`` legs.
    """
    tags = [["d", d], ["title", title], ["type", "strength"]]
    tags += [["exercise", *reference] for reference in exercise_coords]
    tags.append(["t", "legs"])
    tags = _apply_overrides(tags, overrides) + [list(tag) for tag in extra_tags]
    return make_event(keys, KIND_TEMPLATE, content, tags, created_at)


def make_record(
    keys: nostr_sdk.Keys,
    d: str,
    sets: Sequence[Sequence[str]],
    *,
    template: Sequence[str] | None = None,
    title: str = "Leg Day",
    created_at: int = DEFAULT_CREATED_AT,
    start: int | None = None,
    end: int | None = None,
    completed: bool = True,
    content: str = "",
    kind: int = KIND_RECORD,
    extra_tags: Iterable[Sequence[str]] = (),
    **overrides: TagOverride,
) -> str:
    """A kind 1301 workout record (``kind=33403`` for the legacy form).

    Args:
        keys: the author.
        d: the record's identifier.
        sets: one ``exercise`` tag per performed set: ``(coordinate, relay_hint, weight,
            reps, rpe, set_type, ...)``, copied as given.
        template: ``(coordinate, relay_hint)`` of the workout template, or None for no
            ``template`` tag.
        title: the ``title`` tag.
        created_at: unix seconds.
        start: defaults to one hour before ``created_at``.
        end: defaults to one minute before ``created_at``.
        completed: the ``completed`` tag.
        content: notes.
        kind: 1301, or 33403 for a legacy record.
        extra_tags: appended verbatim (``pr`` tags, for instance).
        **overrides: as for :func:`make_exercise`; default ``type`` strength, ``t`` legs.
    """
    start = created_at - 3600 if start is None else start
    end = created_at - 60 if end is None else end
    tags = [
        ["d", d],
        ["title", title],
        ["type", "strength"],
        ["start", str(start)],
        ["end", str(end)],
        ["completed", "true" if completed else "false"],
    ]
    if template is not None:
        tags.append(["template", *template])
    tags += [["exercise", *performed] for performed in sets]
    tags.append(["t", "legs"])
    tags = _apply_overrides(tags, overrides) + [list(tag) for tag in extra_tags]
    return make_event(keys, kind, content, tags, created_at)


def make_deletion(
    keys: nostr_sdk.Keys,
    *,
    e_ids: Iterable[str] = (),
    coords: Iterable[str] = (),
    created_at: int = DEFAULT_CREATED_AT,
    content: str = "",
) -> str:
    """A NIP-09 kind 5 deletion of event ids (``e`` tags) and coordinates (``a`` tags).

    A ``k`` tag is added for each distinct kind named by a coordinate. Only the author's
    own events are deleted by it; the builder does not check that.
    """
    coord_list = list(coords)
    tags = [["e", event_id] for event_id in e_ids] + [["a", coord] for coord in coord_list]
    kinds = sorted({int(coord.split(":", 1)[0]) for coord in coord_list})
    tags += [["k", str(kind)] for kind in kinds]
    return make_event(keys, KIND_DELETION, content, tags, created_at)


def exercises_and_records(keys: nostr_sdk.Keys, n: int, start: int) -> list[str]:
    """``n`` events of ``keys``, exercises and records in turn, one second apart from
    ``start``, oldest first."""
    return [
        make_record(keys, f"r{i}", [], created_at=start + i)
        if i % 2
        else make_exercise(keys, f"e{i}", created_at=start + i)
        for i in range(n)
    ]
