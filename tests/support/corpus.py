"""Deterministic NIP-101e corpora: many authors' exercises, templates and records.

:func:`generate_corpus` is what sync, paging and store tests feed to relays. The single
event builders live in :mod:`tests.support.events` and are re-exported here, so
``from tests.support.corpus import make_record`` works too.
"""

from __future__ import annotations

import os
import random
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nostr_sdk

from powrd.protocol.event import dumps, is_addressable, is_replaceable, loads
from tests.support.events import (
    DEFAULT_CREATED_AT,
    KIND_DELETION,
    KIND_EXERCISE,
    KIND_TEMPLATE,
    coordinate,
    keys_for,
    make_deletion,
    make_event,
    make_exercise,
    make_record,
    make_template,
    pubkey_of,
)

__all__ = [
    "DEFAULT_CREATED_AT",
    "RELAY_PAGE_CAP",
    "current_ids",
    "generate_corpus",
    "keys_for",
    "make_deletion",
    "make_event",
    "make_exercise",
    "make_record",
    "make_template",
    "pubkey_of",
]

# Bump whenever the generator's output changes, so stale cache files are not reused.
CORPUS_FORMAT = 1
CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache"
# nostr-sdk's local relay (like many real relays) returns at most this many events per REQ.
RELAY_PAGE_CAP = 500
MIN_GROUP = 20

CATALOGUE = (
    ("Back Squat", "barbell", "legs"),
    ("Bench Press", "barbell", "push"),
    ("Deadlift", "barbell", "pull"),
    ("Overhead Press", "barbell", "push"),
    ("Dumbbell Row", "dumbbell", "pull"),
    ("Walking Lunge", "dumbbell", "legs"),
    ("Pull-up", "bodyweight", "pull"),
    ("Push-up", "bodyweight", "push"),
    ("Leg Press", "machine", "legs"),
    ("Rowing Machine", "cardio", "cardio"),
)
WORKOUT_TYPES = ("strength", "strength", "strength", "circuit", "emom", "amrap")


def generate_corpus(
    n_events: int, n_authors: int, seed: int, start: int = 1_700_000_000
) -> list[str]:
    """A realistic, deterministic mix of signed NIP-101e events.

    Contract (what tests may rely on):

    * Same arguments, same list of JSON strings, byte for byte; every event is valid.
    * Exactly ``n_events`` events by ``n_authors`` authors whose keys are
      ``keys_for(seed, i)`` for ``i`` in ``range(n_authors)``.
    * Roughly 15% exercises (33401), 15% workout templates (33402) and 70% records
      (1301). A template references 2-6 exercises its author published earlier; a
      record has 3-12 sets of its template's exercises and a ``template`` tag naming a
      template its author published earlier. Relay hints are empty strings.
    * Some exercises and templates are republished as newer versions (same ``d``,
      strictly greater ``created_at``), so not every event is current; see
      :func:`current_ids`.
    * The list is ordered by ``created_at`` ascending. Gaps are 1-900 s. Groups of at
      least 20 consecutive events share one second: one group straddles every
      500-event page boundary counted from the newest event, plus random groups
      elsewhere, and newer versions are likelier inside groups.
    * No deletions; build them with :func:`make_deletion` when a test needs them.

    Results are cached as JSON under ``tests/.cache/`` keyed by the arguments; 20,000
    events take a few seconds to generate and a fraction of a second to reload.
    """
    if n_events < 0 or n_authors < 1:
        raise ValueError("n_events must be >= 0 and n_authors >= 1")
    path = CACHE_DIR / f"corpus-v{CORPUS_FORMAT}-{n_events}-{n_authors}-{seed}-{start}.json"
    cached = _read_cache(path, n_events)
    if cached is not None:
        return cached
    events = _CorpusBuilder(n_authors, seed).build(timeline(n_events, seed, start))
    _write_cache(path, events)
    return events


def timeline(n_events: int, seed: int, start: int) -> list[int]:
    """The non-decreasing ``created_at`` values :func:`generate_corpus` uses."""
    rng = random.Random(f"powrd-corpus-timeline:{seed}")
    tied = [False] * n_events  # tied[i]: event i shares the second of event i - 1

    def group(first: int, size: int) -> None:
        for i in range(max(first + 1, 1), min(first + size, n_events)):
            tied[i] = True

    boundary = n_events - RELAY_PAGE_CAP
    while boundary - 10 >= 0:
        group(boundary - 10, 25)
        boundary -= RELAY_PAGE_CAP
    if n_events >= 2 * MIN_GROUP:
        for _ in range(max(1, n_events // 250)):
            size = rng.randint(MIN_GROUP, 2 * MIN_GROUP)
            group(rng.randrange(0, n_events - size + 1), size)
    times: list[int] = []
    now = start
    for i in range(n_events):
        if i > 0 and not tied[i]:
            now += rng.randint(1, 900)
        times.append(now)
    return times


@dataclass
class _Exercise:
    title: str
    equipment: str
    hashtag: str
    created_at: int
    revision: int = 1


@dataclass
class _Template:
    title: str
    workout_type: str
    coords: list[str]
    created_at: int
    revision: int = 1


@dataclass
class _Author:
    keys: nostr_sdk.Keys
    pubkey: str
    exercises: dict[str, _Exercise] = field(default_factory=dict)
    templates: dict[str, _Template] = field(default_factory=dict)


class _CorpusBuilder:
    """Walks the timeline and decides, event by event, who publishes what."""

    def __init__(self, n_authors: int, seed: int) -> None:
        self.rng = random.Random(f"powrd-corpus:{seed}")
        self.authors = []
        for i in range(n_authors):
            keys = keys_for(seed, i)
            self.authors.append(_Author(keys, pubkey_of(keys)))
        self.exercise_equipment: dict[str, str] = {}

    def build(self, times: list[int]) -> list[str]:
        events = []
        for i, created_at in enumerate(times):
            tied = i > 0 and times[i - 1] == created_at
            events.append(self._next_event(created_at, revise_chance=0.3 if tied else 0.1))
        return events

    def _new_d(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _next_event(self, created_at: int, revise_chance: float) -> str:
        rng = self.rng
        author = self.authors[rng.randrange(len(self.authors))]
        roll = rng.random()
        kind = KIND_EXERCISE if roll < 0.15 else KIND_TEMPLATE if roll < 0.30 else 0
        if kind == 0 and not author.templates:
            kind = KIND_TEMPLATE
        if kind == KIND_TEMPLATE and not author.exercises:
            kind = KIND_EXERCISE
        revise = rng.random() < revise_chance
        if kind == KIND_EXERCISE:
            return self._exercise(author, created_at, revise)
        if kind == KIND_TEMPLATE:
            return self._template(author, created_at, revise)
        return self._record(author, created_at)

    def _exercise(self, author: _Author, created_at: int, revise: bool) -> str:
        older = [d for d, ex in author.exercises.items() if ex.created_at < created_at]
        if revise and older:
            d = self.rng.choice(older)
            exercise = author.exercises[d]
            exercise.created_at, exercise.revision = created_at, exercise.revision + 1
        else:
            d = self._new_d()
            title, equipment, hashtag = self.rng.choice(CATALOGUE)
            exercise = _Exercise(title, equipment, hashtag, created_at)
            author.exercises[d] = exercise
            self.exercise_equipment[coordinate(KIND_EXERCISE, author.pubkey, d)] = equipment
        return make_exercise(
            author.keys,
            d,
            title=exercise.title,
            created_at=created_at,
            content=f"{exercise.title}: brace, control the descent (revision {exercise.revision}).",
            equipment=exercise.equipment,
            t=exercise.hashtag,
            difficulty=self.rng.choice(("beginner", "intermediate", "advanced")),
        )

    def _template(self, author: _Author, created_at: int, revise: bool) -> str:
        rng = self.rng
        older = [d for d, tpl in author.templates.items() if tpl.created_at < created_at]
        choices = list(author.exercises)
        coords = [
            coordinate(KIND_EXERCISE, author.pubkey, d)
            for d in rng.sample(choices, min(len(choices), rng.randint(2, 6)))
        ]
        if revise and older:
            d = rng.choice(older)
            template = author.templates[d]
            template.coords, template.created_at = coords, created_at
            template.revision += 1
        else:
            d = self._new_d()
            title = f"{rng.choice(('Push', 'Pull', 'Legs', 'Full Body', 'Upper'))} Day"
            template = _Template(title, rng.choice(WORKOUT_TYPES), coords, created_at)
            author.templates[d] = template
        references = [(coord, "", "", str(rng.randint(5, 12)), "", "normal") for coord in coords]
        return make_template(
            author.keys,
            d,
            references,
            title=template.title,
            created_at=created_at,
            content=f"Revision {template.revision}.",
            type=template.workout_type,
        )

    def _record(self, author: _Author, created_at: int) -> str:
        rng = self.rng
        template_d = rng.choice(list(author.templates))
        template = author.templates[template_d]
        n_sets = rng.randint(3, 12)
        sets = []
        for index in range(n_sets):
            coord = template.coords[index * len(template.coords) // n_sets]
            bodyweight = self.exercise_equipment[coord] in ("bodyweight", "cardio")
            weight = "" if bodyweight else f"{rng.randint(8, 100) * 2.5:g}"
            set_type = rng.choice(("normal", "normal", "normal", "warmup", "drop", "failure"))
            reps, rpe = str(rng.randint(1, 15)), str(rng.randint(5, 10))
            sets.append((coord, "", weight, reps, rpe, set_type))
        end = created_at - rng.randint(0, 600)
        extra = []
        if rng.random() < 0.1 and sets[-1][2]:
            extra.append(["pr", f"{sets[-1][0]},1RM,{sets[-1][2]}"])
        return make_record(
            author.keys,
            self._new_d(),
            sets,
            template=(coordinate(KIND_TEMPLATE, author.pubkey, template_d), ""),
            title=template.title,
            created_at=created_at,
            start=end - rng.randint(1800, 5400),
            end=end,
            completed=rng.random() >= 0.05,
            type=template.workout_type,
            extra_tags=extra,
        )


def current_ids(events_json: Iterable[str]) -> set[str]:
    """Ids a NIP-01/NIP-09 relay would still serve after storing all these events.

    Replaceable and addressable events keep only the newest version per (kind, pubkey)
    or (kind, pubkey, d): highest ``created_at``, lowest id on a tie. A kind 5 deletion
    removes its author's events named by ``e`` tags and its author's versions of ``a``
    coordinates up to the deletion's ``created_at``. Deletions themselves are kept.
    Ephemeral kinds are not treated specially.
    """
    events = [loads(text) for text in events_json]
    newest: dict[tuple[Any, ...], dict[str, Any]] = {}
    kept: list[dict[str, Any]] = []
    for event in events:
        key = _replacement_key(event)
        if key is None:
            kept.append(event)
        elif key not in newest or _newer(event, newest[key]):
            newest[key] = event
    kept.extend(newest.values())
    deleted_ids: set[tuple[str, str]] = set()
    deleted_coords: dict[str, int] = {}
    for event in events:
        if event["kind"] != KIND_DELETION:
            continue
        for tag in event["tags"]:
            if len(tag) > 1 and tag[0] == "e":
                deleted_ids.add((event["pubkey"], tag[1]))
            elif len(tag) > 1 and tag[0] == "a" and _author_of(tag[1]) == event["pubkey"]:
                deleted_coords[tag[1]] = max(deleted_coords.get(tag[1], 0), event["created_at"])
    result = set()
    for event in kept:
        if (event["pubkey"], event["id"]) in deleted_ids:
            continue
        coord = _coordinate_of(event)
        if coord in deleted_coords and event["created_at"] <= deleted_coords[coord]:
            continue
        result.add(event["id"])
    return result


def _replacement_key(event: dict[str, Any]) -> tuple[Any, ...] | None:
    if is_addressable(event["kind"]):
        return (event["kind"], event["pubkey"], _d_of(event))
    if is_replaceable(event["kind"]):
        return (event["kind"], event["pubkey"])
    return None


def _d_of(event: dict[str, Any]) -> str:
    return next((tag[1] for tag in event["tags"] if len(tag) > 1 and tag[0] == "d"), "")


def _author_of(coord: str) -> str | None:
    parts = coord.split(":", 2)
    return parts[1] if len(parts) == 3 else None


def _coordinate_of(event: dict[str, Any]) -> str | None:
    if not is_addressable(event["kind"]):
        return None
    return f"{event['kind']}:{event['pubkey']}:{_d_of(event)}"


def _newer(candidate: dict[str, Any], incumbent: dict[str, Any]) -> bool:
    if candidate["created_at"] != incumbent["created_at"]:
        return bool(candidate["created_at"] > incumbent["created_at"])
    return bool(candidate["id"] < incumbent["id"])


def _read_cache(path: Path, n_events: int) -> list[str] | None:
    try:
        value = loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(value, list) or len(value) != n_events:
        return None
    if not all(isinstance(item, str) for item in value):
        return None
    return value


def _write_cache(path: Path, events: list[str]) -> None:
    """Write atomically: parallel test runs may build the same corpus at once."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=path.name, suffix=".tmp", delete=False
        ) as handle:
            handle.write(dumps(events))
        os.replace(handle.name, path)
    except OSError:
        pass  # A read-only checkout still works, just without the cache.
