"""A copy of the model registry in MLflow tracking, for teams that browse runs there.

The store stays the registry: versions, aliases and their history live there, and a server
follows aliases from there. MLflow gets a view of it, one run per registered version in the
experiment ``tailor-{engine}`` (run name: the version; params: the config and the data
window, flattened; metrics: the offline metrics; tags: version, engine, artifact and its
SHA-256), and one experiment tag ``tailor.alias.{alias}`` per alias, naming the version it
points at. ``registry.register`` and ``registry.promote`` call it when
``TAILOR_MLFLOW_TRACKING_URI`` is set (``sqlite:///mlruns.db``, say).

MLflow is an optional extra (``pip install 'tailor[mlflow]'``), imported only here and only
when mirroring. Each call builds its own ``MlflowClient`` for the URI it is given and never
touches MLflow's global state (``mlflow.set_tracking_uri``, the active run), so a server
mirroring registrations from several threads does not mix them up.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from tailor.lifecycle.registry import ModelVersion

EXTRA = "MLflow mirroring needs the mlflow extra: pip install 'tailor[mlflow]'"
# MLflow's limits (mlflow.utils.validation): param values and names, and what one batch holds.
MAX_PARAM_VALUE = 6000
MAX_KEY = 250
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
# MLflow names may hold letters, digits, '_', '-', '.', ' ' (and '/' and ':', which are
# path separators to some stores or refused on Windows); anything else becomes '_', so
# ``ndcg@10`` is logged as ``ndcg_10``.
_UNSAFE = re.compile(r"[^\w.\- ]")


def _mlflow() -> Any:
    try:
        import mlflow.entities
        import mlflow.tracking
    except ImportError:
        raise RuntimeError(EXTRA) from None
    return mlflow


def _client(tracking_uri: str) -> MlflowClient:
    return _mlflow().tracking.MlflowClient(tracking_uri=tracking_uri)


def shown(tracking_uri: str) -> str:
    """``tracking_uri`` with its password, if any, as ``***``: it goes into logs."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", tracking_uri)


def mlflow_name(key: str) -> str:
    """``key`` as a name MLflow accepts for a param or metric (see ``_UNSAFE``)."""
    name = _UNSAFE.sub("_", key)
    if not name or name.startswith("."):  # '.', '..' and '' read as paths or nothing
        name = "_" + name
    return name[:MAX_KEY]


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            yield from _flatten(f"{prefix}.{key}", inner)
    else:
        yield prefix, value


def params_of(model: ModelVersion) -> dict[str, str]:
    """The config and the data window as MLflow params: nested keys joined with '.' under
    ``config.`` and ``data_window.`` (so a config key cannot shadow a window key), values
    as the registry's JSON writes them (strings as they are), cut at MLflow's limit."""
    params: dict[str, str] = {}
    for section, described in (("config", model.config), ("data_window", model.data_window)):
        for key, value in described.items():
            for name, leaf in _flatten(f"{section}.{key}", value):
                text = leaf if isinstance(leaf, str) else json.dumps(leaf, default=str)
                params[mlflow_name(name)] = text[:MAX_PARAM_VALUE]
    return params


def metrics_of(model: ModelVersion) -> dict[str, float]:
    """The metrics MLflow can plot: finite numbers (NaN, infinities, booleans and text are
    left out; the registry keeps them)."""
    return {
        mlflow_name(name): float(value)
        for name, value in model.metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def _experiment(client: MlflowClient, engine: str) -> str:
    """The id of ``tailor-{engine}``, created on first use."""
    name = f"tailor-{engine}"
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, tags={"tailor.engine": engine})
        except Exception:  # another process created it between the look-up and now
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    return found.experiment_id


def mirror_version(tracking_uri: str, model: ModelVersion) -> str:
    """Log ``model`` as a finished MLflow run in ``tailor-{engine}``; returns the run id.

    Each call logs a new run: the store refuses a version registered twice, so one run per
    version holds as long as the tracking store is not shared by several tailor stores."""
    mlflow = _mlflow()
    client = _client(tracking_uri)
    at = int(model.created_at.timestamp() * 1000)
    run = client.create_run(
        _experiment(client, model.engine),
        start_time=at,
        run_name=model.version,
        tags={
            "tailor.version": model.version,
            "tailor.engine": model.engine,
            "tailor.artifact_sha256": model.artifact_sha256,
            "tailor.artifact": model.artifact,
        },
    )
    run_id = run.info.run_id
    try:
        params = [mlflow.entities.Param(k, v) for k, v in params_of(model).items()]
        metrics = [mlflow.entities.Metric(k, v, at, 0) for k, v in metrics_of(model).items()]
        for start in range(0, len(params), PARAMS_PER_BATCH):
            client.log_batch(run_id, params=params[start : start + PARAMS_PER_BATCH])
        for start in range(0, len(metrics), METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + METRICS_PER_BATCH])
    except Exception:
        client.set_terminated(run_id, "FAILED")  # a half-logged run must not look complete
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def mirror_alias(tracking_uri: str, engine: str, alias: str, version: str) -> None:
    """Record on ``tailor-{engine}`` that ``alias`` now points at ``version`` (the experiment
    tag ``tailor.alias.{alias}``); the history of moves stays in the store."""
    client = _client(tracking_uri)
    client.set_experiment_tag(_experiment(client, engine), f"tailor.alias.{alias}", version)
