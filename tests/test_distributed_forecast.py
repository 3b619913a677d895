"""Logs larger than one machine (issue 16): a forecast over partition files streams one file at a time, a large
file is split by a column first, and `--ray` runs the same on a Ray cluster (two workers started here); every
path writes the rows of the in-memory forecast, because each entity draws its noise from its own streams.

Rows are compared exactly in their keys (sample, entity, time, step) and to float32 rounding in their values
(relative 1e-5, `assert_frame_equal`'s default): the network computes in float32, and a batch of another size,
or another process, may round a last bit differently (seen here once in a few runs: 7e-9 in 5 of 448 values)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from trajdiff import api
from trajdiff.api import partitions
from trajdiff.cli import app
from trajdiff.core.conditional import Known, sample_conditional
from trajdiff.core.parametrize import Prediction
from trajdiff.core.schedules import build_schedule
from trajdiff.core.streams import Streams
from trajdiff.errors import ConfigError, DataError

HISTORY, HORIZON = 16, 8
NAMES = [f"s{i}" for i in range(7)]
GROUPS = [NAMES[:3], NAMES[3:5], NAMES[5:]]
KEYS = ["entity", "sample", "step"]
RAY = importlib.util.find_spec("ray") is not None


def _series(name: str, start: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(int(name[1:]) * 1000 + start)
    t = np.arange(start, start + rows)
    values = np.stack([np.sin(2 * np.pi * t / 24 + int(name[1:])), 0.5 * np.cos(2 * np.pi * t / 12)], axis=1)
    frame = pd.DataFrame(values + 0.1 * rng.standard_normal(values.shape), columns=["x", "y"])
    frame.insert(0, "series", name)
    frame.insert(0, "time", pd.date_range("2020-01-01", periods=rows, freq="h") + pd.Timedelta(hours=start))
    return frame


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny timeseries model (20 steps) for seven series, their held-out rows as one CSV (rows interleaved in time,
    as logs are) and as a folder of three Parquet partitions of whole series."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("distributed")
    pd.concat([_series(name, 0, 120) for name in NAMES]).to_csv(root / "train.csv", index=False)
    api.train("timeseries", root / "train.csv", root / "model", steps=20, history=HISTORY, horizon=HORIZON,
              batch_size=16, progress=False, encoder={"patch": 4},
              network={"kind": "transformer", "width": 16, "depth": 1, "heads": 2})
    held = pd.concat([_series(name, 120, 40) for name in NAMES]).sort_values("time", kind="stable")
    held.to_csv(root / "held.csv", index=False)
    (root / "parts").mkdir()
    for k, group in enumerate(GROUPS):
        held[held["series"].isin(group)].to_parquet(root / "parts" / f"part-{k}.parquet", index=False)
    (root / "parts" / "_SUCCESS").write_text("")  # what Spark leaves beside partitions: not data
    return {"model": root / "model", "csv": root / "held.csv", "parts": root / "parts", "root": root}


def _sorted(path: Path) -> pd.DataFrame:
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return table.sort_values(KEYS).reset_index(drop=True)


def _noise_free_denoiser(x: torch.Tensor, k: torch.Tensor, cond: torch.Tensor | None = None) -> Prediction:
    """A fixed map (x0 = x / 2, eps from it): enough to see which noise each sequence got."""
    x0 = 0.5 * x
    return Prediction(x0, x - x0)


def test_a_sequence_draws_the_same_noise_in_any_batch_and_any_company() -> None:
    """With one stream per sequence, batching (one batch, one sequence per batch) and the other sequences do not
    change a sequence's samples, for a stochastic solver and antithetic pairs alike."""
    values = torch.randn(5, 6, 2, generator=torch.Generator().manual_seed(0))
    schedule = build_schedule("cosine")
    seeds = [11, 12, 13, 14, 15]
    for solver, antithetic in (("ddpm", False), ("dpmpp2m", True)):
        def draw(rows: list[int], batch_limit: int, solver: str = solver, antithetic: bool = antithetic
                 ) -> torch.Tensor:
            known = Known.history(values[rows], observed=2)
            return sample_conditional(_noise_free_denoiser, schedule, known, samples=4, nfe=6, solver=solver,
                                      antithetic=antithetic, generator=Streams([seeds[r] for r in rows]),
                                      batch_limit=batch_limit)

        whole = draw([0, 1, 2, 3, 4], 4096)
        assert torch.equal(draw([0, 1, 2, 3, 4], 4), whole)  # one sequence per batch
        assert torch.equal(draw([3, 1], 4096), whole[:, [3, 1]])  # other company, other order
        assert not torch.equal(whole[:, 0], whole[:, 1])


@pytest.mark.parametrize("options", [{"samples": 4, "nfe": 4},
                                     {"samples": 2, "draws": 4, "nfe": 3, "solver": "ddpm", "horizon": 2 * HORIZON}])
def test_partitions_streamed_one_at_a_time_write_the_in_memory_rows(log, tmp_path, options) -> None:
    """The folder (three Parquet partitions) streamed to a table holds the rows of the in-memory forecast of the
    whole log, also when samples are selected from draws and the horizon is rolled with a stochastic solver."""
    memory = api.forecast(log["model"], log["csv"], out=tmp_path / "memory.csv", **options)
    streamed = api.forecast(log["model"], log["parts"], out=tmp_path / "streamed.csv", **options)
    assert (streamed.entities, streamed.rows, streamed.partitions) == (7, len(memory.table), 3)
    assert streamed.table.empty and not streamed.samples  # nothing of the log is kept in memory
    pd.testing.assert_frame_equal(_sorted(tmp_path / "streamed.csv"), _sorted(tmp_path / "memory.csv"))
    one = api.forecast(log["model"], log["parts"] / "part-1.parquet", **options).table
    expected = memory.table[memory.table["entity"].isin(GROUPS[1])]
    pd.testing.assert_frame_equal(one.reset_index(drop=True), expected.reset_index(drop=True))
    loaded = api.load_model(log["model"])  # loaded once, forecast many times: the same rows, in memory or streamed
    pd.testing.assert_frame_equal(api.forecast(loaded, log["csv"], **options).table, memory.table)
    api.forecast(loaded, log["parts"], out=tmp_path / "again.csv", **options)
    pd.testing.assert_frame_equal(_sorted(tmp_path / "again.csv"), _sorted(tmp_path / "memory.csv"))


def test_one_large_file_is_split_by_a_column_a_chunk_at_a_time(log, tmp_path, monkeypatch) -> None:
    """--partition-by hashes the rows of one CSV (read 50 rows at a time) into partition files by the series column:
    same rows as in memory, and the temporary partitions are gone afterwards."""
    monkeypatch.setattr(partitions, "PARTITION_BYTES", log["csv"].stat().st_size // 4)
    monkeypatch.setattr(partitions, "CHUNK_ROWS", 50)
    memory = api.forecast(log["model"], log["csv"], samples=3, nfe=3).table
    result = api.forecast(log["model"], log["csv"], samples=3, nfe=3, out=tmp_path / "split.parquet",
                          partition_by="series")
    assert result.partitions >= 3
    pd.testing.assert_frame_equal(_sorted(tmp_path / "split.parquet"),
                                  memory.sort_values(KEYS).reset_index(drop=True), check_dtype=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split.parquet"]
    with pytest.raises(ConfigError, match="no column 'vessel' to partition by"):
        api.forecast(log["model"], log["csv"], out=tmp_path / "x.csv", partition_by="vessel")
    in_memory = replace(api.load_model(log["model"]), folder=None)
    with pytest.raises(ConfigError, match="pass the model directory, not a model built in memory"):
        api.forecast(in_memory, log["csv"], out=tmp_path / "x.csv", partition_by="series")


def test_an_entity_split_between_partitions_is_an_error_and_writes_nothing(log, tmp_path) -> None:
    held = pd.read_csv(log["csv"])
    folder = tmp_path / "split"
    folder.mkdir()
    one = held[held["series"] == "s0"]
    one.iloc[:20].to_csv(folder / "a.csv", index=False)
    one.iloc[20:].to_csv(folder / "b.csv", index=False)
    with pytest.raises(DataError, match="entity 's0' has rows in two partitions"):
        api.forecast(log["model"], folder, samples=2, nfe=2, out=tmp_path / "f.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split"]


def test_without_ray_the_option_says_what_to_install(log, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'trajdiff\[ray\]'"):
        api.forecast(log["model"], log["parts"], samples=2, nfe=2, out=tmp_path / "f.csv", ray="auto")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of two worker CPUs, started for these tests and shut down after them."""
    if not RAY:
        pytest.skip("needs Ray: pip install 'trajdiff[ray]'")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_ray_workers_write_the_single_process_rows(log, tmp_path, cluster) -> None:
    """`trajdiff forecast --ray auto` on the two-CPU cluster: two actors forecast the three partitions and write the
    single-process file's rows in its order (so also the in-memory rows)."""
    api.forecast(log["model"], log["parts"], samples=4, nfe=4, out=tmp_path / "local.csv")
    result = CliRunner().invoke(app, ["forecast", "--model", str(log["model"]), "--data", str(log["parts"]),
                                      "--out", str(tmp_path / "ray.csv"), "--samples", "4", "--nfe", "4",
                                      "--ray", "auto"])
    assert result.exit_code == 0, result.output
    assert "forecast 7 entities (224 rows, 3 partitions on 2 Ray workers)" in result.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "ray.csv"), pd.read_csv(tmp_path / "local.csv"))
