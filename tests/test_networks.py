"""Tests for the denoiser networks: shapes, level/condition/causality behaviour, configs, errors."""

from __future__ import annotations

import json

import pytest
import torch

from trajdiff.core.networks import TemporalTransformer, TemporalUNet, build_network
from trajdiff.errors import ConfigError, ShapeError

torch.set_num_threads(1)

D, C = 3, 5

TOKEN_KINDS = ["unet", "transformer"]  # networks for any window length (tests/test_window_mlp.py has the window MLP)
SMALL = {
    "unet": {"kind": "unet", "dim": D, "width": 16, "mults": [1, 2, 2], "emb_dim": 32},
    "transformer": {"kind": "transformer", "dim": D, "width": 32, "depth": 2, "heads": 4},
}


def small(kind: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network({**SMALL[kind], **overrides}).eval()


def perturb(net: torch.nn.Module, scale: float = 0.1) -> torch.nn.Module:
    """Move every weight off its init (zero-init layers would otherwise hide every input)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return net


def inputs(batch: int = 2, length: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, D, generator=gen), torch.rand(batch, length, generator=gen)


@pytest.mark.parametrize("kind", TOKEN_KINDS)
@pytest.mark.parametrize("length", [1, 2, 7, 13, 16, 33])
def test_output_shape_any_length(kind: str, length: int) -> None:
    net = small(kind)
    x, k = inputs(length=length)
    out = net(x, k)
    assert out.shape == x.shape
    assert torch.all(out == 0), "zero-initialised output layer should give 0 at init"


def test_unet_default_constructor_runs() -> None:
    torch.manual_seed(0)
    net = TemporalUNet(D)
    x, k = inputs(length=13)
    assert net(x, k).shape == (2, 13, D)


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_per_token_level_changes_output(kind: str) -> None:
    net = perturb(small(kind))
    x, k = inputs(length=12)
    k2 = k.clone()
    k2[0, 5] = 1.0 - k[0, 5]
    out, out2 = net(x, k), net(x, k2)
    assert not torch.allclose(out[0, 5], out2[0, 5], atol=1e-5)
    assert torch.allclose(out[1], out2[1], atol=1e-6), "other samples must be unaffected"


@pytest.mark.parametrize("causal", [True, False])
def test_transformer_causality(causal: bool) -> None:
    net = perturb(small("transformer", causal=causal))
    x, k = inputs(length=10)
    t = 4
    x2, k2 = x.clone(), k.clone()
    x2[:, t + 1 :] += torch.randn_like(x2[:, t + 1 :])
    k2[:, t + 1 :] = torch.rand_like(k2[:, t + 1 :])
    out, out2 = net(x, k), net(x2, k2)
    past_same = torch.allclose(out[:, : t + 1], out2[:, : t + 1], atol=1e-5)
    assert past_same is causal
    assert not torch.allclose(out[:, t + 1 :], out2[:, t + 1 :], atol=1e-5)


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_cond_and_cond_drop(kind: str) -> None:
    net = perturb(small(kind, cond_dim=C))
    x, k = inputs(batch=3)
    cond = torch.randn(3, C)
    with_cond = net(x, k, cond)
    uncond = net(x, k)
    assert not torch.allclose(with_cond, uncond, atol=1e-5), "the condition should matter"
    keep = torch.zeros(3, dtype=torch.bool)
    assert torch.allclose(net(x, k, cond, keep), with_cond, atol=1e-6)
    drop = torch.tensor([False, True, False])
    mixed = net(x, k, cond, drop)
    assert torch.allclose(mixed[1], uncond[1], atol=1e-6), "dropped sample must equal cond=None"
    assert torch.allclose(mixed[[0, 2]], with_cond[[0, 2]], atol=1e-6)


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_config_round_trip_through_json(kind: str) -> None:
    net = perturb(small(kind, cond_dim=C))
    config = json.loads(json.dumps(net.config))
    assert config == net.config
    rebuilt = build_network(config).eval()
    assert rebuilt.config == net.config
    shapes = {n: p.shape for n, p in net.state_dict().items()}
    assert {n: p.shape for n, p in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(net.state_dict())
    x, k = inputs(length=9)
    cond = torch.randn(2, C)
    assert torch.equal(rebuilt(x, k, cond), net(x, k, cond))


def test_default_configs_are_complete() -> None:
    assert TemporalUNet(2).config == {
        "kind": "unet",
        "dim": 2,
        "cond_dim": 0,
        "width": 64,
        "mults": [1, 2, 4],
        "kernel_size": 5,
        "emb_dim": 128,
    }
    assert TemporalTransformer(2).config == {
        "kind": "transformer",
        "dim": 2,
        "cond_dim": 0,
        "width": 128,
        "depth": 4,
        "heads": 4,
        "causal": False,
        "dropout": 0.0,
    }


@pytest.mark.parametrize("kind", TOKEN_KINDS)
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda x, k: (x[0], k), r"x must have shape \[batch, time, 3\].*got \(8, 3\)"),
        (lambda x, k: (torch.randn(2, 8, 4), k), r"4 features per token.*dim=3"),
        (lambda x, k: (x.long(), k), r"x must be a floating-point.*x\.float\(\)"),
        (lambda x, k: (x, k[:, :5]), r"k \(per-token noise level\) must have shape \[2, 8\].*got \(2, 5\)"),
        (lambda x, k: (x, k[0]), r"must have shape \[2, 8\].*got \(8,\)"),
        (lambda x, k: (x, (k * 1000).long()), r"k must be a floating-point"),
    ],
)
def test_bad_inputs_raise_shape_error(kind: str, make, match: str) -> None:
    net = small(kind)
    x, k = make(*inputs())
    with pytest.raises(ShapeError, match=match):
        net(x, k)


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_bad_cond_raises_shape_error(kind: str) -> None:
    x, k = inputs()
    with pytest.raises(ShapeError, match="cond_dim=0.*pass cond=None"):
        small(kind)(x, k, torch.randn(2, C))
    net = small(kind, cond_dim=C)
    with pytest.raises(ShapeError, match=r"cond must have shape \[2, 5\].*got \(2, 4\)"):
        net(x, k, torch.randn(2, 4))
    with pytest.raises(ShapeError, match="cond must be floating-point"):
        net(x, k, torch.ones(2, C, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"cond_drop must have shape \[2\]"):
        net(x, k, torch.randn(2, C), torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ShapeError, match="cond_drop must be a bool tensor"):
        net(x, k, torch.randn(2, C), torch.zeros(2))


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"kind": "mlp", "dim": 2}, "unknown network kind 'mlp'; valid kinds: transformer, unet"),
        ({"dim": 2}, "unknown network kind None; valid kinds"),
        ({"kind": "unet", "dim": 2, "depth": 3}, r"unknown argument\(s\) depth.*valid arguments: dim, cond"),
        ({"kind": "transformer", "dim": 2, "mults": [1]}, r"unknown argument\(s\) mults.*heads"),
        ({"kind": "unet"}, r"needs argument\(s\) dim"),
        ({"kind": "unet", "dim": 0}, "dim must be a positive integer, got 0"),
        ({"kind": "unet", "dim": 2, "kernel_size": 4}, "kernel_size must be odd"),
        ({"kind": "unet", "dim": 2, "mults": []}, "mults must be a non-empty list"),
        ({"kind": "transformer", "dim": 2, "width": 30, "heads": 4}, "divisible by heads"),
        ({"kind": "transformer", "dim": 2, "dropout": 1.5}, r"dropout must be a number in \[0, 1\)"),
        ({"kind": "transformer", "dim": 2, "cond_dim": -1}, "cond_dim must be an integer >= 0"),
    ],
)
def test_bad_configs_raise_config_error(config: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_network(config)


def test_non_dict_config_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="must be a dict"):
        build_network(["unet"])  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_tiny_overfit(kind: str) -> None:
    net = small(kind).train()
    gen = torch.Generator().manual_seed(2)
    x, k = torch.randn(4, 16, D, generator=gen), torch.rand(4, 16, generator=gen)
    target = torch.randn(4, 16, D, generator=gen)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = None
    for _ in range(200):
        loss = (net(x, k) - target).square().mean()
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = (net(x, k) - target).square().mean().item()
    assert final < first / 10, f"loss only went from {first:.4f} to {final:.4f}"


def test_distinct_levels_reduces_only_repeated_axes() -> None:
    from trajdiff.core.networks.embeddings import distinct_levels

    step = torch.tensor([[0.0, 0.0, 0.4], [0.0, 0.0, 0.4]])  # a sampler step: the same levels for every sequence
    assert distinct_levels(step, per_sample_condition=False).shape == (1, 3)
    assert distinct_levels(step, per_sample_condition=True).shape == (2, 3)
    window = torch.tensor([[0.3, 0.3, 0.3], [0.7, 0.7, 0.7]])  # one level per window
    assert distinct_levels(window, per_sample_condition=False).shape == (2, 1)
    assert distinct_levels(window, per_sample_condition=False, along_time=False).shape == (2, 3)
    mixed = torch.tensor([[0.3, 0.1, 0.3], [0.7, 0.7, 0.2]])
    assert torch.equal(distinct_levels(mixed, per_sample_condition=False), mixed)


@pytest.mark.parametrize("kind", TOKEN_KINDS)
@pytest.mark.parametrize("levels", ["sampler step", "one per window"])
@pytest.mark.parametrize("with_cond", [False, True])
def test_shared_level_embedding_gives_the_per_token_result(kind: str, levels: str, with_cond: bool,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedding repeated levels once and broadcasting them is an optimisation only: same output as per token."""
    import importlib

    net = perturb(small(kind, cond_dim=C if with_cond else 0))
    x, _ = inputs(batch=4, length=12)
    if levels == "sampler step":
        k = torch.linspace(0.0, 0.9, 12).expand(4, 12).contiguous()
    else:
        k = torch.tensor([0.1, 0.4, 0.6, 0.95])[:, None].expand(4, 12).contiguous()
    cond = torch.randn(4, C, generator=torch.Generator().manual_seed(2)) if with_cond else None
    shared = net(x, k, cond)
    module = importlib.import_module(type(net).__module__)
    monkeypatch.setattr(module, "distinct_levels", lambda k, **_: k)
    per_token = net(x, k, cond)
    assert torch.allclose(shared, per_token, atol=1e-5)
    assert shared.abs().max() > 1e-3  # the perturbed network responds to its inputs
