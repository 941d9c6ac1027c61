"""A streaming, deterministic filler corpus of NIP-101e events for scale benchmarks.

:func:`tests.support.corpus.generate_corpus` keeps its whole corpus in memory and caches
it as one JSON document, which is fine for tens of thousands of events and not for a
million. :class:`FillerGenerator` yields events one at a time with the same builders and
a realistic mix, and :func:`ensure_filler` writes them to NDJSON in chunks (reusing a
file already written with the same count).
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from powrd.protocol.event import dumps, loads
from tests.support.events import (
    KIND_EXERCISE,
    KIND_TEMPLATE,
    coordinate,
    keys_for,
    make_exercise,
    make_record,
    make_template,
    pubkey_of,
)

# Bump whenever the generator's output changes, so old files are not reused.
FILLER_FORMAT = 1
FILLER_AUTHORS = 200
FILLER_SEED = "scale-filler"
FILLER_START = 1_600_000_000
WRITE_CHUNK = 5_000
CATALOGUE = (
    ("Back Squat", "barbell", "legs"),
    ("Bench Press", "barbell", "push"),
    ("Deadlift", "barbell", "pull"),
    ("Dumbbell Row", "dumbbell", "pull"),
    ("Pull-up", "bodyweight", "pull"),
    ("Push-up", "bodyweight", "push"),
    ("Leg Press", "machine", "legs"),
    ("Rowing Machine", "cardio", "cardio"),
)

@dataclass(frozen=True)
class Filler:
    """A filler corpus on disk.

    Attributes:
        path: NDJSON, one event per line, ``created_at`` ascending.
        events: lines in the file (every version of every event).
        current: events a relay still serves once it has them all (newest versions).
        authors: hex public keys of the authors.
    """

    path: Path
    events: int
    current: int
    authors: tuple[str, ...]


@dataclass
class _Author:
    """What one filler author has published so far (lists, for O(1) random choice)."""

    keys: Any
    pubkey: str
    exercises: list[tuple[str, str, str, str]] = field(default_factory=list)  # d, title, eq, t
    exercise_times: dict[str, int] = field(default_factory=dict)
    templates: list[tuple[str, str, list[str]]] = field(default_factory=list)  # d, title, coords
    template_times: dict[str, int] = field(default_factory=dict)


class FillerGenerator:
    """A deterministic stream of events: ~6% exercises, ~8% templates, ~86% records.

    Templates reference 2-6 of their author's earlier exercises; records have 3-12 sets
    of one of their author's templates. One exercise or template in ten republishes an
    older one (a newer version of the same ``d``), which supersedes it.
    """

    def __init__(self, seed: str = FILLER_SEED, n_authors: int = FILLER_AUTHORS) -> None:
        self.rng = random.Random(f"powrd-filler:{seed}")
        self.authors = [_Author(keys, pubkey_of(keys))
                        for keys in (keys_for(seed, i) for i in range(n_authors))]
        self.superseded = 0
        self._now = FILLER_START

    def events(self, count: int) -> Iterator[str]:
        """The next ``count`` events, as compact JSON."""
        rng = self.rng
        for _ in range(count):
            self._now += rng.randint(0, 30)  # a gap of 0 puts two events in one second
            author = self.authors[rng.randrange(len(self.authors))]
            roll = rng.random()
            if roll < 0.06 or len(author.exercises) < 2:
                yield self._exercise(author)
            elif roll < 0.14 or not author.templates:
                yield self._template(author)
            else:
                yield self._record(author)

    def _new_d(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _revisable(self, times: dict[str, int], ds: list[str]) -> str | None:
        """An older ``d`` to republish, in one case of ten (strictly newer time only)."""
        if not ds or self.rng.random() >= 0.1:
            return None
        d = ds[self.rng.randrange(len(ds))]
        return d if times[d] < self._now else None

    def _exercise(self, author: _Author) -> str:
        rng = self.rng
        index = self._revisable(author.exercise_times, [e[0] for e in author.exercises[-50:]])
        if index is None:
            title, equipment, hashtag = rng.choice(CATALOGUE)
            d = self._new_d()
            author.exercises.append((d, title, equipment, hashtag))
        else:
            d, title, equipment, hashtag = next(e for e in author.exercises if e[0] == index)
            self.superseded += 1
        author.exercise_times[d] = self._now
        return make_exercise(
            author.keys, d, title=title, created_at=self._now, equipment=equipment,
            t=hashtag, content=f"{title}: brace and control the descent.",
            difficulty=rng.choice(("beginner", "intermediate", "advanced")),
        )

    def _template(self, author: _Author) -> str:
        rng = self.rng
        picked = rng.sample(author.exercises, min(len(author.exercises), rng.randint(2, 6)))
        coords = [coordinate(KIND_EXERCISE, author.pubkey, e[0]) for e in picked]
        revised = self._revisable(author.template_times, [t[0] for t in author.templates[-50:]])
        if revised is None:
            d, title = self._new_d(), f"{rng.choice(('Push', 'Pull', 'Legs', 'Upper'))} Day"
        else:
            d, title = revised, next(t[1] for t in author.templates if t[0] == revised)
            self.superseded += 1
            author.templates = [t for t in author.templates if t[0] != d]
        author.templates.append((d, title, coords))
        author.template_times[d] = self._now
        references = [(c, "", "", str(rng.randint(5, 12)), "", "normal") for c in coords]
        return make_template(author.keys, d, references, title=title, created_at=self._now)

    def _record(self, author: _Author) -> str:
        rng = self.rng
        d_template, title, coords = author.templates[rng.randrange(len(author.templates))]
        n_sets = rng.randint(3, 12)
        sets = [
            (coords[i * len(coords) // n_sets], "", f"{rng.randint(8, 100) * 2.5:g}",
             str(rng.randint(1, 15)), str(rng.randint(5, 10)),
             rng.choice(("normal", "normal", "warmup", "drop", "failure")))
            for i in range(n_sets)
        ]
        end = self._now - rng.randint(0, 600)
        return make_record(
            author.keys, self._new_d(), sets, title=title, created_at=self._now,
            template=(coordinate(KIND_TEMPLATE, author.pubkey, d_template), ""),
            start=end - rng.randint(1800, 5400), end=end,
        )


def ensure_filler(workdir: Path, count: int) -> tuple[Filler, float]:
    """The filler corpus of ``count`` events (written if missing); seconds spent writing."""
    path = workdir / f"filler-v{FILLER_FORMAT}-{count}.ndjson"
    meta_path = path.with_suffix(".meta.json")
    generator = FillerGenerator()
    authors = tuple(author.pubkey for author in generator.authors)
    with contextlib.suppress(OSError, ValueError, KeyError):
        meta = loads(meta_path.read_bytes())
        if meta["events"] == count and _count_lines(path) == count:
            return Filler(path, count, int(meta["current"]), authors), 0.0
    started = time.perf_counter()
    partial = path.with_suffix(".partial")
    with partial.open("w") as out:
        for first in range(0, count, WRITE_CHUNK):
            chunk = list(generator.events(min(WRITE_CHUNK, count - first)))
            out.write("\n".join(chunk) + "\n")
            if first and first % 100_000 == 0:
                print(f"  filler: {first:,} events written", flush=True)
    partial.replace(path)
    current = count - generator.superseded
    meta_path.write_text(dumps({"events": count, "current": current}))
    return Filler(path, count, current, authors), time.perf_counter() - started


def _count_lines(path: Path) -> int:
    lines = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 24):
            lines += block.count(b"\n")
    return lines


def read_chunks(path: Path, size: int) -> Iterator[list[str]]:
    """The NDJSON file's lines in lists of ``size``."""
    chunk: list[str] = []
    with path.open() as handle:
        for line in handle:
            chunk.append(line.rstrip("\n"))
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk
