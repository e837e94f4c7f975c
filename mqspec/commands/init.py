"""mqspec init: a commented starter scenario an editor can complete against the schema."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from mqspec.errors import EXIT_OK, InvalidInput

_TEMPLATE = """\
# yaml-language-server: $schema=https://raw.githubusercontent.com/mqspec/mqspec/main/schemas/mqspec.schema.json
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
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise InvalidInput(f"scenario name '{name}' must be letters, digits, '.', '_' or '-' (it becomes entity names)")
    target = output or Path(f"{name}.yaml")
    if target.exists() and not force:
        raise InvalidInput(f"{target} exists; pass --force to overwrite it")
    target.write_text(_TEMPLATE.format(name=name, file=target), encoding="utf-8")
    typer.echo(f"wrote {target}")
    return EXIT_OK
