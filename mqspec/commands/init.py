"""mqspec init: a commented starter scenario an editor can complete against the schema."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from mqspec.errors import EXIT_OK, InvalidInput

_TEMPLATE = """\
# yaml-language-server: $schema=./mqspec.schema.json
# The schema (urn:mqspec:scenario:v1) for your editor: run `mqspec schema > mqspec.schema.json` next to this file.
# A scenario: topology, workload and expectations. Run `mqspec validate {file}`, then `mqspec apply {file}`.
version: 1
name: {name}
description: Say what this scenario proves.

broker:
  # --url and MQSPEC_URL override this; the URL path is the vhost (%2F is "/").
  url: ${{MQSPEC_URL:-amqp://guest:guest@localhost:5672/%2F}}

topology:
  exchanges:
    - {{name: {name}.events, type: topic, durable: true}}
  queues:
    - name: {name}.work
      durable: true
      message_ttl: 60s          # durations: 500ms, 30s, 5m
      max_length: 10000
  bindings:
    - {{exchange: {name}.events, queue: {name}.work, keys: ["order.#"]}}

workload:
  producers:
    - name: orders
      exchange: {name}.events
      routing_keys: ["order.{{seq}}"]   # {{seq}} is the message's sequence number
      messages: 100
      confirm: 50                    # publisher confirms, up to 50 in flight
  consumers:
    - {{name: worker, queue: {name}.work, prefetch: 10}}

expect:
  - {{consumer: worker, received: 100}}
  - {{no_loss: true}}
"""


def run(name: str, output: Path | None, force: bool) -> int:
    _check_name(name)
    target = output or Path(f"{name}.yaml")
    if target.is_dir():
        raise InvalidInput(f"cannot write {target}: it is a directory")
    if target.exists() and not force:
        raise InvalidInput(f"{target} exists; pass --force to overwrite it")
    try:
        target.write_text(_TEMPLATE.format(name=name, file=target), encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {target}: {exc.strerror or exc}") from exc
    typer.echo(f"wrote {target}")
    return EXIT_OK


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise InvalidInput(f"scenario name '{name}' must be letters, digits, '.', '_' or '-' (it becomes entity names)")
    if f"{name}.".startswith("amq."):
        raise InvalidInput(f"scenario name '{name}' would make entity names such as '{name}.events', "
                           "and RabbitMQ reserves names starting with 'amq.'; choose another name")
