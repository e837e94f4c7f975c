"""How long a consumer's bytes may wait in its socket before the client reads them: fewer wakeups under load.

A consumer that keeps up with the broker wakes for every few messages, and each wakeup (a context switch, a
poll, a trip through the ioloop) costs more than parsing the messages it brings. Letting the kernel hold the
bytes until a low-water mark has arrived (SO_RCVLOWAT), or until a deadline has passed, reads many messages
per wakeup instead, at the price of up to `cap` seconds more latency on each. Kafka's consumer makes the same
trade with fetch.min.bytes and fetch.max.wait.ms.

The trade is taken only where latency does not measure the path: `auto` waits when no producer of the run
has a fixed rate (its latency is then time in the queue, as the report's note says), and, with fixed rates,
only for messages that have already waited a hundred times as long (queued behind a backlog). A number is
the wait a user chose; 0 reads at once. Unthrottled producers that wait for publisher confirms make the
trade too, with a shorter wait (confirm_water).
"""

from __future__ import annotations

from dataclasses import dataclass

from mqspec.core import model

AUTO_WAIT = 0.002     # seconds: what `auto` lets a byte wait at most
AGE_SHARE = 0.01      # `auto` with fixed rates: the wait is at most this share of the youngest message's age
LEAST = 512           # bytes: a mark below this saves too few wakeups to hold bytes for (a trickle reads at once)
MOST = 32 * 1024      # bytes: the kernel may clamp the receive window to a larger mark (tcp_set_rcvlowat)
OFF = (1, 0.0)        # the mark and wait of a socket read at once
CONFIRM_FRAME = 21    # bytes of one basic.ack frame
CONFIRM_WAIT = 0.0005  # seconds: the longest a producer lets its confirms wait


@dataclass(frozen=True)
class Policy:
    cap: float            # seconds a byte may wait at most; 0: read at once
    by_age: bool = False  # only for messages already 1/AGE_SHARE times as old as the wait


def policy(work: model.Workload) -> Policy:
    """The run's read wait: the file's `read_wait`, or what `auto` makes of its producers."""
    if work.read_wait != "auto":
        return Policy(work.read_wait)
    return Policy(AUTO_WAIT, by_age=any(p.throttled for p in work.producers))


def room(spec: model.Consumer) -> int | None:
    """Messages the broker may send beyond what the consumer must hold before it acks; None: no limit.

    A mark worth more than half of them could stall a consumer whose prefetch is full until the deadline."""
    if spec.ack == "auto" or spec.prefetch is None:
        return None
    return spec.prefetch - spec.multi_ack


def low_water(rule: Policy, seconds: float, nbytes: int, messages: int, youngest_age: float | None,
              limit: int | None) -> tuple[int, float]:
    """(SO_RCVLOWAT in bytes, the longest a byte may wait) for the next interval, from the last one's
    `nbytes` and `messages` over `seconds`; OFF when reads should not wait.

    The mark is the wait's worth of bytes at the last interval's rate, so a socket is read about once a wait
    whether the mark or the deadline comes first; `youngest_age` is the age in seconds of the newest message
    seen (None: not known)."""
    wait = rule.cap
    if rule.by_age:
        wait = min(wait, max(youngest_age or 0.0, 0.0) * AGE_SHARE)
    if wait <= 0 or seconds <= 0 or messages <= 0 or nbytes <= 0:
        return OFF
    mark = nbytes / seconds * wait
    if limit is not None:
        mark = min(mark, nbytes / messages * limit / 2)
    mark = min(mark, MOST)
    if mark < LEAST:
        return OFF
    return int(mark), wait


def confirm_water(rule: Policy, nbytes: int, confirmed: int, window: int) -> tuple[int, float]:
    """(SO_RCVLOWAT, wait) for a producer reading its publisher confirms; OFF when it should read at once
    (with fixed rates, whose confirm latency is the measure).

    A producer's rate is its confirm window over the confirms' round trip, so every wait lengthens the trip
    and may cost throughput: the mark is the bytes that, at the last interval's bytes per confirmed message,
    confirm a quarter of the window, and the wait at most CONFIRM_WAIT, so that confirms coarser than the
    last interval's (fewer frames for as many messages) hold the pump only briefly."""
    if rule.by_age or rule.cap <= 0 or window < 4 or confirmed <= 0 or nbytes <= 0:
        return OFF
    mark = nbytes / confirmed * window / 4
    if mark < 2 * CONFIRM_FRAME:
        return OFF
    return int(min(mark, MOST)), min(rule.cap, CONFIRM_WAIT)


def describe(consumers: float, producers: float = 0.0) -> str:
    """The report's words for the longest wait consumers and producers allowed (seconds); "" when none waited."""
    parts = [f"{who} up to {longest * 1000:.2g} ms" for who, longest in
             (("consumers let bytes wait in their sockets", consumers), ("producers let confirms wait", producers))
             if longest > 0]
    if not parts:
        return ""
    return f"{', '.join(parts)}, to read more per wakeup (workload.read_wait: 0 reads at once)"
