"""``tailor edge ...``: run a home's exported decision model on the device, offline.

The lead CLI mounts :data:`edge_app` as ``tailor edge``. The model is the ``.onnx`` file
written by :func:`tailor.devices.edge.export_onnx`; it carries the time zone, slot length and
version, so these commands need nothing else: no store, no settings, no network.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.table import Table

from tailor.cli_errors import fail as _fail

console = Console()

edge_app = typer.Typer(
    help="Run a home's exported decision model on the device, offline.",
    no_args_is_help=True,
    add_completion=False,
)

ModelFile = Annotated[
    Path,
    typer.Argument(
        help="The home's decision model (.onnx, from tailor.devices.edge.export_onnx).",
        show_default=False,
    ),
]


def _lines(handle: TextIO) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, reading) for each non-blank JSON line; a bad line is an error naming it."""
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            reading = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _fail(
                f"line {number}: not JSON ({exc.msg}); one reading object per line"
            ) from None
        if not isinstance(reading, dict):
            raise _fail(f"line {number}: expected a JSON object with ts, metric, value")
        yield number, reading


@edge_app.command("run")
def run(
    model: ModelFile,
    readings: Annotated[
        str,
        typer.Option(
            "--readings",
            help='JSON lines of readings, {"ts": ..., "metric": "motion", "value": 1}; '
            "'-' reads standard input.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the decisions here instead of standard output."),
    ] = None,
) -> None:
    """Decide each slot from a stream of readings: one JSON decision per line.

    A slot's decision uses the motion seen before it; any reading moves the clock on.
    """
    from tailor.devices.edge import EdgeRunner

    try:
        runner = EdgeRunner(model)
    except ValueError as exc:
        raise _fail(exc) from None
    with ExitStack() as stack:
        if readings == "-":
            source: TextIO = sys.stdin
        else:
            try:
                source = stack.enter_context(Path(readings).open(encoding="utf-8"))
            except OSError as exc:
                raise _fail(f"--readings {readings}: {exc.strerror or exc}") from None
        if out is None:
            sink: TextIO = sys.stdout
        else:
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                sink = stack.enter_context(out.open("w", encoding="utf-8"))
            except OSError as exc:
                raise _fail(f"--out {out}: {exc.strerror or exc}") from None
        try:
            for number, reading in _lines(source):
                try:
                    decisions = runner.step(reading)
                except ValueError as exc:
                    raise _fail(f"line {number}: {exc}") from None
                for decision in decisions:
                    sink.write(json.dumps(decision.to_dict()) + "\n")
                sink.flush()
        except UnicodeDecodeError:
            raise _fail(f"--readings {readings}: not UTF-8 text") from None


@edge_app.command("inspect")
def inspect(
    model: ModelFile,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show a model's inputs, outputs and metadata (version, time zone, bounds)."""
    from tailor.devices.edge import describe

    try:
        described = describe(model)
    except ValueError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(described, indent=1))
        return
    tensors = Table(title=f"{model}", title_justify="left")
    for column in ("", "name", "type", "shape"):
        tensors.add_column(column)
    for role in ("inputs", "outputs"):
        for tensor in described[role]:
            shape = "(" + ", ".join(str(d) for d in tensor["shape"]) + ")"
            tensors.add_row(role[:-1], tensor["name"], tensor["type"], shape)
    console.print(tensors)
    meta = Table(title="metadata", title_justify="left")
    meta.add_column("key")
    meta.add_column("value", overflow="fold")
    for key, value in sorted(described["metadata"].items()):
        meta.add_row(key, value)
    console.print(meta)
