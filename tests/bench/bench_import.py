"""Benchmark: ``powrd import`` throughput on a generated NIP-101e corpus.

Writes a 20,000-event corpus (by default) as newline-delimited JSON, then times
``powrd import`` as a subprocess into an empty store: every event parsed, validated (id,
signature, size, time), stored with its tags and processed into exercises, templates and
records. Prints events/s for the whole command (start-up included) and the store size.

Run from the repository root::

    python tests/bench/bench_import.py [--events 20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, the repository root (for tests.support) is not on the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.corpus import generate_corpus


def import_once(corpus: Path, directory: Path) -> tuple[float, int]:
    """Seconds one ``powrd import`` takes into a new store, and the store's size in bytes."""
    database = directory / "import.db"
    config = directory / "import.toml"
    config.write_text(f'[store]\npath = "{database}"\n[logging]\nlevel = "warning"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWRD_")}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "powrd", "--config", str(config), "import", str(corpus)],
        capture_output=True, text=True, env=env, check=False,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0 or "rejected: 0" not in result.stdout:
        raise SystemExit(f"import failed: {result.stdout}{result.stderr}")
    size = sum(p.stat().st_size for p in directory.glob("import.db*"))
    for path in directory.glob("import.db*"):
        path.unlink()
    return seconds, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--authors", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    events = generate_corpus(args.events, args.authors, seed=11)
    with tempfile.TemporaryDirectory(prefix="powrd-bench-") as name:
        directory = Path(name)
        corpus = directory / "corpus.ndjson"
        corpus.write_text("\n".join(events) + "\n")
        runs = [import_once(corpus, directory) for _ in range(args.runs)]
    seconds = statistics.median(s for s, _ in runs)
    size = runs[0][1]
    print(f"cores: {os.cpu_count()}")
    print(f"powrd import: {len(events):,} events, median of {args.runs} runs {seconds:.2f} s"
          f" = {len(events) / seconds:,.0f} events/s (runs: {', '.join(f'{s:.2f}' for s, _ in runs)})")
    print(f"store: {size / 1e6:.1f} MB ({size / len(events):,.0f} bytes per event)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
