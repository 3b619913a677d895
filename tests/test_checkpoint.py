from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

import trajdiff
from trajdiff.core.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from trajdiff.core.optimizer_state import restore_optimizer
from trajdiff.errors import CheckpointError, ConfigError, TrajdiffError


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 3))


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 4, generator=g)
        y = torch.randn(16, 3, generator=g)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _save_basic(path: Path, **kwargs) -> Path:
    model = _model()
    return save_checkpoint(
        path, config={"hidden": 8, "name": "toy"}, tensors={"weights": model.state_dict()}, **kwargs
    )


def _assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k].reshape(-1).view(torch.uint8), b[k].reshape(-1).view(torch.uint8)), k


def test_round_trip_module_state_is_bit_identical(tmp_path: Path) -> None:
    model = _model()
    ema = _model(seed=1)
    extra = {"ints": torch.arange(5), "half": torch.randn(3, 2).half(), "scalar": torch.tensor(2.5)}
    out = save_checkpoint(
        tmp_path / "m",
        config={"hidden": 8, "layers": [4, 8, 3]},
        tensors={"weights": model.state_dict(), "ema": ema.state_dict(), "extra": extra},
        metrics={"loss": 0.25, "nan_loss": float("nan")},
        step=17,
    )
    assert out == (tmp_path / "m").absolute()
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "ema.safetensors",
        "extra.safetensors",
        "metrics.json",
        "weights.safetensors",
    ]
    ckpt = load_checkpoint(out)
    assert isinstance(ckpt, Checkpoint)
    _assert_bit_identical(model.state_dict(), ckpt.tensors["weights"])
    _assert_bit_identical(ema.state_dict(), ckpt.tensors["ema"])
    _assert_bit_identical(extra, ckpt.tensors["extra"])
    assert ckpt.config == {"hidden": 8, "layers": [4, 8, 3]}
    assert ckpt.step == 17
    assert ckpt.metrics is not None and ckpt.metrics["loss"] == 0.25
    assert ckpt.optimizer_state is None
    assert ckpt.trajdiff_version == trajdiff.__version__

    raw = json.loads((out / "config.json").read_text())
    assert raw["format"] == "trajdiff-model" and raw["format_version"] == 1 and raw["step"] == 17
    assert set(raw["files"]) == {
        "weights.safetensors",
        "ema.safetensors",
        "extra.safetensors",
        "metrics.json",
    }
    assert raw["files"]["weights.safetensors"]["bytes"] == (out / "weights.safetensors").stat().st_size

    fresh = _model(seed=5)
    fresh.load_state_dict(ckpt.tensors["weights"])
    _assert_bit_identical(model.state_dict(), fresh.state_dict())


def test_tied_weights_are_saved(tmp_path: Path) -> None:
    w = torch.randn(3, 3)
    save_checkpoint(tmp_path / "m", config={}, tensors={"weights": {"a": w, "b": w, "row": w[0]}})
    t = load_checkpoint(tmp_path / "m").tensors["weights"]
    assert torch.equal(t["a"], w) and torch.equal(t["b"], w) and torch.equal(t["row"], w[0])


def test_optimizer_round_trip_continues_identically(tmp_path: Path) -> None:
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1)
    _train(model, opt, steps=4, seed=0)
    save_checkpoint(tmp_path / "m", config={}, tensors={"weights": model.state_dict()}, optimizer=opt, step=4)
    assert (tmp_path / "m" / "optimizer.safetensors").is_file()
    opt_json = json.loads((tmp_path / "m" / "optimizer.json").read_text())
    assert opt_json["class"] == "AdamW"

    ckpt = load_checkpoint(tmp_path / "m")
    assert ckpt.optimizer_state is not None
    model2 = _model(seed=9)
    model2.load_state_dict(ckpt.tensors["weights"])
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1.0)  # hyper-parameters come from the checkpoint
    restore_optimizer(opt2, ckpt.optimizer_state)
    assert opt2.param_groups[0]["lr"] == 1e-2
    assert tuple(opt2.param_groups[0]["betas"]) == (0.8, 0.95)

    _train(model, opt, steps=1, seed=1)
    _train(model2, opt2, steps=1, seed=1)
    for (name, p1), p2 in zip(model.named_parameters(), model2.parameters(), strict=True):
        assert torch.equal(p1, p2), name


def test_restore_optimizer_mismatches(tmp_path: Path) -> None:
    model = _model()
    opt = torch.optim.AdamW(model.parameters())
    _train(model, opt, steps=1, seed=0)
    save_checkpoint(tmp_path / "m", config={}, tensors={"weights": model.state_dict()}, optimizer=opt)
    state = load_checkpoint(tmp_path / "m").optimizer_state
    with pytest.raises(CheckpointError, match="AdamW"):
        restore_optimizer(torch.optim.SGD(model.parameters(), lr=0.1), state)
    with pytest.raises(CheckpointError, match="same model"):
        restore_optimizer(torch.optim.AdamW(nn.Linear(2, 2).parameters()), state)
    _save_basic(tmp_path / "no_opt")
    with pytest.raises(CheckpointError, match="no optimizer state"):
        restore_optimizer(opt, load_checkpoint(tmp_path / "no_opt").optimizer_state)


def test_truncated_safetensors(tmp_path: Path) -> None:
    path = _save_basic(tmp_path / "m")
    f = path / "weights.safetensors"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"weights\.safetensors.*truncated.*re-copy it or re-train"):
        load_checkpoint(path)


def test_flipped_bytes(tmp_path: Path) -> None:
    path = _save_basic(tmp_path / "m")
    f = path / "weights.safetensors"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"weights\.safetensors.*sha256.*corrupt"):
        load_checkpoint(path)


def test_unparsable_safetensors_with_matching_hash_is_wrapped(tmp_path: Path) -> None:
    path = _save_basic(tmp_path / "m")
    f = path / "weights.safetensors"
    f.write_bytes(b"not a safetensors file at all")
    cfg = json.loads((path / "config.json").read_text())
    import hashlib

    cfg["files"]["weights.safetensors"] = {"sha256": hashlib.sha256(f.read_bytes()).hexdigest(), "bytes": 29}
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"weights\.safetensors is not a readable safetensors file"):
        load_checkpoint(path)


def test_missing_listed_file(tmp_path: Path) -> None:
    path = _save_basic(tmp_path / "m", metrics={"loss": 1.0})
    (path / "metrics.json").unlink()
    with pytest.raises(CheckpointError, match=r"metrics\.json.*missing"):
        load_checkpoint(path)


def test_missing_config(tmp_path: Path) -> None:
    path = _save_basic(tmp_path / "m")
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json is missing"):
        load_checkpoint(path)


def test_garbage_config(tmp_path: Path) -> None:
    path = _save_basic(tmp_path / "m")
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json is not valid JSON.*line 1"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [("format", "something-else", "not a trajdiff model"), ("format_version", 99, "format_version 99")],
)
def test_wrong_format(tmp_path: Path, key: str, value: object, pattern: str) -> None:
    path = _save_basic(tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    cfg[key] = value
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(path)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"does not exist.*trajdiff train"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        load_checkpoint(tmp_path / "file")


def test_errors_are_trajdiff_errors(tmp_path: Path) -> None:
    with pytest.raises(TrajdiffError):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="reserved"):
        save_checkpoint(tmp_path / "m", config={"step": 3}, tensors={})
    with pytest.raises(ConfigError, match="not a tensor"):
        save_checkpoint(tmp_path / "m", config={}, tensors={"weights": {"a": 1.0}})
    with pytest.raises(ConfigError, match="cannot be a file name"):
        save_checkpoint(tmp_path / "m", config={}, tensors={"../evil": {}})
    with pytest.raises(ConfigError, match="JSON"):
        save_checkpoint(tmp_path / "m", config={"f": object()}, tensors={})
    assert not any(tmp_path.iterdir())  # failed saves leave nothing behind


def test_load_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    opt = torch.optim.AdamW(model.parameters())
    _train(model, opt, steps=2, seed=0)
    save_checkpoint(tmp_path / "m", config={"a": 1}, tensors={"weights": model.state_dict()}, optimizer=opt)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickling attempted")

    class ForbiddenUnpickler:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", ForbiddenUnpickler)
    monkeypatch.setattr(torch, "load", forbidden)

    ckpt = load_checkpoint(tmp_path / "m")
    model2 = _model(seed=3)
    model2.load_state_dict(ckpt.tensors["weights"])
    opt2 = torch.optim.AdamW(model2.parameters())
    restore_optimizer(opt2, ckpt.optimizer_state)
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_atomic_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "m"
    save_checkpoint(
        path, config={"v": 1}, tensors={"weights": {"w": torch.zeros(2)}, "ema": {"w": torch.ones(2)}}
    )
    save_checkpoint(path, config={"v": 2}, tensors={"weights": {"w": torch.full((3,), 7.0)}}, step=5)
    ckpt = load_checkpoint(path)
    assert ckpt.config == {"v": 2} and ckpt.step == 5
    assert set(ckpt.tensors) == {"weights"}  # files of the old model do not linger
    assert torch.equal(ckpt.tensors["weights"]["w"], torch.full((3,), 7.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary or old directories


def test_refuses_to_replace_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(CheckpointError, match="refusing to replace"):
        save_checkpoint(tmp_path, config={}, tensors={"weights": {"w": torch.zeros(1)}})
    assert (tmp_path / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_interrupted_save_leaves_old_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save_basic(tmp_path / "m")
    import trajdiff.core.checkpoint as ck

    def boom(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ck, "write_json", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, config={"v": 2}, tensors={"weights": {"w": torch.zeros(1)}})
    assert load_checkpoint(path).config == {"hidden": 8, "name": "toy"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_saving_again_keeps_the_users_files_and_drops_stale_checkpoint_files(tmp_path: Path) -> None:
    """A model directory also holds what users wrote there (evaluation.json, plan results): a new
    checkpoint replaces the checkpoint's own files only."""
    model = _model()
    target = tmp_path / "m"
    save_checkpoint(target, config={"a": 1}, tensors={"weights": model.state_dict(), "ema": model.state_dict()})
    (target / "evaluation.json").write_text('{"mse": 0.5}')
    (target / "plots").mkdir()
    (target / "plots" / "f.png").write_bytes(b"png")
    save_checkpoint(target, config={"a": 2}, tensors={"weights": model.state_dict()}, step=3)
    assert (target / "evaluation.json").read_text() == '{"mse": 0.5}'
    assert (target / "plots" / "f.png").read_bytes() == b"png"
    assert not (target / "ema.safetensors").exists()  # stale checkpoint file not carried over
    assert load_checkpoint(target).config["a"] == 2
    assert not list(tmp_path.glob(".m.old-*"))
