"""Forecasting logs larger than one machine's memory: partitions one at a time, in this process or on Ray.

Each partition (a file: see `trajdiff.api.partitions`) is loaded, forecast and appended to the output table,
so memory holds one partition and its forecasts at a time. On a Ray cluster (``ray="auto"`` or an address),
a Ray Data pipeline maps the partition files over a pool of actors (`PartitionForecaster`) that each load the
model once; their tables come back to this process, which writes them in partition order. Every entity draws
its noise from its own streams (`trajdiff.api.sampling.forecast_histories` with keys), so the rows written do
not depend on the partitions, the workers or the order in which they finish: a Ray run writes the rows of a
single-process run in the same order, and both hold the rows of the in-memory forecast (in partition order), the
values equal to float32 rounding (another batch size or process may round a last bit differently).
Workers read the model directory and the partitions by path, so on a cluster of several machines both must
sit on storage every node reaches (a shared or network file system) and trajdiff must be installed there.
"""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from trajdiff.api.forecasting import ForecastOptions, ForecastResult, forecast_data, settle, warn_skipped
from trajdiff.api.loading import LoadedModel, load_model
from trajdiff.api.output import TABLE_SUFFIXES
from trajdiff.api.partitions import list_partitions, split_by_column
from trajdiff.core.progress import Progress
from trajdiff.errors import ConfigError, DataError, TrajdiffError
from trajdiff.memory import return_freed_memory
from trajdiff.plugins.manager import Plugins


@dataclass
class PartForecast:
    """What one partition gives back: its rows, the entities too short to forecast, every entity read, and the
    process that forecast it (host:pid)."""

    table: pd.DataFrame
    skipped: list[str]
    entities: list[str]
    worker: str = ""


def forecast_partition(loaded: LoadedModel, path: str | Path, options: ForecastOptions, model_dir: Any
                       ) -> PartForecast:
    """The forecasts of one partition file (``options`` settled); a partition of short entities gives no rows."""
    result = forecast_data(loaded, path, options, model_dir=model_dir, required=False, progress=False)
    return PartForecast(result.table, result.skipped, result.entities, f"{socket.gethostname()}:{os.getpid()}")


def forecast_partitions(model_dir: str | Path, data: Any, options: ForecastOptions, *, out: Path, ray: str | None,
                        partition_by: str | None, workers: int | None, plugins: Plugins | None,
                        started: float) -> ForecastResult:
    """`trajdiff.api.forecast` over partitions (a folder, a list of files, or one file split by
    ``partition_by``), here or on the Ray cluster ``ray``, streamed to the table ``out``."""
    if not "".join(out.suffixes[-2:]).lower().endswith(TABLE_SUFFIXES):
        raise ConfigError(f"cannot write {out}: a partitioned forecast writes a table; use a .csv, .csv.gz or "
                          ".parquet file name")
    if ray is not None and plugins is not None:
        raise ConfigError("Ray workers load the installed plugins; forecast on Ray without a plugins registry")
    loaded = load_model(model_dir, plugins=plugins)  # checks the model and the options before any worker starts
    options = settle(loaded, options)
    split = partition_by is not None
    if split and (isinstance(data, (list, tuple)) or Path(data).is_dir()):
        raise ConfigError("--partition-by splits one large file; a folder or list of files is already partitioned")
    parts_of = split_by_column(Path(data), partition_by, out.parent) if split else nullcontext(list_partitions(data))
    skipped: list[str] = []
    entities = rows = 0
    workers_seen: set[str] = set()
    with parts_of as parts, _TableWriter(out) as writer:
        results = (_on_ray(ray, model_dir, parts, options, workers) if ray is not None
                   else (forecast_partition(loaded, path, options, model_dir) for path in parts))
        owner: dict[str, int] = {}
        with Progress(len(parts), "forecasting", "partition", delay=2.0) as shown:
            for index, part in enumerate(results):
                for entity in part.entities:
                    first = owner.setdefault(entity, index)
                    if first != index:
                        raise DataError(f"entity {entity!r} has rows in two partitions, {parts[first]} and "
                                        f"{parts[index]}; a partition must hold all rows of its entities: write "
                                        "the partitions by entity, or split one large file with --partition-by")
                skipped.extend(part.skipped)
                workers_seen.add(part.worker)
                if len(part.table):
                    writer.append(part.table)
                    entities += part.table["entity"].nunique()
                    rows += len(part.table)
                del part
                return_freed_memory()  # what one partition freed goes back before the next is read
                shown.update(1)
        if not rows:
            raise DataError(f"no episode in the {len(parts)} partition(s) has the {loaded.defaults.history} rows of "
                            "history the model needs")
    if skipped:
        warn_skipped(skipped, loaded.defaults.history)
    return ForecastResult(pd.DataFrame(), {}, {}, skipped, time.monotonic() - started, entities=entities, rows=rows,
                          partitions=len(parts), workers=len(workers_seen))


class _TableWriter:
    """Appends tables to ``out`` (.csv, .csv.gz, .parquet) through a hidden file beside it, moved into place when
    every partition is written, so a failed run leaves no partial table."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.partial = out.with_name(f".{out.name}.partial")
        self.parquet = out.name.lower().endswith((".parquet", ".pq"))
        self.writer: Any = None
        self.schema: Any = None

    def __enter__(self) -> _TableWriter:
        return self

    def append(self, table: pd.DataFrame) -> None:
        try:
            if self.parquet:
                import pyarrow as pa
                import pyarrow.parquet as pq

                arrow = pa.Table.from_pandas(table, schema=self.schema, preserve_index=False)
                if self.writer is None:
                    self.out.parent.mkdir(parents=True, exist_ok=True)
                    self.schema = arrow.schema
                    self.writer = pq.ParquetWriter(self.partial, self.schema)
                self.writer.write_table(arrow)
            else:
                if self.writer is None:
                    self.out.parent.mkdir(parents=True, exist_ok=True)
                    gz = self.out.name.lower().endswith(".gz")
                    self.writer = gzip.open(self.partial, "wt", newline="") if gz else open(  # noqa: SIM115
                        self.partial, "w", newline="")
                    table.to_csv(self.writer, index=False)
                else:
                    table.to_csv(self.writer, index=False, header=False)
        except OSError as error:
            raise ConfigError(f"cannot write {self.out}: {error.strerror or error}; choose another path") from error

    def __exit__(self, kind: Any, *rest: Any) -> None:
        if self.writer is not None:
            self.writer.close()
        if kind is None and self.writer is not None:
            os.replace(self.partial, self.out)
        else:
            self.partial.unlink(missing_ok=True)


class PartitionForecaster:
    """A Ray Data actor: loads the model once, then forecasts the partition files of each batch it is given."""

    def __init__(self, model_dir: str, options: ForecastOptions, threads: int = 1) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.model_dir, self.options = model_dir, options
        self.loaded = load_model(model_dir)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        """A batch of rows (index, path) -> rows (index, result): the pickled `PartForecast`, or the error."""
        results = []
        for path in batch["path"]:
            try:
                part: Any = forecast_partition(self.loaded, path, self.options, self.model_dir)
            except TrajdiffError as error:  # sent back whole: the command line prints it as a one-line error
                part = error
            results.append(pickle.dumps(part))
        return pd.DataFrame({"index": batch["index"].to_numpy(), "result": results})


def _on_ray(address: str, model_dir: str | Path, parts: list[Path], options: ForecastOptions,
            workers: int | None) -> Iterator[PartForecast]:
    """The partitions' forecasts from a pool of Ray actors, in partition order."""
    with _cluster(address) as ray:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        size = max(1, min(len(parts), workers or cpus))
        context = ray.data.DataContext.get_current()
        saved = (context.execution_options.preserve_order, context.enable_progress_bars,
                 getattr(context, "wait_for_min_actors_s", -1))
        # every actor started before the first partition is handed out, one partition at a time each: the
        # partitions spread over the pool instead of queueing at the first actor ready
        context.execution_options.preserve_order, context.enable_progress_bars = True, False
        context.wait_for_min_actors_s = 600
        try:
            items = [{"index": i, "path": str(path.resolve())} for i, path in enumerate(parts)]
            dataset = ray.data.from_items(items, override_num_blocks=len(parts)).map_batches(
                PartitionForecaster, batch_size=1, batch_format="pandas", num_cpus=1,
                compute=ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1),
                fn_constructor_kwargs={"model_dir": str(Path(model_dir).resolve()), "options": options})
            waiting: dict[int, Any] = {}
            following = 0
            for batch in dataset.iter_batches(batch_size=None, batch_format="pandas"):
                for index, payload in zip(batch["index"], batch["result"], strict=True):
                    waiting[int(index)] = pickle.loads(payload)
                while following in waiting:  # in partition order, whatever order the workers finish in
                    part = waiting.pop(following)
                    if isinstance(part, TrajdiffError):
                        raise part
                    following += 1
                    yield part
        finally:
            (context.execution_options.preserve_order, context.enable_progress_bars,
             context.wait_for_min_actors_s) = saved


@contextmanager
def _cluster(address: str) -> Iterator[Any]:
    """Ray, connected to ``address`` (``auto``: the cluster this machine is part of, else a new local one); a
    connection this process already has is used as it is. One opened here is closed on exit."""
    try:
        import ray
    except ImportError as error:
        raise ConfigError("--ray needs Ray; install it with `pip install 'trajdiff[ray]'`") from error
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=None if address == "auto" else address, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise ConfigError(f"cannot reach a Ray cluster at {address!r}: {str(error).splitlines()[0]}; start one with "
                          "`ray start --head` and pass its address, or use --ray auto") from error
    try:
        yield ray
    finally:
        ray.shutdown()
