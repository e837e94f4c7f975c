"""Straightforward pika BlockingConnection producer/consumer.

This is the "what everybody writes first" baseline: one basic_publish per
loop iteration, and for workload b the BlockingChannel confirm mode, which
waits for the broker's ack after every single publish.
"""

from __future__ import annotations

import pika
from benchcli import (
    ACK_EVERY,
    DRAIN_IDLE,
    FIRST_MESSAGE_TIMEOUT,
    PREFETCH,
    Args,
    drain_cap,
    emit,
    now,
    parse_args,
    signal_ready,
)
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties


def open_channel(args: Args) -> tuple[pika.BlockingConnection, BlockingChannel]:
    conn = pika.BlockingConnection(pika.URLParameters(args.url))
    ch = conn.channel()
    ch.queue_declare(args.queue, durable=False)
    return conn, ch


def produce(args: Args) -> None:
    conn, ch = open_channel(args)
    if args.workload == "b":
        ch.confirm_delivery()
    body = b"x" * args.size
    count = 0
    start = now()
    deadline = start + args.seconds
    while now() < deadline:
        ch.basic_publish("", args.queue, body)
        count += 1
    elapsed = now() - start
    conn.close()
    emit("producer", count, elapsed)


class Counter:
    """basic_consume callback that counts deliveries and acks in batches."""

    def __init__(self, manual_ack: bool) -> None:
        self.manual_ack = manual_ack
        self.count = 0
        self.start = 0.0
        self.last = 0.0
        self.last_tag = 0

    def __call__(self, ch: BlockingChannel, method: Basic.Deliver,
                 _props: BasicProperties, _body: bytes) -> None:
        self.last = now()
        if self.count == 0:
            self.start = self.last
        self.count += 1
        self.last_tag = method.delivery_tag
        if self.manual_ack and self.count % ACK_EVERY == 0:
            ch.basic_ack(method.delivery_tag, multiple=True)


def consume(args: Args) -> None:
    conn, ch = open_channel(args)
    manual = args.workload == "b"
    if manual:
        ch.basic_qos(prefetch_count=PREFETCH)
    counter = Counter(manual)
    ch.basic_consume(args.queue, counter, auto_ack=not manual)
    signal_ready()
    give_up = now() + FIRST_MESSAGE_TIMEOUT
    while counter.count == 0 and now() < give_up:
        conn.process_data_events(time_limit=0.05)
    elapsed = 0.0
    if counter.count:
        measure = _for_window if args.measure == "window" else _until_drained
        elapsed = measure(conn, counter, args.seconds)
    count = counter.count
    if manual and counter.last_tag:
        ch.basic_ack(counter.last_tag, multiple=True)
    conn.close()
    emit("consumer", count, elapsed)


def _for_window(conn: pika.BlockingConnection, counter: Counter,
                seconds: float) -> float:
    """Consume for ``seconds`` from the first delivery; return the elapsed time."""
    deadline = counter.start + seconds
    while now() < deadline:
        conn.process_data_events(time_limit=min(0.05, max(deadline - now(), 0)))
    return now() - counter.start


def _until_drained(conn: pika.BlockingConnection, counter: Counter,
                   seconds: float) -> float:
    """Consume until idle for DRAIN_IDLE; return first..last delivery time."""
    cap = counter.start + drain_cap(seconds)
    while now() - counter.last < DRAIN_IDLE and now() < cap:
        conn.process_data_events(time_limit=0.1)
    return counter.last - counter.start


def main() -> None:
    args = parse_args(__doc__ or "")
    if args.role == "producer":
        produce(args)
    else:
        consume(args)


if __name__ == "__main__":
    main()
