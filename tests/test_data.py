from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trajdiff.core.data import Episodes, Normalizer
from trajdiff.core.windows import check_sequence_batch, windows, windows_with_index
from trajdiff.errors import ConfigError, DataError, ShapeError, TrajdiffError


def _episodes(lengths: list[int], d: int = 3, seed: int = 0) -> Episodes:
    rng = np.random.default_rng(seed)
    seqs = [rng.normal(size=(t, d)) * (1 + np.arange(d)) + np.arange(d) for t in lengths]
    return Episodes(
        sequences=seqs,
        columns=[f"c{j}" for j in range(d)],
        ids=[f"ep{i}" for i in range(len(lengths))],
        meta=[{"start": i * 10} for i in range(len(lengths))],
    )


# ------------------------------------------------------------------------------------- Episodes


def test_episodes_basics() -> None:
    ep = _episodes([5, 9, 3])
    assert len(ep) == 3 and ep.lengths == [5, 9, 3] and ep.dim == 3
    assert ep.concat().shape == (17, 3)
    assert np.array_equal(ep.concat()[5:14], ep.sequences[1])
    default = Episodes(sequences=[np.ones((2, 1), dtype=np.int64)], columns=["x"])
    assert default.ids == ["0"] and default.meta == [{}]
    assert default.sequences[0].dtype == np.float64


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_error_names_id_row_column(bad: float) -> None:
    seqs = [np.zeros((4, 3)), np.zeros((6, 3))]
    seqs[1][4, 2] = bad
    with pytest.raises(DataError) as info:
        Episodes(sequences=seqs, columns=["x", "y", "speed"], ids=["a", "walk-7"])
    msg = str(info.value)
    assert "'walk-7'" in msg and "row 4" in msg and "'speed'" in msg and "impute" in msg


def test_episode_validation() -> None:
    with pytest.raises(ShapeError, match=r"'b'.*has 2 columns"):
        Episodes(sequences=[np.zeros((3, 3)), np.zeros((3, 2))], columns=["x", "y", "z"], ids=["a", "b"])
    with pytest.raises(ShapeError, match=r"x\[:, None\]"):
        Episodes(sequences=[np.zeros(3)], columns=["x"])
    with pytest.raises(DataError, match="2 sequences but 1 ids"):
        Episodes(sequences=[np.zeros((3, 1))] * 2, columns=["x"], ids=["a"])
    with pytest.raises(DataError, match="1 meta"):
        Episodes(sequences=[np.zeros((3, 1))] * 2, columns=["x"], meta=[{}])
    with pytest.raises(DataError, match="more than once"):
        Episodes(sequences=[np.zeros((3, 1))] * 2, columns=["x"], ids=["a", "a"])
    with pytest.raises(DataError, match="no rows"):
        Episodes(sequences=[np.zeros((0, 1))], columns=["x"])
    with pytest.raises(DataError, match="dtype"):
        Episodes(sequences=[np.array([["a"]])], columns=["x"])


def test_split_is_disjoint_and_covers_everything() -> None:
    ep = _episodes([4] * 10 + [7] * 7)
    a, b = ep.split(0.7, seed=3)
    assert len(a) == 12 and len(b) == 5
    assert set(a.ids).isdisjoint(b.ids)
    assert sorted(a.ids + b.ids) == sorted(ep.ids)
    for part in (a, b):  # sequences and meta travel with their ids
        for sid, seq, m in zip(part.ids, part.sequences, part.meta, strict=True):
            k = ep.ids.index(sid)
            assert seq is ep.sequences[k] and m == ep.meta[k]
    a2, _ = ep.split(0.7, seed=3)
    assert a2.ids == a.ids
    assert ep.split(0.7, seed=4)[0].ids != a.ids
    tiny_a, tiny_b = _episodes([3, 3]).split(0.99)
    assert len(tiny_a) == 1 and len(tiny_b) == 1
    with pytest.raises(ConfigError):
        ep.split(1.0)
    with pytest.raises(DataError):
        _episodes([3]).split(0.5)


# -------------------------------------------------------------------------------------- windows


@pytest.mark.parametrize(("length", "stride"), [(1, 1), (3, 1), (4, 2), (5, 3), (9, 4), (12, 1)])
def test_window_count_closed_form(length: int, stride: int) -> None:
    lengths = [2, 5, 9, 12, 4, 7]
    ep = _episodes(lengths)
    w = windows_with_index(ep, length, stride)
    expected = sum(max(0, (t - length) // stride + 1) for t in lengths)
    assert w.data.shape == (expected, length, 3) and w.data.dtype == torch.float32
    assert w.skipped == sum(t < length for t in lengths)
    assert w.skipped_ids == [ep.ids[i] for i, t in enumerate(lengths) if t < length]
    assert bool(w.mask.all())
    for row, (i, start) in enumerate(w.index.tolist()):
        want = torch.from_numpy(ep.sequences[i][start : start + length]).float()
        assert torch.equal(w.data[row], want)
        assert start % stride == 0


def test_windows_warns_about_skipped() -> None:
    ep = _episodes([2, 6])
    with pytest.warns(UserWarning, match=r"1 of 2 sequences.*'ep0'.*pad=True"):
        out = windows(ep, 4)
    assert out.shape == (3, 4, 3)


def test_padding_mask() -> None:
    ep = _episodes([2, 6, 4])
    w = windows_with_index(ep, 5, stride=1, pad=True, dtype=torch.float64)
    assert w.skipped == 0 and w.data.shape == (1 + 2 + 1, 5, 3)
    assert w.index.tolist() == [[0, 0], [1, 0], [1, 1], [2, 0]]
    assert w.mask.tolist()[0] == [True, True, False, False, False]
    assert w.mask.tolist()[3] == [True, True, True, True, False]
    assert bool(w.mask[1:3].all())
    short = torch.from_numpy(ep.sequences[0])
    assert torch.equal(w.data[0, :2], short)
    assert torch.equal(w.data[0, 2:], short[-1].expand(3, 3))  # padded by repeating the last row
    assert w.data.dtype == torch.float64


def test_no_window_error() -> None:
    ep = _episodes([3, 7, 5])
    with pytest.raises(DataError, match=r"length 10.*'ep1'.*7 rows"):
        windows(ep, 10)
    with pytest.raises(ConfigError):
        windows(ep, 0)
    with pytest.raises(ConfigError):
        windows(ep, 2, stride=0)


# ----------------------------------------------------------------------------------- Normalizer


@pytest.mark.parametrize("kind", ["standard", "minmax"])
def test_normalizer_round_trip_numpy_and_torch(kind: str) -> None:
    ep = _episodes([50, 80])
    norm = Normalizer(kind).fit(ep)  # type: ignore[arg-type]
    x = ep.concat()
    y = norm.transform(x)
    assert isinstance(y, np.ndarray) and y.dtype == np.float64
    if kind == "standard":
        assert np.allclose(y.mean(0), 0, atol=1e-12) and np.allclose(y.std(0), 1)
    else:
        assert np.allclose(y.min(0), -1) and np.allclose(y.max(0), 1)
    assert np.allclose(norm.inverse(y), x, atol=1e-12)

    t = torch.from_numpy(x).float().reshape(2, 65, 3)  # any [..., D]
    ty = norm.transform(t)
    assert isinstance(ty, torch.Tensor) and ty.dtype == torch.float32 and ty.shape == t.shape
    assert torch.allclose(ty.reshape(-1, 3), torch.from_numpy(y).float(), atol=1e-5)
    assert torch.allclose(norm.inverse(ty), t, atol=1e-5)
    x32 = x.astype(np.float32)
    assert norm.transform(x32).dtype == np.float32


def test_normalizer_constant_column_does_not_explode() -> None:
    x = np.column_stack([np.linspace(0, 1, 20), np.full(20, 0.1), np.full(20, 1234.5)])
    for kind in ("standard", "minmax"):
        y = Normalizer(kind).fit(x).transform(x)  # type: ignore[arg-type]
        assert np.isfinite(y).all() and np.abs(y[:, 1:]).max() < 1e-6


def test_normalizer_state_json_round_trip() -> None:
    norm = Normalizer("minmax").fit(np.random.default_rng(1).normal(size=(100, 4)))
    state = json.loads(json.dumps(norm.state_dict()))
    again = Normalizer.from_state(state)
    x = np.random.default_rng(2).normal(size=(7, 4))
    assert np.array_equal(again.transform(x), norm.transform(x))
    assert again.kind == "minmax" and again.dim == 4
    with pytest.raises(ConfigError, match="scale"):
        Normalizer.from_state({**state, "scale": [1.0, 0.0, 1.0, 1.0]})


def test_normalizer_errors() -> None:
    with pytest.raises(TrajdiffError, match="not fitted"):
        Normalizer().transform(np.zeros((2, 3)))
    with pytest.raises(ConfigError):
        Normalizer("robust")  # type: ignore[arg-type]
    norm = Normalizer().fit(np.random.default_rng(0).normal(size=(10, 3)))
    with pytest.raises(ShapeError, match="last dimension must be 3"):
        norm.transform(np.zeros((4, 2)))
    with pytest.raises(ShapeError, match="last dimension must be 3"):
        norm.inverse(torch.zeros(4, 5))
    with pytest.raises(DataError):
        Normalizer().fit(np.array([[1.0], [np.nan]]))


# ---------------------------------------------------------------------------- check_sequence_batch


def test_check_sequence_batch() -> None:
    x = torch.randn(2, 5, 3)
    assert check_sequence_batch(x, dim=3) is x
    with pytest.raises(ShapeError, match=r"unsqueeze\(0\)"):
        check_sequence_batch(torch.randn(5, 3))
    with pytest.raises(ShapeError, match=r"cond.*float\(\)"):
        check_sequence_batch(torch.ones(2, 5, 3, dtype=torch.long), name="cond")
    with pytest.raises(ShapeError, match="4 are expected"):
        check_sequence_batch(x, dim=4)
    with pytest.raises(ShapeError, match="torch.Tensor"):
        check_sequence_batch(np.zeros((2, 5, 3)))
    x[1, 3, 2] = float("nan")
    with pytest.raises(DataError, match="batch 1, time step 3, feature 2"):
        check_sequence_batch(x)
