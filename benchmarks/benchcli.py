"""Shared command line and result helpers for the baseline clients."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
FIRST_MESSAGE_TIMEOUT = 30.0  # consumer gives up if nothing arrives by then
CONFIRM_WINDOW = 100  # workload b: unconfirmed publishes in flight (select)
PREFETCH = 200  # workload b consumer prefetch
ACK_EVERY = 100  # workload b consumer acks multiple=True every N messages
DRAIN_IDLE = 1.0  # --measure drain: the queue counts as drained after this idle time


def drain_cap(seconds: float) -> float:
    """--measure drain: stop consuming after this long even if not idle."""
    return 4 * seconds + 30


@dataclass(frozen=True)
class Args:
    role: str
    url: str
    queue: str
    seconds: float
    size: int
    workload: str
    measure: str  # consumer: "window" (--seconds from 1st delivery) or "drain"
    flags: dict[str, bool]


def parse_args(description: str, flags: tuple[str, ...] = ()) -> Args:
    """Parse the common CLI; ``flags`` adds extra ``--name`` switches."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--role", choices=["producer", "consumer"], required=True)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--queue", default="bench")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--size", type=int, default=100, help="body bytes")
    parser.add_argument("--workload", choices=["a", "b"], default="a")
    parser.add_argument(
        "--measure", choices=["window", "drain"], default="window",
        help="consumer: count for --seconds from the first delivery (window), or "
             "until the queue stays idle for 1s, rate over first..last delivery "
             "(drain, how `mqspec apply` reports)")
    for flag in flags:
        parser.add_argument(f"--{flag}", action="store_true")
    ns = parser.parse_args()
    chosen = {flag: getattr(ns, flag.replace("-", "_")) for flag in flags}
    return Args(ns.role, ns.url, ns.queue, ns.seconds, ns.size, ns.workload,
                ns.measure, chosen)


def signal_ready() -> None:
    """Tell the runner (on stderr) that the consumer is subscribed."""
    print("ready", file=sys.stderr, flush=True)


def emit(role: str, count: int, seconds: float, **extra: object) -> None:
    """Print the single JSON result line on stdout."""
    rate = count / seconds if seconds > 0 else 0.0
    result = {"role": role, "count": count, "seconds": round(seconds, 4),
              "rate": round(rate, 1), **extra}
    print(json.dumps(result), flush=True)


def now() -> float:
    return time.monotonic()
