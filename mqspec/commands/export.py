"""mqspec export: the file's topology in RabbitMQ's definitions format, with no broker.

The result is accepted by `POST /api/definitions/{vhost}` and by `rabbitmqctl import_definitions`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mqspec.context import Context
from mqspec.core.definitions import left_out, to_definitions
from mqspec.errors import EXIT_OK, InvalidInput
from mqspec.pipeline import load_valid


def run(ctx: Context, path: str, output: str | None, strict: bool = False) -> int:
    scenario = load_valid(ctx, path, strict)
    topology = scenario.topology
    for note in left_out(topology):
        ctx.echo(f"warning: {note}", err=True)
    # A fresh 4-byte salt per export, as RabbitMQ itself hashes passwords.
    data = to_definitions(topology, salt=os.urandom(4))
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        ctx.echo(text, nl=False)
        return EXIT_OK
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {output}: {exc.strerror or exc}") from None
    ctx.echo(f"Wrote {len(data['exchanges'])} exchanges, {len(data['queues'])} queues and "
               f"{len(data['bindings'])} bindings of vhost '{topology.vhost}' to {output}", err=True)
    return EXIT_OK
