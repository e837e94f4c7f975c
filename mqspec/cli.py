"""The mqspec command line: parses options, calls one command function, returns its exit code."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperArgument, TyperCommand

from mqspec import __version__
from mqspec.context import Context
from mqspec.core.loader import Overrides
from mqspec.core.problems import escape
from mqspec.core.semantics import option_url_problem
from mqspec.errors import EXIT_FAILED, EXIT_INTERRUPTED, MqspecError

app = typer.Typer(
    name="mqspec",
    help="RabbitMQ topology, workload and expectations in one file: validate, plan, apply, prove.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Format(StrEnum):
    text = "text"
    json = "json"


class MigrateVia(StrEnum):
    auto = "auto"
    shovel = "shovel"
    relay = "relay"


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    dot = "dot"


def _choices(choices: type[StrEnum]) -> str:
    return "[" + "|".join(choice.value for choice in choices) + "]"


class _Command(TyperCommand):
    """Shows arguments by their metavar (FILE, FILE..., NAME) in usage and help, as a conventional CLI does."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            pieces.extend([_argument_label(param)] if isinstance(param, TyperArgument) else param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                arguments.append((_argument_label(param), param.help or ""))
            elif (record := param.get_help_record(ctx)) is not None:
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _argument_label(param: TyperArgument) -> str:
    label = param.metavar or (param.name or "").upper()
    label = label if param.required else f"[{label}]"
    return label if param.nargs == 1 else f"{label}..."


FileArg = Annotated[Path, typer.Argument(metavar="FILE", help="Scenario file.", show_default=False)]
FormatOpt = Annotated[Format, typer.Option("--format", metavar=_choices(Format), help="Output format.")]
OutputOpt = Annotated[Optional[Path], typer.Option("-o", "--output", metavar="PATH", help="Write here instead of stdout.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Treat warnings as errors (as validate --strict does).")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mqspec {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[Optional[str], typer.Option("--url", envvar="MQSPEC_URL", metavar="URL", help="AMQP URL; its path is the vhost.",
                                               show_envvar=True)] = None,
    management_url: Annotated[Optional[str], typer.Option("--management-url", envvar="MQSPEC_MANAGEMENT_URL", metavar="URL",
                                                          help="Management API URL (default: AMQP host, port 15672).",
                                                          show_envvar=True)] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for unexpected errors.")] = False,
    no_commands: Annotated[bool, typer.Option("--no-commands", help="Refuse files that run commands (broker.restart_command, "
                                                                    "restart_broker) or read files outside their folder: "
                                                                    "for files you did not write.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    for value, option, management in ((url, "--url", False), (management_url, "--management-url", True)):
        problem = option_url_problem(value, management) if value else ""
        if problem:
            raise typer.BadParameter(problem, param_hint=f"'{option}' (or {'MQSPEC_MANAGEMENT_URL' if management else 'MQSPEC_URL'})")
    ctx.obj = Context(Overrides(url, management_url, no_commands), debug)


def _duration(value: str, option: str) -> float:
    from mqspec.core.units import seconds

    try:
        return seconds(value)
    except ValueError:
        raise typer.BadParameter(f"not a duration: {value!r} (e.g. 30s, 2m)", param_hint=option) from None


def _run(ctx: typer.Context, command: Callable[[Context], int]) -> None:
    """One error handler for every command: mqspec errors keep their exit code, never a traceback."""
    state: Context = ctx.find_root().obj or Context()
    try:
        code = command(state)
    except MqspecError as exc:
        state.err(f"error: {escape(exc.message)}")
        code = exc.exit_code
    except KeyboardInterrupt:
        state.err("interrupted")
        code = EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if state.debug:
            traceback.print_exc()
        state.err(f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for details)")
        code = EXIT_FAILED
    raise typer.Exit(code)


@app.command(cls=_Command)
def validate(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(metavar="FILE", help="Scenario files.", show_default=False)],
    output: FormatOpt = Format.text,
    strict: Annotated[bool, typer.Option("--strict", help="Treat warnings as errors.")] = False,
) -> None:
    """Check files against the schema and RabbitMQ's rules, with no broker."""
    from mqspec.commands import validate as command

    _run(ctx, lambda state: command.run(state, [str(f) for f in files], output.value, strict))


@app.command(cls=_Command)
def schema() -> None:
    """Print the JSON Schema of scenario files."""
    from mqspec.core.schema import schema_text

    sys.stdout.write(schema_text())


@app.command(cls=_Command)
def init(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Scenario name; writes NAME.yaml.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", metavar="PATH", help="File to write (default NAME.yaml).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter scenario."""
    from mqspec.commands import init as command

    _run(ctx, lambda state: command.run(name, output, force))


@app.command(cls=_Command)
def plan(
    ctx: typer.Context,
    file: FileArg,
    output: FormatOpt = Format.text,
    prune: Annotated[bool, typer.Option("--prune", help="Also plan deleting entities the file does not declare.")] = False,
    detailed_exitcode: Annotated[bool, typer.Option("--detailed-exitcode", help="Exit 0 no changes, 2 changes pending, 1 error.")] = False,
    strict: StrictOpt = False,
) -> None:
    """Show what apply would change on the live broker, and why."""
    from mqspec.commands import plan as command
    from mqspec.options import PlanOptions

    _run(ctx, lambda state: command.run(state, str(file), PlanOptions(prune, output.value, detailed_exitcode, strict)))


@app.command(cls=_Command)
def apply(
    ctx: typer.Context,
    file: FileArg,
    topology_only: Annotated[bool, typer.Option("--topology-only", help="Stop after the topology; run no workload.")] = False,
    allow_replace: Annotated[bool, typer.Option("--allow-replace", help="Allow deleting and re-creating changed entities.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Allow replacing or pruning queues that hold messages.")] = False,
    prune: Annotated[bool, typer.Option("--prune", help="Delete entities the file does not declare.")] = False,
    output: FormatOpt = Format.text,
    report: Annotated[Optional[Path], typer.Option("--report", metavar="PATH", help="Write the run report as JSON.")] = None,
    junit: Annotated[Optional[Path], typer.Option("--junit", metavar="PATH", help="Write expectations as JUnit XML.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, metavar="N", help="Processes for the workload.")] = None,
    strict: StrictOpt = False,
    engine: Annotated[Optional[str], typer.Option(
        "--engine", metavar="ENGINE", envvar="MQSPEC_ENGINE",
        help="Where the workload runs: 'local' (processes on this machine) or 'dask://HOST:PORT' (a Dask cluster).")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", metavar="PATH", help="Write a self-contained HTML report with charts.")] = None,
    metrics: Annotated[Optional[str], typer.Option("--metrics", metavar="[HOST]:PORT",
                                                   help="Serve Prometheus metrics during the run (host defaults to 127.0.0.1).")] = None,
    migrate: Annotated[bool, typer.Option("--migrate", help="Replace queues that hold messages by moving the messages "
                                          "through a holding queue and back.")] = False,
    migrate_via: Annotated[MigrateVia, typer.Option("--migrate-via", help="How --migrate moves messages: a dynamic "
                                                    "shovel when the plugin is enabled (auto), or mqspec's relay.")]
    = MigrateVia.auto,
    migrate_wait_consumers: Annotated[Optional[str], typer.Option(
        "--migrate-wait-consumers", metavar="DURATION",
        help="Wait up to DURATION (e.g. 30s) for a migrated queue's consumers to go before beginning.")] = None,
) -> None:
    """Apply the topology, run the workload, check the expectations and report."""
    from mqspec.commands import apply as command
    from mqspec.options import ApplyOptions

    wait = _duration(migrate_wait_consumers, "--migrate-wait-consumers") if migrate_wait_consumers else 0.0
    options = ApplyOptions(topology_only, allow_replace, force, prune, output.value,
                           str(report) if report else None, str(junit) if junit else None, workers, strict, engine,
                           str(html) if html else None, metrics, migrate, migrate_via.value, wait)
    _run(ctx, lambda state: command.run(state, str(file), options))


@app.command(cls=_Command)
def destroy(
    ctx: typer.Context,
    file: FileArg,
    force: Annotated[bool, typer.Option("--force", help="Also delete queues that hold messages.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be deleted; delete nothing.")] = False,
    output: FormatOpt = Format.text,
    strict: StrictOpt = False,
) -> None:
    """Delete exactly what the file declares, in dependency order."""
    from mqspec.commands import destroy as command
    from mqspec.options import DestroyOptions

    _run(ctx, lambda state: command.run(state, str(file), DestroyOptions(force, dry_run, output.value, strict)))


@app.command(cls=_Command)
def export(
    ctx: typer.Context,
    file: FileArg,
    output: OutputOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Write the topology in RabbitMQ's definitions format (no broker needed)."""
    from mqspec.commands import export as command

    _run(ctx, lambda state: command.run(state, str(file), str(output) if output else None, strict))


@app.command(name="import", cls=_Command)
def import_(
    ctx: typer.Context,
    from_broker: Annotated[bool, typer.Option("--from-broker", help="Read the live vhost (from --url).")] = False,
    from_definitions: Annotated[Optional[Path], typer.Option("--from-definitions", metavar="PATH",
                                                             help="Read a definitions JSON file.")] = None,
    output: OutputOpt = None,
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="Scenario name to write.")] = "imported",
    vhost: Annotated[Optional[str], typer.Option("--vhost", metavar="VHOST",
                                                 help="Import only this vhost of the definitions file.")] = None,
) -> None:
    """Turn existing topology into a scenario file."""
    from mqspec.commands import import_ as command

    _run(ctx, lambda state: command.run(state, from_broker, str(from_definitions) if from_definitions else None,
                                        str(output) if output else None, name, vhost))


@app.command(cls=_Command)
def route(
    ctx: typer.Context,
    file: FileArg,
    exchange: Annotated[str, typer.Option("--exchange", "-e", metavar="NAME", help="Exchange to publish to ('' is the default exchange).")],
    key: Annotated[str, typer.Option("--key", "-k", metavar="KEY", help="Routing key.")] = "",
    header: Annotated[Optional[list[str]], typer.Option("--header", "-H", metavar="K=V", help="Message header K=V (repeatable).")] = None,
    mandatory: Annotated[bool, typer.Option("--mandatory", help="Say the message would be returned if unroutable.")] = False,
    output: FormatOpt = Format.text,
    strict: StrictOpt = False,
    vhost: Annotated[Optional[str], typer.Option("--vhost", metavar="VHOST",
                                                 help="Vhost to publish in (default: the broker URL's).")] = None,
) -> None:
    """Where would this message go? Answered from the file alone, with no broker."""
    from mqspec.commands import route as command

    _run(ctx, lambda state: command.run(state, str(file), exchange, key, header or [], mandatory, output.value, strict,
                                        vhost))


@app.command(cls=_Command)
def graph(
    ctx: typer.Context,
    file: FileArg,
    graph_format: Annotated[GraphFormat, typer.Option("--format", metavar=_choices(GraphFormat),
                                                      help="Graph language.")] = GraphFormat.mermaid,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", metavar="PATH",
                                                   help="Write here; .svg/.png render through Graphviz.")] = None,
    strict: StrictOpt = False,
) -> None:
    """Draw the topology and workload as a Mermaid or Graphviz graph."""
    from mqspec.commands import graph as command

    _run(ctx, lambda state: command.run(state, str(file), graph_format.value, str(output) if output else None, strict))


def entry() -> None:
    """Console script entry point."""
    app()


if __name__ == "__main__":
    entry()
