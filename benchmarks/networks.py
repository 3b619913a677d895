"""Network speed and sampler-loop overhead.

(a) Time per function evaluation (a forward pass without gradients) of TemporalUNet and
    TemporalTransformer at their default sizes, batch 1 and 64, T = 64 tokens, D = 8 features.
(b) The sampler loop's own overhead per step, beside diffusers' DPMSolverMultistepScheduler driving
    the same tiny network (one nn.Linear applied per token) in the same process:

        ours   = plans.full_sequence(T, N) + samplers.sample(network_denoiser(net, linear, "eps"), x, ...,
                 solver="dpmpp2m")
        theirs = scheduler.set_timesteps(N); for t in scheduler.timesteps: x = scheduler.step(net(x), t, x).prev_sample
        bare   = N calls of net(x)

    overhead per step = (loop time - bare time) / N, for each; the three are timed in interleaved
    rounds (rotating order) so that slow phases of a shared machine hit all of them alike, and the
    ratio ours / theirs is taken within each round (median over rounds). Our figure includes the
    denoiser adapter (`network_denoiser`: input scaling and eps -> (x0, eps)), as diffusers' step
    includes its own eps -> x0 conversion. ``adapter_per_step`` isolates that adapter's share.

(c) Noise levels shared by every sequence of a batch (a sampler step) or by every token of a window
    (one level per window in training): the networks embed each distinct level row once and broadcast
    it (`embeddings.distinct_levels`). Timed against the same call with that reduction switched off
    (every token embedded and modulated on its own), interleaved, batch 64, T = 20, D = 22 (the ETH/UCY
    model: width 64, depth 3) and the default networks at T = 64, D = 8.

    .venv/bin/python benchmarks/networks.py             # full run, writes benchmarks/results/networks.json
    .venv/bin/python benchmarks/networks.py --quick     # smoke run, temp file
    .venv/bin/python benchmarks/networks.py --profile   # cProfile of our loop (N = 50, batch 1), printed
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, markdown_table, median, results_path, timeit, write_results  # noqa: E402

from trajdiff.core import plans, samplers  # noqa: E402
from trajdiff.core.denoiser import network_denoiser  # noqa: E402
from trajdiff.core.networks import TemporalTransformer, TemporalUNet  # noqa: E402
from trajdiff.core.schedules import build_schedule  # noqa: E402

NAME = "networks"
COMMAND = ".venv/bin/python benchmarks/networks.py"
T, D = 64, 8
BATCHES = [1, 64]
STEPS = [10, 50]


class TinyNet(nn.Module):
    """One nn.Linear(D, D) applied per token; ignores the level (network cost kept negligible)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        nn.init.normal_(self.linear.weight, std=0.1 / dim**0.5)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor, k: torch.Tensor | None = None, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(x)


def forward_pass_rows(quick: bool) -> list[dict[str, Any]]:
    rows = []
    for name, cls in (("TemporalUNet", TemporalUNet), ("TemporalTransformer", TemporalTransformer)):
        torch.manual_seed(0)
        net = cls(dim=D).eval()
        params = sum(p.numel() for p in net.parameters())
        for batch in BATCHES:
            x = torch.randn(batch, T, D)
            k = torch.rand(batch, T)

            def forward(net=net, x=x, k=k) -> None:
                with torch.no_grad():
                    net(x, k)

            once = time_probe(forward)
            number = max(1, int(0.05 / once))  # ~50 ms per timing
            repeats = 3 if quick else 15
            timing = timeit(forward, repeats=repeats, warmup=3, number=number)
            rows.append(
                {
                    "method": "trajdiff",
                    "part": "forward",
                    "network": name,
                    "params": params,
                    "batch": batch,
                    "tokens": T,
                    "dim": D,
                    "threads": torch.get_num_threads(),
                    "ms_per_nfe": 1e3 * timing["median"],
                    "ms_min": 1e3 * timing["min"],
                    "ms_max": 1e3 * timing["max"],
                    "repeats": repeats,
                    "calls_per_repeat": number,
                    "samples_per_s": batch / timing["median"],
                }
            )
    return rows


def shared_level_rows(quick: bool) -> list[dict[str, Any]]:
    """(c): one forward pass with levels shared across the batch (a sampler step with 8 clean context
    tokens) or along each window, with and without embedding each distinct level row once."""
    import trajdiff.core.networks.transformer as transformer_module
    import trajdiff.core.networks.unet as unet_module

    cases = [("TemporalTransformer (ETH/UCY size)", lambda: TemporalTransformer(dim=22, width=64, depth=3), 20, 22,
              transformer_module),
             ("TemporalTransformer", lambda: TemporalTransformer(dim=D), T, D, transformer_module),
             ("TemporalUNet", lambda: TemporalUNet(dim=D), T, D, unet_module)]
    rows = []
    for name, make, length, dim, module in cases:
        torch.manual_seed(0)
        net = make().eval()
        x = torch.randn(64, length, dim)
        step = torch.full((64, length), 0.4)
        step[:, :8] = 0.0
        window = torch.rand(64, 1).expand(64, length).contiguous()
        variants = [("sampler step", step), ("one per window", window)]
        for levels, k in variants if module is transformer_module else variants[:1]:  # the U-Net: batch axis only
            reduce = module.distinct_levels

            def shared(net=net, x=x, k=k) -> None:
                with torch.no_grad():
                    net(x, k)

            def per_token(net=net, x=x, k=k, module=module, reduce=reduce) -> None:
                module.distinct_levels = lambda k, **_: k
                try:
                    with torch.no_grad():
                        net(x, k)
                finally:
                    module.distinct_levels = reduce

            times = interleaved({"shared": shared, "per_token": per_token}, repeats=5 if quick else 30)
            ratios = [a / b for a, b in zip(times["per_token"], times["shared"], strict=True)]
            rows.append({"method": "trajdiff", "part": "shared_levels", "network": name, "levels": levels,
                         "batch": 64, "tokens": length, "dim": dim,
                         "ms_shared": 1e3 * median(times["shared"]), "ms_per_token": 1e3 * median(times["per_token"]),
                         "speedup": median(ratios), "repeats": len(ratios)})
    return rows


def time_probe(fn) -> float:
    fn()
    start = time.perf_counter()
    fn()
    return max(time.perf_counter() - start, 1e-6)


def loop_fns(steps: int, batch: int):
    """The three timed callables (ours, theirs, bare) plus the adapter-only one, on one tiny network."""
    from diffusers import DPMSolverMultistepScheduler

    torch.manual_seed(0)
    net = TinyNet(D).eval()
    schedule = build_schedule("linear")  # continuous-time DDPM linear betas, as diffusers' default
    denoise = network_denoiser(net, schedule, "eps")
    x = torch.randn(batch, T, D)
    k = torch.full((batch, T), 0.5)
    scheduler = DPMSolverMultistepScheduler()  # dpmsolver++, order 2, eps prediction, linear betas

    def ours() -> torch.Tensor:
        return samplers.sample(denoise, x, plans.full_sequence(T, steps), schedule, solver="dpmpp2m")

    def theirs() -> torch.Tensor:
        with torch.no_grad():
            scheduler.set_timesteps(steps)
            y = x
            for t in scheduler.timesteps:
                y = scheduler.step(net(y), t, y).prev_sample
        return y

    def bare() -> None:
        with torch.no_grad():
            for _ in range(steps):
                net(x, k)

    def adapter() -> None:
        with torch.no_grad():
            for _ in range(steps):
                denoise(x, k, None)

    return {"ours": ours, "theirs": theirs, "bare": bare, "adapter": adapter}


def overhead_rows(quick: bool) -> list[dict[str, Any]]:
    rows = []
    for steps in STEPS:
        for batch in BATCHES:
            fns = loop_fns(steps, batch)
            # sanity: both loops run and give finite samples of the right shape
            for key in ("ours", "theirs"):
                out = fns[key]()
                assert out.shape == (batch, T, D) and bool(torch.isfinite(out).all()), key
            once = time_probe(fns["theirs"]) + time_probe(fns["ours"])
            repeats = 15 if quick else max(60, min(600, int(12.0 / (1.5 * once))))  # ~12 s per cell
            times = interleaved(fns, repeats=repeats, warmup=5)
            bare = times["bare"]
            ours = [(o - b) / steps for o, b in zip(times["ours"], bare, strict=True)]
            theirs = [(o - b) / steps for o, b in zip(times["theirs"], bare, strict=True)]
            adapter = [(a - b) / steps for a, b in zip(times["adapter"], bare, strict=True)]
            ratios = [o / t for o, t in zip(ours, theirs, strict=True)]
            common = {
                "part": "loop_overhead",
                "steps": steps,
                "batch": batch,
                "tokens": T,
                "dim": D,
                "threads": torch.get_num_threads(),
                "repeats": repeats,
            }
            net_us = 1e6 * median(bare) / steps
            rows.append(
                {
                    "method": "trajdiff",
                    **common,
                    "solver": "dpmpp2m",
                    "loop_ms": 1e3 * median(times["ours"]),
                    "network_us_per_step": net_us,
                    "overhead_us_per_step": 1e6 * median(ours),
                    "adapter_us_per_step": 1e6 * median(adapter),
                    "ratio_vs_diffusers": median(ratios),
                    "ratio_of_medians": median(ours) / median(theirs),
                }
            )
            rows.append(
                {
                    "method": "diffusers",
                    **common,
                    "solver": "DPMSolverMultistepScheduler",
                    "loop_ms": 1e3 * median(times["theirs"]),
                    "network_us_per_step": net_us,
                    "overhead_us_per_step": 1e6 * median(theirs),
                }
            )
    return rows


def profile(steps: int = 50, batch: int = 1, rounds: int = 200, top: int = 30) -> str:
    fns = loop_fns(steps, batch)
    fns["ours"]()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(rounds):
        fns["ours"]()
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(top)
    return stream.getvalue()


def tables(payload: dict[str, Any]) -> str:
    rows = payload["rows"]
    out = ["Time per function evaluation (forward pass, no grad; T = 64, D = 8; median of repeats)\n"]
    out.append(
        markdown_table(
            [r for r in rows if r["part"] == "forward"],
            ["network", "params", "batch", "threads", "ms_per_nfe", "ms_min", "ms_max", "samples_per_s"],
            ["network", "parameters", "batch", "threads", "ms / NFE (median)", "min", "max", "samples / s"],
        )
    )
    loop = [r for r in rows if r["part"] == "loop_overhead"]
    table = []
    for ours in (r for r in loop if r["method"] == "trajdiff"):
        theirs = next(
            r
            for r in loop
            if r["method"] == "diffusers" and r["steps"] == ours["steps"] and r["batch"] == ours["batch"]
        )
        table.append(
            {
                "steps": ours["steps"],
                "batch": ours["batch"],
                "net": ours["network_us_per_step"],
                "ours": ours["overhead_us_per_step"],
                "adapter": ours["adapter_us_per_step"],
                "theirs": theirs["overhead_us_per_step"],
                "ratio": ours["ratio_vs_diffusers"],
                "ratio_med": ours["ratio_of_medians"],
                "repeats": ours["repeats"],
            }
        )
    out.append(
        "\nSampler-loop overhead per step, tiny network (one nn.Linear per token), T = 64, D = 8, "
        "1 thread; microseconds\n"
    )
    out.append(
        markdown_table(
            table,
            ["steps", "batch", "net", "ours", "adapter", "theirs", "ratio", "ratio_med", "repeats"],
            [
                "N steps",
                "batch",
                "network / step",
                "trajdiff overhead / step",
                "(of which denoiser adapter)",
                "diffusers overhead / step",
                "ratio ours/theirs (median of paired)",
                "ratio of medians",
                "rounds",
            ],
        )
    )
    shared = [r for r in rows if r["part"] == "shared_levels"]
    if shared:
        out.append("\nShared noise levels embedded once vs per token, forward pass, batch 64, 1 thread (median of "
                   "interleaved rounds)\n")
        columns = ["network", "levels", "tokens", "dim", "ms_shared", "ms_per_token", "speedup"]
        out.append(markdown_table(shared, columns, ["network", "levels", "T", "D", "ms, embedded once", "ms, per token",
                                   "speedup (median of paired)"]))
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run with few repeats, writes a temp file")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--show", action="store_true", help="only print the tables of the saved results")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of our loop and exit")
    parser.add_argument("--out", type=Path, default=None, help="results file (default benchmarks/results)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = args.out or results_path(NAME, args.quick)
    if args.show:
        print(tables(json.loads(path.read_text(encoding="utf-8"))))
        return
    if args.profile:
        print(profile())
        return
    start = time.perf_counter()
    rows = forward_pass_rows(args.quick) + overhead_rows(args.quick) + shared_level_rows(args.quick)
    elapsed = time.perf_counter() - start
    import diffusers

    write_results(
        NAME,
        COMMAND + (" --quick" if args.quick else ""),
        rows,
        path,
        diffusers_version=diffusers.__version__,
        threads=args.threads,
        wall_seconds=round(elapsed, 1),
    )
    print(tables(json.loads(path.read_text(encoding="utf-8"))))
    print(f"\nwrote {path} in {elapsed:.0f} s")


if __name__ == "__main__":
    main()
