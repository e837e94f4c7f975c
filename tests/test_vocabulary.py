"""RabbitMQ's vocabulary, checked against the real broker where the broker is the authority."""

from __future__ import annotations

import pika
from conftest import vhost_url

from mqspec.broker.management import Management, q
from mqspec.core import model, vocabulary


def test_builtin_exchanges_are_exactly_the_ones_a_new_vhost_has(management: Management, vhost: str) -> None:
    listed = management.get(f"/exchanges/{q(vhost)}", "exchanges")
    assert {e["name"]: e["type"] for e in listed} == dict(vocabulary.BUILTIN_EXCHANGES)
    assert {e["name"] for e in listed if e["internal"]} == vocabulary.INTERNAL_BUILTINS


def test_declare_arguments_declare_what_the_management_body_declares(management: Management, vhost: str) -> None:
    queue = model.Queue("v.q", "quorum", arguments={"x-max-length": 5})
    exchange = model.Exchange("v.x", "topic", auto_delete=True, arguments={"alternate-exchange": "v.ae"})
    binding = model.Binding("v.x", "v.q", routing_key="a.#", arguments={"k": "v"})
    connection = pika.BlockingConnection(pika.URLParameters(vhost_url(vhost)))
    try:
        channel = connection.channel()
        channel.exchange_declare(**vocabulary.exchange_declare_args(exchange))
        channel.queue_declare(**vocabulary.queue_declare_args(queue))
        channel.queue_bind(**vocabulary.queue_bind_args(binding))
    finally:
        connection.close()
    found_queue = management.get(f"/queues/{q(vhost)}/v.q", "queue")
    found_exchange = management.get(f"/exchanges/{q(vhost)}/v.x", "exchange")
    assert {k: found_queue[k] for k in ("durable", "auto_delete", "arguments")} == vocabulary.queue_body(queue)
    assert {k: found_exchange[k] for k in vocabulary.exchange_body(exchange)} == vocabulary.exchange_body(exchange)
    bindings = management.get(f"/bindings/{q(vhost)}/e/v.x/q/v.q", "bindings")
    assert [{k: b[k] for k in ("routing_key", "arguments")} for b in bindings] == [vocabulary.binding_body(binding)]


def test_immutable_fields_force_a_replace_and_cover_every_argument() -> None:
    assert vocabulary.is_immutable("queue", "arguments.x-message-ttl")
    assert vocabulary.is_immutable("exchange", "internal")
    assert not vocabulary.is_immutable("queue", "internal")
    assert not vocabulary.is_immutable("policy", "pattern")


def test_vhost_of_reads_the_url_path_as_the_amqp_uri_spec_says() -> None:
    assert [vocabulary.vhost_of(u) for u in ("amqp://h", "amqp://h/", "amqp://h/%2F", "amqp://h/a%2Fb")] == \
        ["/", "/", "/", "a/b"]
