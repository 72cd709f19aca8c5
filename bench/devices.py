"""Connected devices: habits learned from telemetry, on simulated homes and on real data.

Run as ``python -m bench.devices`` (about 10 minutes on 2 cores; ``--homes 40`` is quicker).

1. **Simulator** (:mod:`tailor.datasets.simulate.homes`, 200 homes x 8 weeks, learn on the
   first 6, test on the last 2). Each home's raw readings (gaps, duplicates, skewed clocks,
   NaN) go through :func:`tailor.devices.quality.clean`, then
   :class:`~tailor.devices.model.HomeModel` learns from the first 6 weeks.
   - ``setpoint_mae_c``: the learned schedule vs each household's true preference (comfort
     when home and awake, sleep setpoint when asleep), over the test weeks' occupied slots.
     The thermostats' own program (20 °C 07:00-23:00, 16 °C otherwise) is the peer.
   - Energy and discomfort over the test weeks, replayed by
     :func:`~tailor.datasets.simulate.homes.run_thermostat` (same weather, buildings and
     occupancy, no occupant adjustments): the learned decisions (the occupancy forecast from
     the test weeks' live motion, eco when away, pre-heating) vs the fixed 7-to-23 schedule
     and a reactive thermostat (20 °C while motion was seen in the last 30 minutes, else
     16 °C); also against a fixed 7-to-23 schedule at each household's *own* comfort and
     sleep temperatures (``fixed_own``: the same levels as the learned schedule, so only the
     timing differs), and an oracle that knows the true occupancy and preferences (the
     preference when home, 16 °C away): what following the household exactly costs.
     Discomfort = degree-hours beyond 1 °C from the preference while occupied
     (``COMFORT_BAND_C``).
   - ``onnx_max_abs_diff``: every home's decision model exported to ONNX and run by
     onnxruntime on the test weeks, against the server's :func:`~tailor.devices.policy.decide`.
   - ``federated_vs_central_mae_ratio``: the shared cold-start comfort model (setpoint kept
     while someone is active, on time of day and outdoor temperature) trained across homes
     with Flower's simulation vs pooled training; MAE on the test weeks.
2. **ecobee-home** (``../shared/data`` or ``$TAILOR_DATA``): a real home, 5-minute steps,
   learn on the first 21 days, test on the rest.
   - ``ecobee_setpoint_mae_c``: the setpoint in force at each test step (manual holds
     included) predicted by the model (the home's program plus the deviations the household
     repeated in training) vs the program alone and "same time last week".
   - occupancy: any motion sensor firing in the next 5-minute step, forecast from the motion
     before it and the time of week, vs the time-of-week majority.
3. **uci-occupancy**: the dataset's own training file vs its two test files; the model reads
   the office's sensors (light, CO2, temperature, humidity) and the time of week.
4. ``mqtt_lost``: messages acknowledged by a private Mosquitto broker, then lost across a
   broker restart (:func:`tailor.devices.mqtt.broker_restart_check`).

``--occupancy-csv PATH --time-cols Date,Time --label-col NAME`` trains and tests the occupancy
model on any labelled sensor CSV instead (first 70% of the time span to learn).
The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tailor.devices.features import slot_of_week
from tailor.devices.model import COMFORT_BAND_C, HomeModel, HomeSettings
from tailor.devices.occupancy import (
    OccupancyModel,
    TimeOfWeekBaseline,
    occupancy_f1,
    sensor_features,
)
from tailor.devices.policy import decide, occupancy_features, slots_for
from tailor.devices.quality import clean

console = Console(stderr=True)
TARGETS = {
    "setpoint_mae_c": 0.5,
    "energy_saving_vs_fixed": 0.10,
    "discomfort_ratio_vs_fixed": 1.0,
    "onnx_max_abs_diff": 1e-4,
    "mqtt_lost": 0,
    "federated_vs_central_mae_ratio": 1.10,
}
LEARN_WEEKS = 6
SLOT = 15
REACTIVE_ON_C, REACTIVE_OFF_C = 20.0, 16.0


def _bar(label: str) -> Progress:
    return Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


# -- 1. simulator --------------------------------------------------------------------------


def simulated(n_homes: int, weeks: int, seed: int, onnx_homes: int) -> dict[str, Any]:
    from tailor.datasets.simulate.homes import fixed_schedule, run_thermostat, simulate_homes

    began = time.perf_counter()
    with console.status(f"simulating {n_homes} homes x {weeks} weeks"):
        sim = simulate_homes(n_homes=n_homes, weeks=weeks, seed=seed, slot_minutes=SLOT)
    learn_end = sim.start + pd.Timedelta(weeks=LEARN_WEEKS)
    end = sim.start + pd.Timedelta(weeks=weeks)
    test_index = pd.date_range(learn_end, end, freq=f"{SLOT}min", inclusive="left", tz="UTC")
    readings = {h: r for h, r in sim.readings.groupby("home_id", sort=False)}
    adjustments = {h: a for h, a in sim.adjustments.groupby("home_id", sort=False)}
    errors, program_errors, models, learned_slots, reactive_slots = [], [], {}, [], []
    federated_train, federated_test = {}, {}
    quality_rows = {"rows_in": 0, "duplicates": 0, "rows_out": 0}
    with _bar("learning homes") as bar:
        task = bar.add_task("homes", total=n_homes)
        for home in sim.home_ids:
            home_readings = readings[home]
            learn_grid = _grid(home_readings[home_readings["ts"] < learn_end], home, quality_rows)
            full_grid = _grid(home_readings, home, None).reindex(
                pd.date_range(sim.start, end, freq=f"{SLOT}min", inclusive="left", tz="UTC")
            )
            home_adjustments = adjustments.get(home, sim.adjustments.iloc[:0])
            model = HomeModel(slot_minutes=SLOT).fit(
                learn_grid.loc[: learn_end - pd.Timedelta(minutes=SLOT)],
                home_adjustments[home_adjustments["ts"] < learn_end],
                program=sim.program,
                home_id=home,
            )
            models[home] = model
            truth = sim.truth[home]
            occupied = truth.occupied.reindex(test_index).fillna(False).to_numpy(bool)
            preferred = truth.preferred.reindex(test_index).to_numpy(float)
            predicted = model.schedule_.predict(test_index)
            errors.append(np.abs(predicted - preferred)[occupied])
            program = sim.program[slot_of_week(test_index, SLOT)]
            program_errors.append(np.abs(program - preferred)[occupied])
            # Live decisions over the test weeks from the motion the home reported.
            motion = full_grid["motion"]
            features = occupancy_features(motion, slot_minutes=SLOT)
            test_rows = full_grid.index >= learn_end
            made = decide(model.params_, features[test_rows], slots_for(test_index, model.params_))
            learned_slots.append(made.setpoint)
            recent = motion.fillna(0).rolling(2, min_periods=1).max().shift(1).fillna(0)
            seen_now = motion.fillna(0).to_numpy()
            on = (np.maximum(recent.to_numpy(), seen_now) > 0)[test_rows]
            reactive_slots.append(np.where(on, REACTIVE_ON_C, REACTIVE_OFF_C))
            _federated_rows(full_grid, learn_end, home, federated_train, federated_test)
            bar.advance(task)
    fit_s = time.perf_counter() - began
    errors_all, program_all = np.concatenate(errors), np.concatenate(program_errors)

    per_minute = SLOT
    fixed = fixed_schedule(slot_minutes=SLOT)[slot_of_week(test_index, SLOT)]
    day = (test_index.hour >= 7) & (test_index.hour < 23)
    own = [
        np.where(day, sim.truth[h].household.comfort_c, sim.truth[h].household.sleep_c)
        for h in sim.home_ids
    ]
    oracle = []
    for home in sim.home_ids:
        truth = sim.truth[home]
        home_now = truth.occupied.reindex(test_index).fillna(False).to_numpy(bool)
        wanted = truth.preferred.reindex(test_index).to_numpy(float)
        oracle.append(np.where(home_now, wanted, HomeSettings().away_c))
    trajectories = {
        "learned": np.repeat(np.vstack(learned_slots), per_minute, axis=1),
        "oracle": np.repeat(np.vstack(oracle), per_minute, axis=1),
        "fixed": np.repeat(np.tile(fixed, (n_homes, 1)), per_minute, axis=1),
        "reactive": np.repeat(np.vstack(reactive_slots), per_minute, axis=1),
        "fixed_own": np.repeat(np.vstack(own), per_minute, axis=1),
    }
    runs = {}
    with console.status("replaying the test weeks under each policy"):
        for name, setpoints in trajectories.items():
            run = run_thermostat(sim, None, setpoints, start=learn_end, end=end)
            runs[name] = {
                "energy_kwh": float(run.energy_kwh.sum()),
                "discomfort_degree_hours": float(
                    run.discomfort_degree_hours(band=COMFORT_BAND_C).sum()
                ),
                "cold_discomfort_degree_hours": float(
                    run.discomfort_degree_hours(band=COMFORT_BAND_C, cold_only=True).sum()
                ),
            }
    onnx_diff = _onnx_difference(models, sim, learn_end, end, onnx_homes)
    federated = _federated(federated_train, federated_test)
    return {
        "homes": n_homes,
        "weeks": weeks,
        "setpoint_mae_c": float(errors_all.mean()),
        "program_setpoint_mae_c": float(program_all.mean()),
        "occupied_test_slots": int(errors_all.size),
        "homes_with_habits": int(sum(bool(m.schedule_.rules_) for m in models.values())),
        "one_offs_ignored": int(sum(m.schedule_.rejected_ for m in models.values())),
        "one_offs_simulated": int(
            sim.adjustments.loc[sim.adjustments["ts"] < learn_end, "is_one_off"].sum()
        ),
        "policies": runs,
        "energy_saving_vs_fixed": 1.0 - runs["learned"]["energy_kwh"] / runs["fixed"]["energy_kwh"],
        "energy_saving_vs_reactive": 1.0
        - runs["learned"]["energy_kwh"] / runs["reactive"]["energy_kwh"],
        "oracle_energy_saving_vs_fixed": 1.0
        - runs["oracle"]["energy_kwh"] / runs["fixed"]["energy_kwh"],
        "oracle_discomfort_ratio_vs_fixed": runs["oracle"]["discomfort_degree_hours"]
        / runs["fixed"]["discomfort_degree_hours"],
        "energy_saving_vs_fixed_own": 1.0
        - runs["learned"]["energy_kwh"] / runs["fixed_own"]["energy_kwh"],
        "discomfort_ratio_vs_fixed_own": runs["learned"]["discomfort_degree_hours"]
        / runs["fixed_own"]["discomfort_degree_hours"],
        "discomfort_ratio_vs_fixed": runs["learned"]["discomfort_degree_hours"]
        / runs["fixed"]["discomfort_degree_hours"],
        "discomfort_ratio_vs_reactive": runs["learned"]["discomfort_degree_hours"]
        / runs["reactive"]["discomfort_degree_hours"],
        "onnx_max_abs_diff": onnx_diff["max_abs_diff"],
        "onnx_homes": onnx_diff["homes"],
        "federated": federated,
        "quality": quality_rows,
        "learn_s": fit_s,
    }


def _grid(readings: pd.DataFrame, home: str, counts: dict[str, int] | None) -> pd.DataFrame:
    grids, report = clean(readings, freq=f"{SLOT}min", max_gap="1h")
    if counts is not None:
        summary = report.to_dict()
        for key in counts:
            value = summary.get(key, 0)
            counts[key] += int(value) if isinstance(value, int | float) else 0
    return grids[home]


def _federated_rows(grid, learn_end, home, train, test) -> None:
    """(features, setpoint kept) of the slots with someone active, split at ``learn_end``."""
    from tailor.devices.federated import comfort_features

    active = (grid["motion"] > 0) & grid["setpoint"].notna() & grid["outdoor_temp"].notna()
    rows = grid[active]
    if rows.empty:
        return
    X = comfort_features(rows.index, rows["outdoor_temp"].to_numpy())
    y = rows["setpoint"].to_numpy(float)
    before = rows.index < learn_end
    if before.sum() > 20 and (~before).sum() > 20:
        train[home] = (X[before], y[before])
        test[home] = (X[~before], y[~before])


def _federated(train, test) -> dict[str, Any]:
    from tailor.devices.federated import FederatedConfig, compare

    began = time.perf_counter()
    try:
        with console.status(f"federated training across {len(train)} homes (Flower simulation)"):
            result = compare(train, test, FederatedConfig())
    except ImportError as exc:
        return {"error": str(exc)}
    result["seconds"] = time.perf_counter() - began
    return result


def _onnx_difference(models, sim, learn_end, end, limit: int) -> dict[str, Any]:
    from tailor.devices.edge import export_onnx, max_abs_difference

    folder = Path(tempfile.mkdtemp(prefix="tailor-onnx-"))
    worst = 0.0
    homes = list(models)[:limit]
    try:
        with _bar("ONNX vs server") as bar:
            task = bar.add_task("homes", total=len(homes))
            for home in homes:
                model = models[home]
                readings = sim.readings[sim.readings["home_id"] == home]
                grid = _grid(readings, home, None)
                grid = grid[(grid.index >= learn_end) & (grid.index < end)]
                features = occupancy_features(grid["motion"], slot_minutes=SLOT)
                slots = slots_for(grid.index, model.params_)
                path = export_onnx(model.params_, folder / f"{home}.onnx")
                worst = max(worst, max_abs_difference(model.params_, path, features, slots))
                bar.advance(task)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"max_abs_diff": worst, "homes": len(homes)}


# -- 2. ecobee-home ------------------------------------------------------------------------


def ecobee(data_dir: str | None) -> dict[str, Any]:
    from tailor.datasets.ecobee_home import load_ecobee_home, program_setpoints
    from tailor.devices.program import ProgramDeviations

    home = load_ecobee_home(data_dir)
    train, test = home.split(train_days=21)
    modes = program_setpoints(train)
    model = ProgramDeviations(slot_minutes=5, timezone=home.timezone).fit(
        train.grid["setpoint"], train.grid["program_mode"], modes
    )
    actual = test.grid["setpoint"]
    known = actual.notna().to_numpy()
    predicted = model.predict(test.grid.index, test.grid["program_mode"])
    schedule = model.program_setpoint(test.grid.index, test.grid["program_mode"])
    full = home.grid["setpoint"]
    last_week = full.shift(freq="7D").reindex(test.grid.index).to_numpy(float)
    last_week = np.where(np.isnan(last_week), schedule, last_week)
    holds = test.grid["hold"].fillna(False).to_numpy(bool) & known

    def mae(values: np.ndarray, mask: np.ndarray = known) -> float:
        return float(np.mean(np.abs(values[mask] - actual.to_numpy(float)[mask])))

    setpoint = {
        "model": mae(predicted),
        "schedule": mae(schedule),
        "last_week": mae(last_week),
        "steps": int(known.sum()),
        "hold_steps": int(holds.sum()),
        "model_on_holds": mae(predicted, holds) if holds.any() else None,
        "schedule_on_holds": mae(schedule, holds) if holds.any() else None,
    }
    occupancy = _motion_forecast(home, train, test)
    return {"setpoint_mae_c": setpoint, "occupancy": occupancy, "mode_setpoints_c": modes}


def _motion_forecast(home, train, test) -> dict[str, Any]:
    """Will any motion sensor fire in the next 5-minute step? From motion before it."""
    motion = home.grid["motion"]
    features = occupancy_features(motion, timezone=home.timezone, slot_minutes=5)
    label = motion.to_numpy(float)
    learn = home.grid.index < test.grid.index[0]
    keep = ~np.isnan(label)
    model = OccupancyModel().fit(features[learn & keep], label[learn & keep])
    baseline = TimeOfWeekBaseline(slot_minutes=5, timezone=home.timezone).fit(
        home.grid.index[learn & keep], label[learn & keep]
    )
    rows = ~learn & keep
    truth = label[rows].astype(int)
    return {
        "f1": occupancy_f1(truth, model.predict(features[rows])),
        "baseline_f1": occupancy_f1(truth, baseline.predict(home.grid.index[rows])),
        "positive_share": float(truth.mean()),
        "test_steps": int(rows.sum()),
    }


# -- 3. uci-occupancy ----------------------------------------------------------------------


def uci(data_dir: str | None) -> dict[str, Any]:
    from tailor.datasets.uci_occupancy import load_uci_occupancy

    data = load_uci_occupancy(data_dir)
    label = "Occupancy"
    sensors = [c for c in data.train.columns if c != label]
    X, _ = sensor_features(data.train[sensors], timezone=data.timezone)
    model = OccupancyModel().fit(X, data.train[label].to_numpy())
    baseline = TimeOfWeekBaseline(timezone=data.timezone).fit(
        data.train.index, data.train[label].to_numpy()
    )
    result = {}
    for name, frame in (("test", data.test), ("test2", data.test2)):
        X_test, _ = sensor_features(frame[sensors], timezone=data.timezone)
        truth = frame[label].to_numpy()
        result[name] = {
            "f1": occupancy_f1(truth, model.predict(X_test)),
            "baseline_f1": occupancy_f1(truth, baseline.predict(frame.index)),
            "rows": len(frame),
        }
    return result


def occupancy_csv(path: str, time_cols: str, label_col: str) -> dict[str, Any]:
    from tailor.devices.sensor_csv import read_labelled_sensor_csv

    data = read_labelled_sensor_csv(path, time_cols=time_cols.split(","), label_col=label_col)
    learn, test = data.split_by_time(0.7)
    X_learn, _ = sensor_features(learn.features, timezone=data.timezone)
    X_test, _ = sensor_features(test.features, timezone=data.timezone)
    model = OccupancyModel().fit(X_learn, learn.labels.to_numpy())
    baseline = TimeOfWeekBaseline(timezone=data.timezone).fit(
        learn.features.index, learn.labels.to_numpy()
    )
    truth = test.labels.to_numpy()
    return {
        "bench": "devices",
        "mode": "occupancy-csv",
        "f1": occupancy_f1(truth, model.predict(X_test)),
        "baseline_f1": occupancy_f1(truth, baseline.predict(test.features.index)),
        "learn_rows": len(learn.labels),
        "test_rows": len(test.labels),
        "features": list(learn.features.columns),
    }


# -- 4. MQTT -------------------------------------------------------------------------------


def mqtt(messages: int) -> dict[str, Any]:
    from tailor.devices.mqtt import broker_restart_check

    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        return {"error": "no mosquitto binary: apt-get install mosquitto to run this part"}
    with console.status(f"MQTT: {messages} messages across a broker restart"):
        return broker_restart_check(messages, mosquitto=binary)


# -- output --------------------------------------------------------------------------------


def _print(sim: dict, eco: dict, office: dict, broker: dict) -> None:
    out = Console(width=max(Console().width, 120))
    table = Table(title=f"simulator: {sim['homes']} homes, learn 6 weeks, test 2")
    table.add_column("figure")
    table.add_column("tailor", justify="right")
    table.add_column("peer", justify="right")
    table.add_column("target", justify="right")
    table.add_row(
        "setpoint MAE vs true preference (°C)",
        f"{sim['setpoint_mae_c']:.3f}",
        f"program {sim['program_setpoint_mae_c']:.3f}",
        "<= 0.5",
    )
    for name in ("fixed", "reactive", "fixed_own"):
        table.add_row(
            f"energy saving vs {name}",
            f"{sim[f'energy_saving_vs_{name}']:.1%}",
            f"{sim['policies'][name]['energy_kwh']:,.0f} kWh",
            ">= 10%" if name == "fixed" else "",
        )
        table.add_row(
            f"discomfort ratio vs {name}",
            f"{sim[f'discomfort_ratio_vs_{name}']:.3f}",
            f"{sim['policies'][name]['discomfort_degree_hours']:,.0f} °C·h",
            "<= 1" if name == "fixed" else "",
        )
    table.add_row(
        "oracle (true occupancy and preference): energy saving vs fixed",
        f"{sim['oracle_energy_saving_vs_fixed']:.1%}",
        f"discomfort ratio {sim['oracle_discomfort_ratio_vs_fixed']:.3f}",
        "",
    )
    table.add_row("ONNX vs server max |diff|", f"{sim['onnx_max_abs_diff']:.2e}", "", "<= 1e-4")
    fed = sim["federated"]
    if "ratio" in fed:
        table.add_row(
            "federated / central MAE",
            f"{fed['ratio']:.3f}",
            f"central {fed['central_mae']:.3f} °C",
            "<= 1.10",
        )
    table.add_row("MQTT lost across restart", str(broker.get("lost")), str(broker), "0")
    out.print(table)
    real = Table(title="real data")
    real.add_column("figure")
    real.add_column("tailor", justify="right")
    real.add_column("baselines", justify="right")
    sp = eco["setpoint_mae_c"]
    real.add_row(
        "ecobee setpoint in force, MAE °C",
        f"{sp['model']:.3f}",
        f"program {sp['schedule']:.3f}, last week {sp['last_week']:.3f}",
    )
    real.add_row(
        "ecobee motion next step, F1",
        f"{eco['occupancy']['f1']:.3f}",
        f"time of week {eco['occupancy']['baseline_f1']:.3f}",
    )
    for name, figures in office.items():
        real.add_row(
            f"uci-occupancy {name}, F1",
            f"{figures['f1']:.3f}",
            f"time of week {figures['baseline_f1']:.3f}",
        )
    out.print(real)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.devices", description=__doc__)
    parser.add_argument("--homes", type=int, default=200, help="simulated homes")
    parser.add_argument("--weeks", type=int, default=8, help="simulated weeks (learn on 6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--onnx-homes", type=int, default=50, help="homes exported to ONNX")
    parser.add_argument("--mqtt-messages", type=int, default=1000)
    parser.add_argument("--data", default=None, help="data folder (default ../shared/data)")
    parser.add_argument("--occupancy-csv", help="any labelled sensor CSV: occupancy F1 mode")
    parser.add_argument("--time-cols", default="date")
    parser.add_argument("--label-col", default="Occupancy")
    args = parser.parse_args(argv)
    logging.getLogger("tailor").setLevel(logging.WARNING)
    if args.occupancy_csv:
        result = occupancy_csv(args.occupancy_csv, args.time_cols, args.label_col)
        out = Console(width=max(Console().width, 120))
        out.print(
            f"occupancy F1 {result['f1']:.3f} vs time-of-week baseline {result['baseline_f1']:.3f}"
            f" ({result['learn_rows']:,} rows to learn, {result['test_rows']:,} to test)"
        )
        print(json.dumps(result))
        return result
    if args.weeks <= LEARN_WEEKS:
        parser.error(f"--weeks must exceed the {LEARN_WEEKS} learning weeks")
    sim = simulated(args.homes, args.weeks, args.seed, args.onnx_homes)
    eco = ecobee(args.data)
    office = uci(args.data)
    broker = mqtt(args.mqtt_messages)
    _print(sim, eco, office, broker)
    occupancy = {
        "uci_test": office["test"]["f1"],
        "uci_test_baseline": office["test"]["baseline_f1"],
        "uci_test2": office["test2"]["f1"],
        "uci_test2_baseline": office["test2"]["baseline_f1"],
        "ecobee_motion": eco["occupancy"]["f1"],
        "ecobee_motion_baseline": eco["occupancy"]["baseline_f1"],
    }
    fed = sim["federated"]
    result = {
        "bench": "devices",
        "setpoint_mae_c": sim["setpoint_mae_c"],
        "program_setpoint_mae_c": sim["program_setpoint_mae_c"],
        "ecobee_setpoint_mae_c": {
            k: eco["setpoint_mae_c"][k] for k in ("model", "schedule", "last_week")
        },
        "occupancy_f1": occupancy,
        "energy_saving_vs_fixed": sim["energy_saving_vs_fixed"],
        "discomfort_ratio_vs_fixed": sim["discomfort_ratio_vs_fixed"],
        "energy_saving_vs_reactive": sim["energy_saving_vs_reactive"],
        "discomfort_ratio_vs_reactive": sim["discomfort_ratio_vs_reactive"],
        "oracle_energy_saving_vs_fixed": sim["oracle_energy_saving_vs_fixed"],
        "oracle_discomfort_ratio_vs_fixed": sim["oracle_discomfort_ratio_vs_fixed"],
        "energy_saving_vs_fixed_own": sim["energy_saving_vs_fixed_own"],
        "discomfort_ratio_vs_fixed_own": sim["discomfort_ratio_vs_fixed_own"],
        "cold_discomfort_degree_hours": {
            name: figures["cold_discomfort_degree_hours"]
            for name, figures in sim["policies"].items()
        },
        "onnx_max_abs_diff": sim["onnx_max_abs_diff"],
        "mqtt_lost": broker.get("lost"),
        "federated_vs_central_mae_ratio": fed.get("ratio"),
        "homes": sim["homes"],
        "learn_s": sim["learn_s"],
    }
    result["targets_met"] = {
        "setpoint_mae_c": result["setpoint_mae_c"] <= TARGETS["setpoint_mae_c"],
        "ecobee_setpoint": result["ecobee_setpoint_mae_c"]["model"]
        < min(
            result["ecobee_setpoint_mae_c"]["schedule"],
            result["ecobee_setpoint_mae_c"]["last_week"],
        ),
        "occupancy_f1": all(
            occupancy[name] > occupancy[f"{name}_baseline"]
            for name in ("uci_test", "uci_test2", "ecobee_motion")
        ),
        "energy": result["energy_saving_vs_fixed"] >= TARGETS["energy_saving_vs_fixed"]
        and result["discomfort_ratio_vs_fixed"] <= TARGETS["discomfort_ratio_vs_fixed"],
        "onnx": result["onnx_max_abs_diff"] <= TARGETS["onnx_max_abs_diff"],
        "mqtt": result["mqtt_lost"] == TARGETS["mqtt_lost"],
        "federated": result["federated_vs_central_mae_ratio"] is not None
        and result["federated_vs_central_mae_ratio"] <= TARGETS["federated_vs_central_mae_ratio"],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
