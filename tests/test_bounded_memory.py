"""Bounded memory (issue 15): training windows are indices into the episodes, encoded per batch; the batches
equal those of the materialized windows for the same seed; nothing is allocated per window; the training
data fingerprint needs no encoding; the linear forecaster draws its sample of windows without making all of
them; forecasts are sampled a chunk of histories at a time."""

from __future__ import annotations

import json
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from trajdiff import api
from trajdiff.api.loading import encode_windows, window_source
from trajdiff.api.sampling import forecast_histories
from trajdiff.api.training import _check_same_data, data_fingerprint
from trajdiff.core.data import Episodes
from trajdiff.core.model import DiffusionModel
from trajdiff.core.training import TrainConfig, TrainData, Trainer
from trajdiff.core.window_source import WindowIndex, WindowSource
from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.timeseries.encoder import SeriesEncoder
from trajdiff.plugins.timeseries.linear import _windows

TINY = {"kind": "transformer", "width": 32, "depth": 2, "heads": 2}
HISTORY, LENGTH = 8, 16


def _episodes(seed: int = 0) -> Episodes:
    rng = np.random.default_rng(seed)
    sequences = [np.cumsum(rng.standard_normal((n, 2)), axis=0) for n in (40, 10, 75, 16)]
    return Episodes(sequences, ["a", "b"], meta=[{"kind": k} for k in ("x", "y", "y", "x")])


def test_the_window_index_is_every_window_in_order_without_a_list() -> None:
    lengths = [5, 30, 2, 17, 16]
    for length, stride in [(4, 1), (4, 3), (16, 2), (30, 7)]:
        index = WindowIndex(lengths, length, stride)
        expected = [(i, s) for i, t in enumerate(lengths) if t >= length for s in range(0, t - length + 1, stride)]
        assert list(index) == expected and len(index) == len(expected)
        episodes, starts = index.locate(np.arange(len(index)))
        assert list(zip(episodes.tolist(), starts.tolist(), strict=True)) == expected
        assert index[-1] == expected[-1] and index[0] == expected[0]
    with pytest.raises(IndexError):
        WindowIndex(lengths, 4).locate(np.asarray([10_000]))


def _source(episodes: Episodes, encoder: SeriesEncoder, *, augment: bool, labels: bool) -> WindowSource:
    per_episode = np.asarray([0, 1, 1, 0]) if labels else None
    source, _ = window_source(episodes, encoder, HISTORY, LENGTH, 3, augment=(lambda w: np.concatenate([w, -w]))
                              if augment else None, labels=per_episode, classes=2 if labels else 0)
    return source


@pytest.mark.parametrize("augment, labels", [(False, False), (True, True)])
def test_a_window_source_gives_the_batches_of_the_materialized_windows(augment: bool, labels: bool) -> None:
    episodes = _episodes()
    encoder = SeriesEncoder(patch=4).fit(episodes)
    x, index, _ = encode_windows(episodes, encoder, HISTORY, LENGTH, 3)
    source = _source(episodes, encoder, augment=augment, labels=labels)
    materialized = np.concatenate([x, -x]) if augment else x
    assert source.shape == materialized.shape and np.array_equal(np.asarray(source), materialized)
    assert np.array_equal(source[5], materialized[5]) and np.array_equal(source[[7, 2], :1], materialized[[7, 2], :1])
    cond = None
    if labels:
        per_window = np.asarray([[0, 1, 1, 0][e] for e, _ in index])
        cond = torch.nn.functional.one_hot(torch.from_numpy(np.tile(per_window, 2)), 2).float()
        assert np.array_equal(source.all_labels(), np.tile(per_window, 2))
    network = {**TINY, "dim": source.dim, **({"cond_dim": 2} if labels else {})}
    config = dict(steps=6, batch_size=8, warmup_steps=1, history=HISTORY // 4, seed=3, progress=False)
    trainers = []
    for data in (TrainData(torch.from_numpy(materialized), cond=cond), source):
        torch.manual_seed(0)
        model = DiffusionModel(network, schedule="cosine", parametrization="v")
        trainers.append(Trainer(model, data, TrainConfig(**config, cond_dropout=0.2 if labels else 0.0)))
    for _ in range(3):  # the same positions, levels, windows and conditions for the same seed
        for a, b in zip(trainers[0]._batch(), trainers[1]._batch(), strict=True):
            assert (a is None and b is None) or torch.equal(a, b)
    for trainer in trainers:
        trainer.fit()
    weights = [trainer.model.network.state_dict() for trainer in trainers]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])  # bit-identical training


def test_a_window_source_over_fifty_million_windows_allocates_nothing_per_window() -> None:
    rows = np.broadcast_to(np.arange(2.0), (50_000_000, 2))  # a view: no memory of its own
    encoded = []

    def encode(window: np.ndarray) -> np.ndarray:
        encoded.append(1)
        return np.asarray(window, dtype=np.float32).reshape(8, -1)

    tracemalloc.start()
    try:
        source = WindowSource([rows, rows[:1000]], WindowIndex([len(rows), 1000], 64), encode)
        built = tracemalloc.get_traced_memory()[1]
        x, cond, valid = source.take(torch.randint(len(source), (32,), generator=torch.Generator().manual_seed(0)))
        drawn = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(source) == 50_000_000 - 63 + 1000 - 63 and x.shape == (32, 8, 16) and cond is None and valid is None
    assert built < 100_000  # bytes: a probe window and one offset per episode, nothing per window
    assert drawn < 1_000_000  # one batch of windows
    assert len(encoded) == 2 + 32  # the probe, then only the windows drawn
    assert source.describe()["windows_drawn"]["draws"] == 32


def test_an_augmentation_that_is_not_whole_copies_is_refused() -> None:
    episodes = _episodes()
    encoder = SeriesEncoder(patch=4).fit(episodes)
    with pytest.raises(ConfigError, match="not whole copies"):
        window_source(episodes, encoder, HISTORY, LENGTH, 3, augment=lambda w: w[:1])
    with pytest.raises(DataError, match="history 8 \\+ horizon 192"):
        window_source(episodes, encoder, HISTORY, 200, 3)


def test_the_fingerprint_follows_the_data_and_options_without_encoding(tmp_path: Path) -> None:
    episodes, encoder = _episodes(), None
    encoder = SeriesEncoder(patch=4).fit(episodes)

    def fingerprint(eps: Episodes, stride: int = 3, patch: int = 4) -> str:
        fitted = SeriesEncoder(patch=patch).fit(eps)
        source, _ = window_source(eps, fitted, HISTORY, LENGTH, stride)
        return data_fingerprint(eps, source, fitted.state_dict(), HISTORY)

    same = fingerprint(_episodes())
    assert fingerprint(episodes) == same and len(same) == 64
    changed = _episodes()
    changed.sequences[2][70, 1] += 1e-9
    assert fingerprint(changed) != same
    assert fingerprint(episodes, stride=2) != same and fingerprint(episodes, patch=8) != same
    assert data_fingerprint(episodes, _source(episodes, encoder, augment=True, labels=False),
                            encoder.state_dict(), HISTORY) != data_fingerprint(
        episodes, _source(episodes, encoder, augment=False, labels=False), encoder.state_dict(), HISTORY)
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"metadata": {"data_fingerprint": same}}))
    _check_same_data(out, same)
    with pytest.raises(DataError, match="trained on other data"):
        _check_same_data(out, fingerprint(changed))
    (out / "config.json").write_text(json.dumps({"metadata": {"data_sha256": "ab" * 32}}))  # before fingerprints
    with pytest.warns(UserWarning, match="without checking"):
        _check_same_data(out, same)


def test_api_train_records_windows_drawn_from_the_whole_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    episodes = Episodes([np.cumsum(rng.standard_normal((600, 2)), axis=0)], ["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = api.train("timeseries", episodes, tmp_path / "m", steps=20, history=16, horizon=16, batch_size=32,
                            network=TINY, encoder={"patch": 8}, progress=False)
    metadata = json.loads((tmp_path / "m" / "config.json").read_text())["metadata"]
    assert summary.windows == metadata["windows"] == 600 - 32 + 1
    assert metadata["window_range"] == [[0, 0], [0, 568]] and len(metadata["data_fingerprint"]) == 64
    drawn = metadata["windows_drawn"]
    assert drawn["draws"] == 20 * 32 and drawn["first"][1] < 60 and drawn["last"][1] > 500


def test_the_linear_forecaster_draws_its_sample_without_making_every_window() -> None:
    rng = np.random.default_rng(2)
    series = [rng.standard_normal((n, 3)) for n in (50, 7, 300, 120)]
    length = 12
    views = [np.lib.stride_tricks.sliding_window_view(v, length, axis=0).reshape(-1, length)
             for v in series if len(v) >= length]
    every = np.concatenate(views)  # the pairs as they were made before: all of them, then a sample
    for limit in (None, 100, 10**6):
        keep = np.arange(len(every))
        if limit is not None and len(every) > limit:
            keep = np.random.default_rng(0).choice(len(every), limit, replace=False)
        x, y = _windows(series, 8, 4, limit)
        assert np.array_equal(x, every[keep, :8]) and np.array_equal(y, every[keep, 8:])


def test_forecasts_are_sampled_a_chunk_at_a_time_from_one_noise_stream(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    episodes = Episodes([np.cumsum(rng.standard_normal((300, 2)), axis=0)], ["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api.train("timeseries", episodes, tmp_path / "m", steps=5, history=16, horizon=8, batch_size=16,
                  network=TINY, encoder={"patch": 8}, progress=False)
    loaded = api.load_model(tmp_path / "m")
    history = episodes.sequences[0][-16:]
    futures, frames = forecast_histories(loaded, [history] * 5, samples=2, nfe=2, seed=1, chunk=2, progress=False)
    again, _ = forecast_histories(loaded, [history] * 5, samples=2, nfe=2, seed=1, chunk=2, progress=False)
    assert futures.shape == (2, 5, 8, 2) and len(frames) == 5 and np.array_equal(futures, again)
    assert not np.array_equal(futures[:, 0], futures[:, 2])  # the second chunk does not repeat the first's noise
    whole, _ = forecast_histories(loaded, [history] * 2, samples=2, nfe=2, seed=1, progress=False)
    assert np.array_equal(whole, futures[:, :2])  # the first chunk is what one call for it gives
    rolled, _ = forecast_histories(loaded, [history] * 3, samples=2, nfe=2, seed=1, horizon=20, chunk=2,
                                   progress=False)
    assert rolled.shape == (2, 3, 20, 2) and np.isfinite(rolled).all()
