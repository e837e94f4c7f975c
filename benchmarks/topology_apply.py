"""Topology apply benchmark: broker definitions import vs `mqspec apply`.

Topology: one durable topic exchange and N durable queues (x-message-ttl),
queue i bound with key ``q.<i>.#``. Measured side by side, interleaved over
rounds, each in a fresh vhost:

  a) POST /api/definitions/{vhost}         (the broker's own bulk import)
  b) mqspec apply FILE --topology-only     (process start included)
  c) the same mqspec apply again           (no-op: everything exists)
  d) serial pika declares + binds          (BlockingConnection loop)
  e) GET /api/definitions/{vhost}          (reading the topology back)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pika
from mgmt import DEFAULT_AMQP, DEFAULT_MGMT, Management, amqp_url, connect, describe, q
from run_workload import (
    Unavailable,
    best_effort,
    mqspec_apply_argv,
    mqspec_command,
    run_command,
    wait_for_quiet,
)

EXCHANGE = "topo.x"
TTL = 60000
STEPS = {
    "a": "definitions import (POST /api/definitions/{vhost})",
    "b": "mqspec apply --topology-only (fresh vhost)",
    "c": "mqspec apply --topology-only (no-op, same file again)",
    "d": "serial pika declare + bind (BlockingConnection)",
    "e": "definitions export (GET /api/definitions/{vhost})",
}


def queue_names(n: int) -> list[str]:
    return [f"topo.q.{i}" for i in range(n)]


def definitions(n: int) -> dict[str, Any]:
    """The topology in RabbitMQ's definitions format (vhost-scoped)."""
    return {
        "exchanges": [{"name": EXCHANGE, "type": "topic", "durable": True,
                       "auto_delete": False, "internal": False,
                       "arguments": {}}],
        "queues": [{"name": name, "durable": True, "auto_delete": False,
                    "arguments": {"x-message-ttl": TTL}}
                   for name in queue_names(n)],
        "bindings": [{"source": EXCHANGE, "destination": name,
                      "destination_type": "queue", "routing_key": f"q.{i}.#",
                      "arguments": {}}
                     for i, name in enumerate(queue_names(n))],
    }


def scenario_yaml(n: int) -> str:
    lines = ["version: 1", f"name: topology-{n}", "topology:", "  exchanges:",
             f"    - {{name: {EXCHANGE}, type: topic, durable: true}}",
             "  queues:"]
    lines += [f"    - {{name: {name}, durable: true, message_ttl: {TTL}}}"
              for name in queue_names(n)]
    lines.append("  bindings:")
    lines += [f"    - {{exchange: {EXCHANGE}, queue: {name}, keys: ['q.{i}.#']}}"
              for i, name in enumerate(queue_names(n))]
    return "\n".join(lines) + "\n"


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --- the contenders -------------------------------------------------------

def import_definitions(mgmt: Management, vhost: str, defs: dict[str, Any]) -> None:
    mgmt.post(f"/api/definitions/{q(vhost)}", defs)


def export_definitions(mgmt: Management, vhost: str) -> None:
    mgmt.get(f"/api/definitions/{q(vhost)}")


def mqspec_apply(path: Path, url: str) -> None:
    cmd = mqspec_command()
    if cmd is None:
        raise Unavailable("mqspec command not found")
    argv = mqspec_apply_argv(cmd, [str(path), "--topology-only"], url)
    run_command(argv, timeout=900)


def pika_serial(url: str, n: int) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.exchange_declare(EXCHANGE, "topic", durable=True)
    for i, name in enumerate(queue_names(n)):
        ch.queue_declare(name, durable=True, arguments={"x-message-ttl": TTL})
        ch.queue_bind(name, EXCHANGE, routing_key=f"q.{i}.#")
    conn.close()


def check_topology(mgmt: Management, vhost: str, n: int) -> None:
    """Untimed sanity check: every queue and binding exists."""
    defs = mgmt.get(f"/api/definitions/{q(vhost)}")
    queues = {x["name"] for x in defs["queues"]}
    bindings = [b for b in defs["bindings"] if b["source"] == EXCHANGE]
    if len(queues & set(queue_names(n))) != n or len(bindings) != n:
        raise Unavailable(f"incomplete topology: {len(queues)} queues, "
                          f"{len(bindings)} bindings")


# --- one round ------------------------------------------------------------

def one_round(mgmt: Management, base_url: str, n: int, path: Path,
              order: list[str], max_wait: float) -> dict[str, float | str]:
    """Run every step once (a..e, rotated) in fresh vhosts; return times."""
    vhosts = {step: mgmt.create_vhost(f"bench-topo-{step}") for step in "abd"}
    defs = definitions(n)
    actions: dict[str, Callable[[], None]] = {
        "a": lambda: import_definitions(mgmt, vhosts["a"], defs),
        "b": lambda: mqspec_apply(path, amqp_url(base_url, vhosts["b"])),
        "c": lambda: mqspec_apply(path, amqp_url(base_url, vhosts["b"])),
        "d": lambda: pika_serial(amqp_url(base_url, vhosts["d"]), n),
        "e": lambda: export_definitions(mgmt, vhosts["a"]),
    }
    out: dict[str, float | str] = {}
    try:
        for step in _dependency_order(order):
            wait_for_quiet(mgmt, max_wait)
            out[step] = _measure(step, actions[step], out)
            if step in vhosts and isinstance(out[step], float):
                try:
                    check_topology(mgmt, vhosts[step], n)
                except Unavailable as exc:
                    out[step] = f"wrong result: {exc}"
    finally:
        for vhost in vhosts.values():
            best_effort(mgmt.delete_vhost, vhost)
    return out


def _measure(step: str, action: Callable[[], None],
             done: dict[str, float | str]) -> float | str:
    needs = {"c": "b", "e": "a"}.get(step)
    if needs and not isinstance(done.get(needs), float):
        return f"needs ({needs})"
    try:
        return timed(action)
    except (Unavailable, httpx.HTTPError, pika.exceptions.AMQPError) as exc:
        return str(exc) or type(exc).__name__


def _dependency_order(order: list[str]) -> list[str]:
    """Keep c after b and e after a, otherwise follow the rotation."""
    seq = [s for s in order if s in "abd"]
    seq.insert(seq.index("b") + 1, "c")
    seq.insert(seq.index("a") + 1, "e")
    return seq


# --- report ---------------------------------------------------------------

def _times(rounds: list[dict[str, float | str]], step: str) -> list[float]:
    return [v for r in rounds if isinstance(v := r.get(step), float)]


def table(rounds: list[dict[str, float | str]]) -> str:
    lines = ["| step | median s | min–max s | ÷ definitions import |",
             "|---|---:|---:|---:|"]
    med = {step: statistics.median(t) for step in STEPS if (t := _times(rounds, step))}
    for step, label in STEPS.items():
        if step not in med:
            notes = {str(r.get(step)) for r in rounds}
            lines.append(f"| ({step}) {label} | n/a ({min(notes)}) | | |")
            continue
        times = _times(rounds, step)
        ratio = f"{med[step] / med['a']:.2f}" if "a" in med else "n/a"
        lines.append(f"| ({step}) {label} | {med[step]:.2f} | "
                     f"{min(times):.2f}–{max(times):.2f} | {ratio} |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--queues", "-n", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--url", default=DEFAULT_AMQP, help="AMQP URL without vhost")
    p.add_argument("--max-wait", type=float, default=60.0,
                   help="seconds to wait for idle CPUs and no other broker "
                        "connections before each step")
    p.add_argument("--mgmt", default=DEFAULT_MGMT)
    p.add_argument("--user", default="guest")
    p.add_argument("--password", default="guest")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    mgmt, info = connect(args.mgmt, args.user, args.password)
    rounds: list[dict[str, float | str]] = []
    with tempfile.TemporaryDirectory(prefix="mqspec-topo-") as tmp:
        path = Path(tmp) / "topology.yaml"
        path.write_text(scenario_yaml(args.queues))
        for rnd in range(args.rounds):
            order = ["a", "b", "d"][rnd % 3:] + ["a", "b", "d"][:rnd % 3]
            try:
                result = one_round(mgmt, args.url, args.queues, path, order,
                                   args.max_wait)
            except httpx.HTTPError as exc:  # e.g. the broker restarted
                result = dict.fromkeys(STEPS, f"broker error: {exc}")
            rounds.append(result)
            print(f"round {rnd + 1}: " + ", ".join(
                f"{k}={v:.2f}s" if isinstance(v, float) else f"{k}=n/a"
                for k, v in sorted(result.items())), file=sys.stderr, flush=True)
    print(f"## Topology apply: 1 topic exchange, {args.queues} durable queues "
          f"(x-message-ttl), {args.queues} bindings; median of "
          f"{args.rounds} round(s)\n")
    print(table(rounds))
    print(f"\n{describe(info)}")


if __name__ == "__main__":
    main()
