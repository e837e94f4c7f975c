"""Whole-cluster apply benchmark: 3 vhosts x N durable queues, each bound, and a policy in each vhost.

Interleaved over rounds (the order rotates), each fresh step in fresh vhosts:

  a) POST /api/definitions                 (the broker's own import of the same content, whole cluster)
  b) mqspec apply FILE --topology-only     (fresh: the file declares the 3 vhosts; process start included)
  c) mqspec plan FILE                      (no-op: everything exists; process start included)
  d) mqspec apply FILE --topology-only     (no-op, the same file again)

With MQSPEC_PREVIOUS_CMD=/path/to/other/checkout/.venv/bin/mqspec (e.g. the previous main), the same three
mqspec steps of that build run interleaved in the same rounds, on vhosts of their own: (b0), (c0), (d0).
Every mqspec step also reports its client CPU (user + system seconds of the process and its children).

Usage: .venv/bin/python benchmarks/cluster_apply.py [--queues 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from mgmt import DEFAULT_AMQP, DEFAULT_MGMT, Management, connect, describe, q
from run_workload import Unavailable, best_effort, mqspec_command, previous_command, run_command, wait_for_quiet

VHOSTS = 3
EXCHANGE = "topo.x"
TTL = 60000
STEPS = {
    "a": "broker's own import (POST /api/definitions)",
    "b": "mqspec apply --topology-only, fresh vhosts",
    "b0": "previous mqspec apply --topology-only, fresh vhosts",
    "c": "mqspec plan, no-op",
    "c0": "previous mqspec plan, no-op",
    "d": "mqspec apply --topology-only, no-op",
    "d0": "previous mqspec apply --topology-only, no-op",
}


def vhost_names(tag: str) -> list[str]:
    return [f"bench-cluster-{tag}-{i}" for i in range(VHOSTS)]


def definitions(vhosts: list[str], n: int) -> dict[str, Any]:
    out: dict[str, list[Any]] = {"vhosts": [{"name": v} for v in vhosts], "permissions": [], "policies": [],
                                 "exchanges": [], "queues": [], "bindings": []}
    for v in vhosts:
        out["permissions"].append({"user": "guest", "vhost": v, "configure": ".*", "write": ".*", "read": ".*"})
        out["policies"].append({"vhost": v, "name": "limit", "pattern": "^topo\\.q\\.", "apply-to": "queues",
                                "definition": {"max-length": 100000}, "priority": 0})
        out["exchanges"].append({"name": EXCHANGE, "vhost": v, "type": "topic", "durable": True, "auto_delete": False,
                                 "internal": False, "arguments": {}})
        out["queues"] += [{"name": f"topo.q.{i}", "vhost": v, "durable": True, "auto_delete": False,
                           "arguments": {"x-message-ttl": TTL}} for i in range(n)]
        out["bindings"] += [{"source": EXCHANGE, "vhost": v, "destination": f"topo.q.{i}", "destination_type": "queue",
                             "routing_key": f"q.{i}.#", "arguments": {}} for i in range(n)]
    return out


def scenario_yaml(vhosts: list[str], n: int) -> str:
    lines = ["version: 1", "name: cluster", "topology:", "  vhosts:"]
    lines += [f"    - {{name: {v}}}" for v in vhosts]
    lines.append("  permissions:")
    lines += [f"    - {{user: guest, vhost: {v}, configure: '.*', write: '.*', read: '.*'}}" for v in vhosts]
    lines.append("  policies:")
    lines += [f"    - {{name: limit, vhost: {v}, pattern: '^topo\\.q\\.', apply_to: queues, "
              "definition: {max-length: 100000}}" for v in vhosts]
    lines.append("  exchanges:")
    lines += [f"    - {{name: {EXCHANGE}, vhost: {v}, type: topic}}" for v in vhosts]
    lines.append("  queues:")
    lines += [f"    - {{name: topo.q.{i}, vhost: {v}, message_ttl: {TTL}}}" for v in vhosts for i in range(n)]
    lines.append("  bindings:")
    lines += [f"    - {{exchange: {EXCHANGE}, queue: topo.q.{i}, vhost: {v}, keys: ['q.{i}.#']}}"
              for v in vhosts for i in range(n)]
    return "\n".join(lines) + "\n"


def mqspec(*args: str, cmd: str | None = None) -> None:
    cmd = cmd or mqspec_command()
    if cmd is None:
        raise Unavailable("mqspec command not found")
    run_command([cmd, "--url", f"{DEFAULT_AMQP}/%2F", *args], timeout=900)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def check(mgmt: Management, vhosts: list[str], n: int) -> None:
    for v in vhosts:
        defs = mgmt.get(f"/api/definitions/{q(v)}")
        bound = [b for b in defs["bindings"] if b["source"] == EXCHANGE]
        if len(defs["queues"]) != n or len(bound) != n or len(defs["policies"]) != 1:
            raise Unavailable(f"incomplete topology in {v}: {len(defs['queues'])} queues, {len(bound)} bindings")


def timed(fn: Callable[[], None], step: str, cpu: dict[str, list[float]]) -> float | str:
    start, used = time.perf_counter(), children_cpu()
    try:
        fn()
    except (Unavailable, httpx.HTTPError) as exc:
        return str(exc) or type(exc).__name__
    if step != "a":
        cpu.setdefault(step, []).append(children_cpu() - used)
    return time.perf_counter() - start


def one_round(mgmt: Management, n: int, work: Path, rotation: int, max_wait: float,
              cpu: dict[str, list[float]]) -> dict[str, float | str]:
    tag = uuid.uuid4().hex[:6]
    theirs, mine, before = vhost_names(f"{tag}-a"), vhost_names(f"{tag}-b"), vhost_names(f"{tag}-p")
    path, old_path = work / f"cluster-{tag}.yaml", work / f"cluster-{tag}-previous.yaml"
    path.write_text(scenario_yaml(mine, n))
    old_path.write_text(scenario_yaml(before, n))
    previous = previous_command()
    defs = definitions(theirs, n)
    fresh: list[tuple[str, Callable[[], None], list[str]]] = [
        ("a", lambda: mgmt.post("/api/definitions", defs), theirs),
        ("b", lambda: mqspec("apply", str(path), "--topology-only"), mine),
    ]
    if previous:
        fresh.append(("b0", lambda: mqspec("apply", str(old_path), "--topology-only", cmd=previous), before))
    order = fresh[rotation % len(fresh):] + fresh[:rotation % len(fresh)]
    noops = [("c", ("plan", str(path)), None, "b"), ("d", ("apply", str(path), "--topology-only"), None, "b")]
    if previous:
        noops += [("c0", ("plan", str(old_path)), previous, "b0"),
                  ("d0", ("apply", str(old_path), "--topology-only"), previous, "b0")]
        noops = [noops[i] for i in (0, 2, 1, 3)] if rotation % 2 == 0 else [noops[i] for i in (2, 0, 3, 1)]
    out: dict[str, float | str] = {}
    try:
        for step, action, vhosts in order:
            wait_for_quiet(mgmt, max_wait)
            out[step] = timed(action, step, cpu)
            if isinstance(out[step], float):
                try:
                    check(mgmt, vhosts, n)
                except Unavailable as exc:
                    out[step] = f"wrong result: {exc}"
        for step, args, command, needs in noops:
            wait_for_quiet(mgmt, max_wait)
            ready = isinstance(out.get(needs), float)
            out[step] = timed(lambda a=args, c=command: mqspec(*a, cmd=c), step, cpu) if ready else f"needs ({needs})"
    finally:
        for v in (*theirs, *mine, *before):
            best_effort(mgmt.delete_vhost, v)
    return out


def table(rounds: list[dict[str, float | str]], cpu: dict[str, list[float]]) -> str:
    lines = ["| step | median s | min–max s | ÷ broker's import | median client CPU s |", "|---|---:|---:|---:|---:|"]
    times = {s: [v for r in rounds if isinstance(v := r.get(s), float)] for s in STEPS}
    base = statistics.median(times["a"]) if times["a"] else None
    for step, label in STEPS.items():
        found = times[step]
        if not found:
            if any(step in r for r in rounds):
                lines.append(f"| ({step}) {label} | n/a ({min(str(r.get(step)) for r in rounds if step in r)}) | | | |")
            continue
        median = statistics.median(found)
        ratio = f"{median / base:.2f}" if base else "n/a"
        used = f"{statistics.median(cpu[step]):.2f}" if cpu.get(step) else ""
        lines.append(f"| ({step}) {label} | {median:.2f} | {min(found):.2f}–{max(found):.2f} | {ratio} | {used} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--queues", "-n", type=int, default=2000, help="queues per vhost")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-wait", type=float, default=30.0)
    parser.add_argument("--mgmt", default=DEFAULT_MGMT)
    args = parser.parse_args()
    mgmt, info = connect(args.mgmt, "guest", "guest")
    rounds = []
    cpu: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="mqspec-cluster-") as work:
        for rnd in range(args.rounds):
            result = one_round(mgmt, args.queues, Path(work), rnd, args.max_wait, cpu)
            rounds.append(result)
            print(f"round {rnd + 1}: " + ", ".join(f"{k}={v:.2f}s" if isinstance(v, float) else f"{k}={v}"
                                                   for k, v in sorted(result.items())), file=sys.stderr, flush=True)
    print(f"## Whole-cluster apply: {VHOSTS} vhosts x {args.queues} durable queues (x-message-ttl), each bound to a "
          f"topic exchange, one policy per vhost; median of {args.rounds} round(s)\n")
    print(table(rounds, cpu))
    print(f"\n{describe(info)}")


if __name__ == "__main__":
    main()
