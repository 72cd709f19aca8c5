"""``tailor devices ...``: learn each home's habits, show its schedule, export it to the device.

Data come from the store's ``telemetry`` and ``device_adjustment`` events (HTTP, imports or
``tailor devices mqtt``); every command calls :mod:`tailor.devices.service`, which the API
shares.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tailor.cli_errors import fail as _fail

console = Console()
err = Console(stderr=True)

app = typer.Typer(
    help="Connected devices: learn when each home is occupied and what its people want, "
    "serve the schedule, and export it for the device to run offline.",
    no_args_is_help=True,
    add_completion=False,
)
ModelDir = Annotated[
    Path,
    typer.Option("--model", help="Folder of the home models (written by `tailor devices fit`)."),
]


@app.command()
def fit(
    model: ModelDir,
    slot_minutes: Annotated[
        int, typer.Option("--slot-minutes", min=5, max=60, help="Schedule slot length.")
    ] = 15,
    timezone: Annotated[
        str, typer.Option(help="The homes' IANA time zone: habits follow the local clock.")
    ] = "UTC",
    max_gap: Annotated[
        str, typer.Option("--max-gap", help="Longest gap in readings bridged by interpolation.")
    ] = "1h",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Clean every home's telemetry and learn its occupancy, schedule and heat-up rates."""
    from tailor.cli import _workspace
    from tailor.devices.service import fit_homes

    _check_timezone(timezone)
    columns = (
        TextColumn("fitting homes"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with (
        _workspace() as ws,
        Progress(*columns, console=err, transient=True, disable=not progress) as bar,
    ):
        task = bar.add_task("homes", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            summary = fit_homes(
                ws.store,
                model,
                slot_minutes=slot_minutes,
                timezone=timezone,
                max_gap=max_gap,
                progress=advance,
            )
        except ValueError as exc:
            raise _fail(exc) from exc
    console.print(
        f"fitted {summary['homes']} home(s) with {summary['devices']} device(s) into {model}"
    )
    for home, reason in summary["skipped"].items():
        console.print(f"  skipped {home}: {reason}")
    quality = summary["quality"]
    console.print(
        "data quality: "
        + ", ".join(
            f"{key} {value}"
            for key, value in quality.items()
            if isinstance(value, int | float) and key != "skew_seconds"
        )
    )


def _service(model: Path):
    from tailor.devices.service import DevicesService

    try:
        return DevicesService(model)
    except ValueError as exc:
        raise _fail(exc) from exc


@app.command()
def schedule(
    model: ModelDir,
    device: Annotated[str, typer.Option("--device", help="Your id of the device.")],
    hours: Annotated[int, typer.Option(min=1, max=168, help="How far ahead.")] = 24,
) -> None:
    """The device's planned setpoints for the next hours, with why."""
    from tailor.cli import _workspace
    from tailor.devices.service import load_settings, may_personalize

    service = _service(model)
    with _workspace() as ws:
        home = service.home_of(ws.pseudonymizer.pseudonymize("device", device))
        if home is None:
            raise _fail(f"device {device!r} is not in {model}; send its telemetry and refit")
        plan = service.schedule(
            home,
            load_settings(ws.store, home),
            start=datetime.now(UTC),
            hours=hours,
            personalized=may_personalize(ws.store, home),
        )
    table = Table("from", "setpoint °C", "why", title=f"device {device}: mode {plan['mode']}")
    for change in plan["changes"]:
        table.add_row(change["from"][:16], f"{change['setpoint_c']:g}", change["why"])
    console.print(table)


@app.command()
def insights(
    model: ModelDir,
    home: Annotated[str, typer.Option("--home", help="Your id of the home.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What a home's model learned: habits with their evidence, occupancy, heat-up rates."""
    from tailor.cli import _workspace
    from tailor.devices.service import load_settings

    service = _service(model)
    with _workspace() as ws:
        pseudonym = _consenting(ws, home)
        try:
            found = service.insights(pseudonym, load_settings(ws.store, pseudonym))
        except KeyError:
            raise _fail(f"home {home!r} is not in {model}; send its telemetry and refit") from None
    found["home_id"] = home
    if as_json:
        console.print_json(json.dumps(found, default=str))
        return
    console.print(f"home {home}: {len(found['habits'])} habit(s) learned")
    for habit in found["habits"]:
        console.print(f"  - {habit['explanation']}")
    console.print(f"  one-off adjustments ignored: {found['one_off_adjustments_ignored']}")
    for line in found["fallbacks"]:
        console.print(f"  default used: {line}")


@app.command()
def export(
    model: ModelDir,
    home: Annotated[str, typer.Option("--home", help="Your id of the home.")],
    out: Annotated[Path, typer.Option("--out", help="The .onnx file to write.")],
) -> None:
    """Export a home's decision model to ONNX for `tailor edge run` on the device."""
    from tailor.cli import _workspace
    from tailor.devices.edge import export_onnx
    from tailor.devices.service import load_settings

    service = _service(model)
    with _workspace() as ws:
        pseudonym = _consenting(ws, home)
        fitted = service.model(pseudonym)
        if fitted is None:
            raise _fail(f"home {home!r} is not in {model}; send its telemetry and refit")
        params = fitted.with_settings(load_settings(ws.store, pseudonym)).params_with_modes()
    path = export_onnx(params, out)
    console.print(f"wrote {path}: run it with `tailor edge run {path} --readings FILE`")


@app.command()
def mqtt(
    host: Annotated[str, typer.Option(help="The MQTT broker.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Its port.")] = 1883,
    tenant: Annotated[str, typer.Option(help="The tenant whose topics to ingest.")] = "default",
    seconds: Annotated[
        float,
        typer.Option(
            "--for",
            min=0,
            help="Stop after this many seconds (0: run until Ctrl-C); the persistent session "
            "keeps what arrives meanwhile for the next run.",
        ),
    ] = 0,
) -> None:
    """Ingest telemetry and adjustments from MQTT (QoS 1) until interrupted.

    Topics: tailor/TENANT/homes/HOME/devices/DEVICE/telemetry (or .../adjustment). A message
    is acknowledged only once it is stored, so a broker or tailor restart loses nothing.
    """
    import threading

    from tailor.cli import _workspace
    from tailor.devices.mqtt import run_ingestor

    stop = threading.Event()
    if seconds:
        timer = threading.Timer(seconds, stop.set)
        timer.daemon = True
        timer.start()
    with _workspace() as ws:
        try:
            stats = run_ingestor(
                ws.store, tenant, host, port, pseudonymizer=ws.pseudonymizer, stop=stop
            )
        except (OSError, ValueError) as exc:
            raise _fail(f"MQTT broker {host}:{port}: {exc}") from exc
    console.print(
        "MQTT: " + ", ".join(f"{key} {value:,}" for key, value in stats.items()), highlight=False
    )
    if not stats.get("connects"):
        raise _fail(
            f"never reached the MQTT broker at {host}:{port}; is it running (mosquitto -p {port})?"
        )


def _consenting(ws, home: str) -> str:
    """The home's pseudonym; a home without personalization consent (or erased) fails, as
    ``GET /v1/homes/{id}/insights`` does: what was learned about it is not shown or sent."""
    from tailor.devices.service import may_personalize

    pseudonym = ws.pseudonymizer.pseudonymize("subject", home)
    if not may_personalize(ws.store, pseudonym):
        raise _fail(f"home {home!r} has no personalization consent or was erased")
    return pseudonym


def _check_timezone(timezone: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise _fail(f"--timezone: unknown time zone {timezone!r}; use e.g. Europe/Berlin") from None
