"""ETH/UCY pedestrian forecasting, standard protocol: minADE20 / minFDE20 per scene and averaged.

Protocol (Social-GAN, Gupta et al., 2018; used by Trajectron++, MID and LED): leave one scene out
(train on the other scenes' files in ``<scene>/train``, test on ``<scene>/test``), observe 8 steps
of 0.4 s and predict 12; evaluation windows are every 20-frame window (sliding by one frame step) of
every agent present in all 20 frames of a test file, in windows with at least two such agents
(Social-GAN's ``min_ped``); best of 20 samples per agent, errors in metres.

trajdiff: the ``traffic`` domain's loader (4 nearest neighbours as extra columns) and encoder
(agent frame, heading along +x, future as residual over constant velocity), its default network (the
window MLP; ``--network transformer`` for the transformer recipe) trained per scene with the core Trainer
(``--minutes`` of wall time at most, so at most as many CPU minutes on one thread; the CPU minutes are
recorded), sampled (``--solvers``: DPM-Solver++(2M) by
default, ancestral DDPM, DDIM; one network evaluation per step, so NFE = steps), all agents of
a window sampled together (joint sample s = sample s of every agent). Beside it, in the same run:
constant velocity (last observed displacement repeated, deterministic) and, with ``--collision``,
the collision-cost guidance and the share of agent pairs closer than 0.2 m in a joint sample.
With ``--cluster-from M`` it also draws M samples per agent and keeps ``--samples`` of them, one
per k-means cluster of their final positions (`api.keep_representatives`, what `trajdiff evaluate
--draws` does); they are chosen per agent, so they are not joint samples. ``--models`` with
``--train-only`` trains and saves the models, ``--reuse`` evaluates saved ones. Published averages
are from the papers (Social-GAN 20VP20, Trajectron++, MID, LED). ``--full`` runs the whole protocol
(every window, NFE 10) into ``results/eth_ucy_full.json`` with LED's per-scene figures and the window
count checked against Social-GAN's counting (`_eth_ucy_full`); ``--split val`` evaluates on the training
scenes' validation files instead of the left-out scene (for choosing settings without the test scene).
``--initializer STEPS[:WIDTH[:FDE_WEIGHT]]`` adds rows for a learned set of 20 futures trained on the best-of-20
loss (LED's initializer idea, `_eth_ucy_init`), ``--refine-start`` that set denoised by the diffusion model.

    .venv/bin/python benchmarks/eth_ucy.py --full --steps 4000 --cluster-from 100   # results/eth_ucy_full.json
    .venv/bin/python benchmarks/eth_ucy.py --minutes 3           # writes results/eth_ucy.json
    .venv/bin/python benchmarks/eth_ucy.py --quick               # a smoke run (one scene, a few windows)
    python3 benchmarks/eth_ucy.py --device cuda --minutes 1     # on a GPU
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, results_path, write_results  # noqa: E402
from _eth_ucy_full import led_rows, social_gan_groups, window_check  # noqa: E402
from _eth_ucy_init import refined_futures, set_futures, train_set, training_windows  # noqa: E402
from _eth_ucy_scale import file_factors, length_columns, rescale, spread  # noqa: E402

from trajdiff import __version__, api  # noqa: E402
from trajdiff.core.model import DiffusionModel  # noqa: E402
from trajdiff.core.training import TrainConfig, TrainData, Trainer  # noqa: E402
from trajdiff.plugins.traffic import TrafficDomain  # noqa: E402
from trajdiff.plugins.traffic.joint import sample_joint  # noqa: E402
from trajdiff.plugins.traffic.plot import plot_tracks  # noqa: E402

DATA = Path(os.environ.get("TRAJDIFF_ETH_UCY", Path(__file__).resolve().parents[2] / "shared" / "data" / "eth_ucy"))
SCENES = ("eth", "hotel", "univ", "zara1", "zara2")
PUBLISHED = {  # average minADE20 / minFDE20 (m) as published
    "Social-GAN (published)": (0.61, 1.21),
    "Trajectron++ (published)": (0.30, 0.51),
    "MID (published)": (0.21, 0.38),
    "LED (published)": (0.21, 0.33),
}
OBS, PRED = 8, 12
NEAR = 0.2  # metres: a pair of agents closer than this in a joint sample counts as a collision


@dataclass
class TestWindows:
    """Evaluation windows of one scene: encoded contexts, frames, true futures and scene groups."""

    contexts: np.ndarray  # [N, 20, D], future tokens zeroed
    frames: list[dict[str, Any]]
    truth: np.ndarray  # [N, 12, 2]
    history: np.ndarray  # [N, 8, 2]
    last: np.ndarray  # [N, 2] last observed position
    velocity: np.ndarray  # [N, 2] last observed displacement per step
    groups: np.ndarray  # [N] window id (file, start frame); windows sorted by group
    factor: np.ndarray  # [N] the lengths the model saw = this times the file's (``--speed-ref``; else 1)


def test_windows(folder: Path, loaded: api.LoadedModel, min_agents: int = 2, max_groups: int = 0,
                 speed_ref: float = 0.0) -> TestWindows:
    """Social-GAN windows of every test file in ``folder``, encoded with the model's encoder (with ``speed_ref``,
    each file rescaled by ``speed_ref`` over the mean step of its windows' observed histories)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        episodes = loaded.domain.load(folder, neighbours=loaded.encoder.neighbours)
    length = OBS + PRED
    keys, by_group = social_gan_groups(episodes, length, min_agents, max_groups)
    factors: dict[str, float] = {}
    if speed_ref > 0:
        pieces: dict[str, list[np.ndarray]] = {}
        for key in keys:
            pieces.setdefault(key[0], []).extend(episodes.sequences[i][s:s + OBS] for i, s in by_group[key])
        factors = file_factors(episodes, speed_ref, pieces)
    mask = length_columns(list(episodes.columns)).astype(float)
    contexts, frames, truth, history, last, velocity, groups, factor = [], [], [], [], [], [], [], []
    for g, key in enumerate(keys):
        for i, s in by_group[key]:
            window = episodes.sequences[i][s:s + length]
            f = factors.get(key[0], 1.0)
            tokens, frame = loaded.encoder.encode(window * (1.0 + (f - 1.0) * mask), OBS)
            factor.append(f)
            tokens[OBS:] = 0.0
            contexts.append(tokens)
            frames.append(frame)
            truth.append(window[OBS:, :2])
            history.append(window[:OBS, :2])
            last.append(window[OBS - 1, :2])
            velocity.append(window[OBS - 1, :2] - window[OBS - 2, :2])
            groups.append(g)
    return TestWindows(np.stack(contexts).astype(np.float32), frames, np.stack(truth), np.stack(history),
                       np.stack(last), np.stack(velocity), np.asarray(groups), np.asarray(factor))


def network_of(args: argparse.Namespace, dim: int) -> tuple[dict[str, Any], str]:
    """The network and parametrization of ``--network``: the traffic domain's default (the window MLP) or one of
    its recipes, with ``--width`` / ``--depth`` / ``--parametrization`` overriding when given."""
    domain = TrafficDomain()
    if args.network == "default":
        network, parametrization = dict(domain.defaults().network), domain.defaults().parametrization
    else:
        recipe = domain.recipes()[args.network].defaults
        network, parametrization = dict(recipe["network"]), recipe.get("parametrization", "v")
    network["dim"] = dim
    if "length" in network:
        network["length"] = OBS + PRED
    network.update({k: v for k, v in (("width", args.width), ("depth", args.depth)) if v is not None})
    return network, args.parametrization or parametrization


def train_scene(scene: str, args: argparse.Namespace, device: torch.device) -> tuple[api.LoadedModel, dict]:
    """Trains the traffic domain's default model on ``<scene>/train`` for ``args.minutes`` (saved under
    ``args.models`` when given), or loads the one saved there with ``args.reuse``."""
    saved = args.models / scene if args.models else None
    if args.reuse:
        if saved is None or not (saved / "config.json").exists():
            raise SystemExit(f"--reuse: no model for {scene} under {args.models}; train one without --reuse")
        loaded = api.load_model(saved, domain="traffic")
        loaded.model.to(device).eval()
        return loaded, dict(loaded.model.extra.get("benchmark_training", {}))
    domain = TrafficDomain()
    defaults = domain.defaults()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        episodes = domain.load(DATA / scene / "train", neighbours=args.neighbours)
    factors = file_factors(episodes, args.speed_ref) if args.speed_ref > 0 else {}
    if factors:
        episodes = rescale(episodes, factors)
    encoder = api.make_encoder(domain, defaults).fit(episodes)
    x, _, _ = api.encode_windows(episodes, encoder, OBS, OBS + PRED, 1)
    if args.mirror:  # the heading-aligned frame mirrored across its x axis (what `trajdiff train` does too)
        x = domain.augment_windows(x, encoder)
    network, parametrization = network_of(args, encoder.dim)
    model = DiffusionModel(network, schedule=defaults.schedule, parametrization=parametrization,
                           extra={"domain": "traffic", "encoder": encoder.state_dict(), "defaults": asdict(defaults),
                                  "trajdiff_version": __version__})
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, history=OBS,
                         history_prob=args.history_prob, noise=args.noise, max_minutes=args.minutes, seed=args.seed,
                         progress=False, warmup_steps=min(200, args.steps // 10), device=str(device))
    cpu = time.process_time()
    result = Trainer(model, TrainData(torch.from_numpy(x)), config).fit()
    cpu = time.process_time() - cpu
    model.eval()
    info = {"windows": int(x.shape[0]), "steps": result.step, "train_seconds": round(result.seconds, 1),
            "train_cpu_minutes": round(cpu / 60.0, 2), "network": network, "parametrization": parametrization,
            "speed_factors": factors,
            "final_loss": float(np.mean(result.losses[-100:])), "parameters": sum(p.numel() for p in
                                                                                  model.network.parameters())}
    if saved is not None:
        model.extra["benchmark_training"] = info
        model.save(saved)
    return api.LoadedModel(model, domain, encoder, defaults), info


def draw(loaded: api.LoadedModel, windows: TestWindows, *, samples: int, nfe: int, device: torch.device, seed: int,
         collision: float = 0.0, solver: str | None = None) -> np.ndarray:
    """Joint samples of every window's future in metres: ``[N, S, 12, 2]``."""
    costs = {"collision": collision} if collision > 0 else None
    pred = sample_joint(loaded, windows.contexts, windows.frames, windows.groups, samples=samples, nfe=nfe,
                        solver=solver, costs=costs, seed=seed, device=device)
    return pred / windows.factor[:, None, None, None]


def clustered(pred: np.ndarray, keep: int, seed: int) -> np.ndarray:
    """``keep`` of each window's samples ``[N, M, 12, 2]``, one per k-means cluster of their final positions
    (what `trajdiff evaluate --draws` does)."""
    chosen = api.keep_representatives(TrafficDomain(), pred.transpose(1, 0, 2, 3), ["x", "y"], keep, seed=seed)
    return chosen.transpose(1, 0, 2, 3)


def errors(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """minADE, minFDE over samples, averaged over windows: pred ``[N, S, 12, 2]``, truth ``[N, 12, 2]``."""
    dist = np.linalg.norm(pred - truth[:, None], axis=-1)  # [N, S, 12]
    return float(dist.mean(-1).min(-1).mean()), float(dist[..., -1].min(-1).mean())


def collision_share(pred: np.ndarray, groups: np.ndarray) -> float:
    """Share of (agent pair, joint sample) within one window closer than NEAR at some step, in percent."""
    hits = total = 0
    bounds = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        p = pred[lo:hi]  # [A, S, 12, 2]
        if hi - lo < 2:
            continue
        d = np.linalg.norm(p[:, None] - p[None, :], axis=-1).min(-1)  # [A, A, S]
        iu = np.triu_indices(hi - lo, 1)
        hits += int((d[iu] < NEAR).sum())
        total += d[iu].size
    return 100.0 * hits / max(total, 1)


def plot_window(path: Path, windows: TestWindows, pred: np.ndarray) -> Path:
    """The test window with the most agents: history, joint samples and the true future."""
    group = np.bincount(windows.groups).argmax()
    idx = np.flatnonzero(windows.groups == group)
    histories = {str(i): windows.history[i] for i in idx}
    return plot_tracks(path, histories, {str(i): pred[i] for i in idx}, {str(i): windows.truth[i] for i in idx})


def run_scene(scene: str, args: argparse.Namespace, device: torch.device) -> tuple[list[dict], dict]:
    loaded, info = train_scene(scene, args, device)
    windows = test_windows(DATA / scene / args.split, loaded, max_groups=args.max_groups, speed_ref=args.speed_ref)
    n = len(windows.groups)
    cpu = info.get("train_cpu_minutes")
    started = time.perf_counter()
    steps = np.arange(1, PRED + 1)[None, :, None]
    cv = (windows.last[:, None] + steps * windows.velocity[:, None])[:, None]  # [N, 1, 12, 2]
    rows = [{"scene": scene, "method": "constant velocity", "samples": 1, "nfe": 0, "windows": n,
             **dict(zip(("ade", "fde"), errors(cv, windows.truth), strict=True)), "train_cpu_minutes": 0.0,
             "sample_seconds": round(time.perf_counter() - started, 2),
             "collisions_%": collision_share(cv, windows.groups)}]
    truth_share = collision_share(windows.truth[:, None], windows.groups)
    for solver in args.solvers:
        for nfe in args.nfe:
            started = time.perf_counter()
            pred = draw(loaded, windows, samples=args.samples, nfe=nfe, device=device, seed=args.seed, solver=solver)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            ade, fde = errors(pred, windows.truth)
            if args.plot and nfe == args.nfe[0] and solver == args.solvers[0]:
                plot_window(args.plot.with_name(f"{args.plot.stem}_{scene}{args.plot.suffix}"), windows, pred)
            rows.append({"scene": scene, "method": f"trajdiff {solver}", "samples": args.samples, "nfe": nfe,
                         "windows": n, "ade": ade, "fde": fde, "train_cpu_minutes": cpu,
                         "collisions_%": collision_share(pred, windows.groups),
                         "sample_seconds": round(seconds, 2),
                         "trajectories_per_s": round(n * args.samples / seconds, 1)})
            for a in args.spread if (nfe == args.nfe[0] and solver == args.solvers[0]) else []:
                ade, fde = errors(spread(pred, a), windows.truth)
                rows.append({"scene": scene, "method": f"trajdiff {solver}, spread x{a:g}", "samples": args.samples,
                             "nfe": nfe, "windows": n, "ade": ade, "fde": fde, "train_cpu_minutes": cpu,
                             "sample_seconds": round(seconds, 2)})
    for draws in args.cluster_from:  # more samples, 20 kept: one per cluster of final positions
        nfe, solver = args.nfe[0], args.solvers[0]
        started = time.perf_counter()
        pred = clustered(draw(loaded, windows, samples=draws, nfe=nfe, device=device, seed=args.seed, solver=solver),
                         args.samples, args.seed)
        seconds = time.perf_counter() - started
        ade, fde = errors(pred, windows.truth)
        rows.append({"scene": scene, "method": f"trajdiff {solver}, {args.samples} of {draws} by final position",
                     "samples": args.samples, "nfe": nfe, "windows": n, "ade": ade, "fde": fde,
                     "train_cpu_minutes": cpu, "sample_seconds": round(seconds, 2),
                     "trajectories_per_s": round(n * args.samples / seconds, 1)})
    if args.initializer:
        rows += set_rows(scene, loaded, windows, info, args)
    if args.collision > 0:
        nfe, solver = args.nfe[0], args.solvers[0]
        pred = draw(loaded, windows, samples=args.samples, nfe=nfe, device=device, seed=args.seed,
                    collision=args.collision, solver=solver)
        ade, fde = errors(pred, windows.truth)
        rows.append({"scene": scene, "method": f"trajdiff {solver} + collision cost {args.collision:g}", "nfe": nfe,
                     "windows": n, "ade": ade, "fde": fde, "collisions_%": collision_share(pred, windows.groups)})
    info.update({"scene": scene, "test_windows": n, "truth_collisions_%": truth_share})
    return rows, info


def set_rows(scene: str, loaded: api.LoadedModel, windows: TestWindows, info: dict,
             args: argparse.Namespace) -> list[dict]:
    """The learned set of ``--samples`` futures (`_eth_ucy_init`), trained on the scene's training windows, alone
    and refined by the diffusion model from each ``--refine-start`` level."""
    x = training_windows(loaded, DATA / scene / "train", args.mirror, args.speed_ref)
    rows, first = [], None
    for spec in args.initializer:  # STEPS[:WIDTH[:FDE_WEIGHT]]
        steps, width, weight = ([*map(float, spec.split(":")), 256, 0.0][:3] if ":" in spec
                                else (float(spec), 256, 0.0))
        net, trained = train_set(x, OBS, k=args.samples, steps=int(steps), width=int(width), fde_weight=weight,
                                 seed=args.seed)
        info.setdefault("sets", []).append({"spec": spec, **trained})
        started = time.perf_counter()
        pred = set_futures(net, windows.contexts, windows.frames, OBS) / windows.factor[:, None, None, None]
        seconds = time.perf_counter() - started
        ade, fde = errors(pred, windows.truth)
        name = (f"learned set of {args.samples} (best-of-{args.samples} loss; {int(steps)} steps, width "
                f"{int(width)}, FDE weight {weight:g})")
        first = first or (net, name, trained["set_cpu_minutes"])
        rows.append({"scene": scene, "method": name, "samples": args.samples, "nfe": 0, "windows": len(windows.groups),
                     "ade": ade, "fde": fde, "train_cpu_minutes": trained["set_cpu_minutes"],
                     "sample_seconds": round(seconds, 2)})
    net, name, cpu = first
    for start in args.refine_start:  # the first set, denoised by the diffusion model
        started = time.perf_counter()
        pred = refined_futures(loaded, net, windows.contexts, windows.frames, start=start, nfe=args.refine_nfe,
                               seed=args.seed) / windows.factor[:, None, None, None]
        seconds = time.perf_counter() - started
        ade, fde = errors(pred, windows.truth)
        rows.append({"scene": scene, "method": f"{name}, denoised from level {start:g}", "samples": args.samples,
                     "nfe": args.refine_nfe, "windows": len(windows.groups), "ade": ade, "fde": fde,
                     "train_cpu_minutes": round(cpu + (info.get("train_cpu_minutes") or 0.0), 2),
                     "sample_seconds": round(seconds, 2)})
    return rows


def averages(rows: list[dict], scenes: list[str]) -> list[dict]:
    out = []
    for method, nfe in dict.fromkeys((r["method"], r["nfe"]) for r in rows):
        mine = [r for r in rows if r["method"] == method and r["nfe"] == nfe]
        if {r["scene"] for r in mine} == set(scenes):
            row = {"scene": "average", "method": method, "samples": mine[0].get("samples"), "nfe": nfe,
                   "windows": sum(r["windows"] for r in mine), "ade": float(np.mean([r["ade"] for r in mine])),
                   "fde": float(np.mean([r["fde"] for r in mine]))}
            for key in ("train_cpu_minutes", "sample_seconds"):  # totals over the scenes
                if all(r.get(key) is not None for r in mine):
                    row[key] = round(sum(r[key] for r in mine), 2)
            if all("collisions_%" in r for r in mine):  # not for clustered samples: those are not joint samples
                row["collisions_%"] = float(np.mean([r["collisions_%"] for r in mine]))
            out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", nargs="+", default=list(SCENES), choices=SCENES)
    parser.add_argument("--minutes", type=float, default=3.0, help="training minutes per scene")
    parser.add_argument("--steps", type=int, default=20000, help="most training steps per scene")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--network", default="default", choices=["default", *TrafficDomain().recipes()],
                        help="the traffic domain's default network (the window MLP) or one of its recipes")
    parser.add_argument("--width", type=int, default=None, help="override the network's width")
    parser.add_argument("--depth", type=int, default=None, help="override the network's depth")
    parser.add_argument("--neighbours", type=int, default=4)
    parser.add_argument("--parametrization", default=None, choices=["v", "x0", "eps"],
                        help="default: the network's (x0 for the window MLP, v for the transformer)")
    traffic = TrafficDomain().defaults()  # the same recipe as `trajdiff train --domain traffic`
    parser.add_argument("--noise", default=traffic.noise, choices=["independent", "shared"],
                        help="per-token training noise levels or one level per window")
    parser.add_argument("--history-prob", type=float, default=traffic.history_prob,
                        help="share of training windows with clean history")
    parser.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=True,
                        help="add mirrored copies of the training windows (the traffic domain's augmentation)")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--initializer", nargs="*", default=[], metavar="STEPS[:WIDTH[:FDE_WEIGHT]]",
                        help="also train learned sets of --samples futures (_eth_ucy_init), one row each")
    parser.add_argument("--refine-start", type=float, nargs="*", default=[],
                        help="also denoise the learned set with the diffusion model from these levels (0-1)")
    parser.add_argument("--refine-nfe", type=int, default=4, help="network evaluations of that denoising")
    parser.add_argument("--speed-ref", type=float, default=0.0,
                        help="rescale each file to this mean step (m per 0.4 s) for the model; 0: off (_eth_ucy_scale)")
    parser.add_argument("--spread", type=float, nargs="*", default=[],
                        help="also score the samples moved this many times as far from their mean (_eth_ucy_scale)")
    parser.add_argument("--nfe", type=int, nargs="+", default=None,
                        help="sampler steps; first is the main (default 10 20 100, with --full 10)")
    parser.add_argument("--solvers", nargs="+", default=[TrafficDomain().defaults().solver],
                        help="samplers to compare (ddpm, ddim, dpmpp2m); first is the main")
    parser.add_argument("--collision", type=float, default=0.0, help="also sample with the collision cost, this scale")
    parser.add_argument("--cluster-from", type=int, nargs="*", default=[],
                        help="also draw this many samples and keep --samples of them, one per k-means cluster of "
                             "final positions (SocialVAE's final position clustering)")
    parser.add_argument("--max-groups", type=int, default=0, help="at most this many 20-frame windows per scene")
    parser.add_argument("--split", default="test", choices=["test", "val"],
                        help="evaluate on the left-out scene (test) or on the training scenes' validation files")
    parser.add_argument("--full", action="store_true",
                        help="the whole protocol: every window, NFE 10 only, LED's per-scene figures and the window "
                             "count checked against Social-GAN's (default out: results/eth_ucy_full.json)")
    parser.add_argument("--plot", type=Path, default=None, help="draw each scene's fullest window")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="results file (default benchmarks/results/eth_ucy.json)")
    parser.add_argument("--models", type=Path, default=None, help="save each scene's model in this folder")
    parser.add_argument("--reuse", action="store_true", help="evaluate the models saved in --models, no training")
    parser.add_argument("--train-only", action="store_true",
                        help="train and save the models in --models, no evaluation (then evaluate with --reuse)")
    parser.add_argument("--quick", action="store_true", help="smoke run: eth only, 0.3 minutes, 40 windows")
    args = parser.parse_args()
    args.nfe = args.nfe or ([10] if args.full else [10, 20, 100])
    if args.full and (args.max_groups or args.split != "test"):
        raise SystemExit("--full evaluates every test window: leave out --max-groups and --split")
    if args.quick:
        args.scenes, args.minutes, args.max_groups, args.nfe = ["eth"], min(args.minutes, 0.3), 40, [10]
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows: list[dict] = []
    infos: list[dict] = []
    command = "python benchmarks/eth_ucy.py " + " ".join(sys.argv[1:])
    target = args.out or results_path("eth_ucy_full" if args.full else "eth_ucy", args.quick)
    started, cpu_started = time.perf_counter(), time.process_time()

    def save(table: list[dict], done: list[str]) -> Path:  # after every scene, so a stopped run keeps its results
        extra = {"total_wall_minutes": round((time.perf_counter() - started) / 60, 2),
                 "total_cpu_minutes": round((time.process_time() - cpu_started) / 60, 2)}
        if args.full:
            extra["window_check"] = window_check(done, DATA, {i["scene"]: i["test_windows"] for i in infos})
        return write_results("eth_ucy", command.strip(), table, target, training=infos, scenes_done=done, **extra,
                             settings={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                             device=torch.cuda.get_device_name(device) if device.type == "cuda" else machine())

    if args.train_only:
        if args.models is None or args.reuse:
            raise SystemExit("--train-only needs --models (where the models go) and no --reuse")
        for scene in args.scenes:
            _, info = train_scene(scene, args, device)
            print(f"{scene}: {info['steps']} steps in {info['train_seconds']} s -> {args.models / scene}", flush=True)
        return
    for n, scene in enumerate(args.scenes):
        scene_rows, info = run_scene(scene, args, device)
        rows += scene_rows
        infos.append(info)
        print(f"{scene}: {info['steps']} steps in {info['train_seconds']} s; "
              + "; ".join(f"{r['method']} nfe {r['nfe']}: {r['ade']:.3f}/{r['fde']:.3f}" for r in scene_rows),
              flush=True)
        save(rows, args.scenes[:n + 1])
    rows += averages(rows, args.scenes)
    if args.full:
        rows += led_rows(args.scenes)
    rows += [{"scene": "average", "method": name, "ade": ade, "fde": fde, "published": True}
             for name, (ade, fde) in PUBLISHED.items() if not (args.full and name.startswith("LED"))]
    path = save(rows, args.scenes)
    print(markdown_table(rows, ["scene", "method", "nfe", "windows", "ade", "fde", "train_cpu_minutes",
                                "sample_seconds"],
                         ["scene", "method", "NFE", "windows", "minADE20", "minFDE20", "train CPU min", "sample s"]))
    print(markdown_table(infos, ["scene", "windows", "steps", "train_seconds", "train_cpu_minutes", "final_loss",
                                 "test_windows", "truth_collisions_%"]))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
