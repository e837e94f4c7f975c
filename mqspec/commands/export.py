"""mqspec export: the file's topology in RabbitMQ's definitions format, with no broker.

The result is accepted by `POST /api/definitions/{vhost}` and by `rabbitmqctl import_definitions`.
"""

from __future__ import annotations

import json
from pathlib import Path

from mqspec.context import Context
from mqspec.core.definitions import cluster_definitions, cluster_left_out
from mqspec.core.model import Scenario
from mqspec.errors import EXIT_OK, InvalidInput
from mqspec.pipeline import load_valid


def run(ctx: Context, path: str, output: str | None, strict: bool = False) -> int:
    scenario = load_valid(ctx, path, strict)
    for note in cluster_left_out(scenario):
        ctx.echo(f"warning: {note}", err=True)
    # Every vhost in one document; passwords hashed with a salt derived from user and password (stable output).
    data = cluster_definitions(scenario)
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        ctx.echo(text, nl=False)
        return EXIT_OK
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {output}: {exc.strerror or exc}") from None
    ctx.echo(f"Wrote {len(data['exchanges'])} exchanges, {len(data['queues'])} queues and "
               f"{len(data['bindings'])} bindings of {_vhosts(scenario)} to {output}", err=True)
    return EXIT_OK


def _vhosts(scenario: Scenario) -> str:
    names = [t.vhost for t in scenario.every_vhost()]
    return f"vhost '{names[0]}'" if len(names) == 1 else "vhosts " + ", ".join(f"'{n}'" for n in names)
