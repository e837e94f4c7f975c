"""How validation time grows with the size of a scenario: 10k, 100k and 1M entities (queues + bindings).

Each size is measured twice: a valid file (every binding names a declared queue) and one where every binding
names a misspelt queue (one problem each, each with a "did you mean" suggestion). The time covers what
`mqspec validate` does after reading the file: parsing, the schema, RabbitMQ's rules, the routing oracle,
lint and rendering the problems. Files past mqspec's input limits (8 MiB, 1,000,000 values) are refused by
`validate`; here the limits are raised so that the growth itself can be seen.

    .venv/bin/python benchmarks/validate_scale.py                 # 10k, 100k, 1M
    .venv/bin/python benchmarks/validate_scale.py --sizes 2000,20000
"""

from __future__ import annotations

import argparse
import time

from mqspec.core import document, lint
from mqspec.core.loader import load_bytes
from mqspec.report import problems as render


def scenario(entities: int, misspelt: bool) -> bytes:
    queues = entities // 2
    lines = ["version: 1", "name: scale", "topology:", "  exchanges:", "    - {name: events, type: direct}", "  queues:"]
    lines += [f"    - {{name: orders.{i}, max_length: 1000}}" for i in range(queues)]
    lines += ["  bindings:"]
    target = "ordres" if misspelt else "orders"
    lines += [f"    - {{exchange: events, queue: {target}.{i}, keys: [k{i}]}}" for i in range(entities - queues)]
    return ("\n".join(lines) + "\n").encode()


def validate_seconds(raw: bytes) -> tuple[float, int]:
    start = time.perf_counter()
    loaded = load_bytes(raw, "scale.yaml", env={})
    found = list(loaded.problems)
    if loaded.scenario is not None:
        found += lint.check(loaded.scenario)
    render.text(found)
    return time.perf_counter() - start, len(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="entity counts, comma-separated")
    args = parser.parse_args()
    document.MAX_NODES = 10**9  # see the module docstring: validate refuses these files; the growth is what is measured
    print(f"{'entities':>10} {'file MB':>8} {'valid s':>9} {'misspelt s':>11} {'problems':>9}")
    for entities in (int(size) for size in args.sizes.split(",")):
        raw_valid, raw_misspelt = scenario(entities, False), scenario(entities, True)
        valid, _ = validate_seconds(raw_valid)
        misspelt, count = validate_seconds(raw_misspelt)
        print(f"{entities:>10,} {len(raw_misspelt) / 1e6:>8.1f} {valid:>9.2f} {misspelt:>11.2f} {count:>9,}", flush=True)


if __name__ == "__main__":
    main()
