"""Reward planning on MuJoCo locomotion beside the offline-RL methods a user would pick (d3rlpy), in one run.

Data: `trajdiff datasets make halfcheetah-medium` (the D4RL recipe, `trajdiff.plugins.rl.locomotion`), made here
if missing. trajdiff: a planner trained on it (every step a token, 32-step plans, the present inpainted,
planned actions executed, replanning every step warm-started at 3 NFE; `--recipe window-mlp` for the window
MLP) and a value of its plans fitted on the data's discounted returns (`trajdiff fit-value`); candidates,
value-guidance scale and warm level chosen on reset seeds 100+ (never the reported ones). Peers: d3rlpy's BC,
IQL and TD3+BC with its documented D4RL hyperparameters (`_peers_d3rlpy.py`), trained in their own environment
(d3rlpy 2.8.1 pins gymnasium==1.0.0, which trajdiff's rl extra cannot share) through a subprocess of --peer-python:

    python3 -m venv /tmp/d3env && /tmp/d3env/bin/pip install torch==2.13.0 && /tmp/d3env/bin/pip install d3rlpy

Every policy (trajdiff's and the peers' exported TorchScript policies) is evaluated here, in trajdiff's
gymnasium, on reset seeds 0..episodes-1; scores are normalized with the data set's reference returns
(expert: D4RL's; random: measured by Minari on the v5 environment). Each method gets at most
--cpu-minutes of training CPU time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/locomotion.py --body halfcheetah --peer-python /tmp/d3env/bin/python

`--reuse-peers` evaluates (again, here, on the same seeds) the peer policies an earlier run trained into --work,
so that another trajdiff configuration can be compared without retraining them; their rows say so.
`--condition return` trains a return-conditioned planner instead (Decision Diffuser: classifier-free guidance on the
normalized discounted return-to-go, `trajdiff.plugins.rl.returns`) with inverse dynamics (`trajdiff fit-inverse`)
and a value for ranking candidates; target return, guidance scale, candidates and controller are chosen on the
validation seeds (CONDITIONED). `--train-steps` caps trajdiff's training steps (its CPU time is what is recorded).
The results file keeps one row per data set and method (each with its command): a run replaces only its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, results_path, write_results  # noqa: E402

from trajdiff import api  # noqa: E402
from trajdiff.plugins.rl.envs import make_env  # noqa: E402
from trajdiff.plugins.rl.inverse import fit_inverse, load_inverse  # noqa: E402
from trajdiff.plugins.rl.loader import open_dataset  # noqa: E402
from trajdiff.plugins.rl.locomotion import LOCOMOTION, locomotion_dataset_id, make_locomotion  # noqa: E402
from trajdiff.plugins.rl.planner import PlannerConfig  # noqa: E402
from trajdiff.plugins.rl.rollout import normalized_score, run_planner  # noqa: E402
from trajdiff.plugins.rl.value import fit_value, load_value  # noqa: E402

VALIDATION_SEED = 100
GUIDED = [(1, 0.0, 0.8), (1, 0.0, 1.0), (8, 0.0, 0.8), (8, 0.0, 1.0), (8, 1.0, 0.8), (16, 0.0, 1.0)]
"""(candidates, value-guidance scale, warm level) tried on the validation seeds; with more than one candidate
the value ranks them. Warm level 1.0 replans from noise in the warm steps' 3 evaluations."""
CONDITIONED = [(0.8, 1.5, 1, "inverse"), (0.9, 1.0, 1, "inverse"), (0.9, 1.5, 1, "inverse"), (1.0, 1.5, 1, "inverse"),
               (1.1, 1.5, 1, "inverse"), (1.0, 1.5, 1, "actions"), (1.0, 1.5, 8, "inverse"), (1.0, 3.0, 1, "inverse")]
"""(target return, classifier-free guidance scale, candidates, controller) tried on the validation seeds for a
return-conditioned planner (warm level 0.8); more than one candidate: ranked by the value. Targets are normalized
discounted returns-to-go (1 = the data's best window). A scale other than 1 evaluates the network twice per step, so
those plans get twice the evaluations (the same denoising steps as the value-guided planner's 8 / 3)."""


def _mean_se(values: list[float]) -> tuple[float, float]:
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return float(statistics.fmean(values)), float(se)


def dataset_arrays(dataset_id: str, path: Path) -> dict[str, Any]:
    """The data set as flat arrays (observations, actions, rewards, terminals, timeouts) for the peers."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("observations", "actions", "rewards", "terminals",
                                                          "timeouts")}
    dataset = open_dataset(dataset_id)
    for episode in dataset.iterate_episodes():
        n = len(episode.actions)
        parts["observations"].append(episode.observations[:-1])
        parts["actions"].append(episode.actions)
        parts["rewards"].append(np.asarray(episode.rewards))
        parts["terminals"].append(np.asarray(episode.terminations, dtype=np.float32))
        timeouts = np.asarray(episode.truncations, dtype=np.float32)
        timeouts[-1] = 1.0 - float(episode.terminations[-1])  # every episode ends by one or the other
        parts["timeouts"].append(timeouts)
        assert len(timeouts) == n
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    np.savez(path, **arrays)
    metadata = dataset.storage.metadata
    return {"ref_min_score": metadata["ref_min_score"], "ref_max_score": metadata["ref_max_score"],
            "steps": int(len(arrays["actions"])), "episodes": len(parts["actions"])}


def evaluate(act: Callable[[np.ndarray], np.ndarray], env_id: str, episodes: int, source: dict[str, Any]
             ) -> dict[str, float]:
    """Normalized scores and ms per decision of ``act`` on reset seeds 0..episodes-1."""
    env = make_env(env_id)
    scores, times = [], []
    for e in range(episodes):
        obs, _ = env.reset(seed=e)
        total, done = 0.0, False
        while not done:
            started = time.perf_counter()
            action = act(obs)
            times.append(time.perf_counter() - started)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        scores.append(normalized_score(total, source))
    env.close()
    mean, se = _mean_se(scores)
    return {"score_mean": mean, "score_se": se, "ms_per_decision": 1000 * float(np.mean(times))}


def run_peer(method: str, data: Path, args: argparse.Namespace, env_id: str, source: dict[str, Any]) -> dict:
    """Trains ``method`` in the peers' environment (or, with --reuse-peers, takes the policy an earlier run of this
    script trained into --work) and evaluates it here."""
    out = Path(args.work) / f"peer-{method}"
    reused = args.reuse_peers and (out / "policy.pt").is_file() and (out / "train.json").is_file()
    if not reused:
        command = [args.peer_python, str(Path(__file__).with_name("_peers_d3rlpy.py")), str(data), method, str(out),
                   "--cpu-minutes", str(args.cpu_minutes)]
        env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise SystemExit(f"{method} failed: {done.stderr[-2000:]}")
    record = json.loads((out / "train.json").read_text())
    policy = torch.jit.load(str(out / "policy.pt"))

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return policy(torch.from_numpy(np.asarray(obs, dtype=np.float32)[None]))[0].numpy()

    result = evaluate(act, env_id, args.episodes, source)
    return {"method": f"d3rlpy {method.upper() if method != 'td3plusbc' else 'TD3+BC'}", **result,
            "train_cpu_minutes": record["cpu_minutes"], "train_steps": record["steps"], "peer_reused": reused}


def run_conditioned(dataset_id: str, args: argparse.Namespace, env_id: str) -> dict:
    """trajdiff's return-conditioned planner: trained, inverse dynamics and value fitted, tuned on validation seeds."""
    model = Path(args.work) / f"trajdiff-{args.body}-{args.kind}-{args.recipe or 'default'}-{args.condition}"
    cpu0 = time.process_time()
    trained = api.train("rl", dataset_id, model, minutes=args.minutes, steps=args.train_steps, history=1,
                        horizon=args.horizon, encoder={"skip": 1}, progress=False, overwrite=True,
                        recipe=args.recipe, condition=args.condition)
    inverse_record = fit_inverse(model, dataset_id, steps=args.inverse_steps)
    record = fit_value(model, api.load_model(model), dataset_id, gamma=0.99, steps=args.value_steps)
    cpu = (time.process_time() - cpu0) / 60
    value, inverse, loaded = load_value(model), load_inverse(model), api.load_model(model)

    def config(target: float, scale: float, candidates: int, controller: str) -> PlannerConfig:
        twice = 1 if scale == 1.0 else 2
        return PlannerConfig(replan_every=1, candidates=candidates, nfe=8 * twice, warm_nfe=3 * twice,
                             warm_level=0.8, target_return=target, cfg_scale=scale, controller=controller)

    validation = {}
    for choice in CONDITIONED:
        result = run_planner(loaded, env_id, episodes=args.validation_episodes, seed=VALIDATION_SEED,
                             config=config(*choice), value=value if choice[2] > 1 else None, inverse=inverse)
        validation["{}@{}x{}/{}".format(*choice)] = result["score_mean"]
        print(f"validation: target {choice[0]}, cfg scale {choice[1]}, {choice[2]} candidates, {choice[3]}: "
              f"{result['score_mean']:.1f} ({result['ms_per_decision']:.1f} ms)", flush=True)
    best = max(CONDITIONED, key=lambda c: validation["{}@{}x{}/{}".format(*c)])
    result = run_planner(loaded, env_id, episodes=args.episodes, seed=0, config=config(*best),
                         value=value if best[2] > 1 else None, inverse=inverse)
    return {"method": "trajdiff (return-conditioned planner)", "score_mean": result["score_mean"],
            "score_se": result["score_se"], "ms_per_decision": result["ms_per_decision"],
            "train_cpu_minutes": round(cpu, 2), "train_steps": trained.steps, "value_windows": record["windows"],
            "inverse_dynamics": inverse_record, "condition": loaded.defaults.condition_info,
            "recipe": args.recipe, "network": loaded.defaults.network, "horizon": args.horizon,
            "target_return": best[0], "cfg_scale": best[1], "candidates": best[2], "controller": best[3],
            "warm_level": 0.8, "validation_scores": validation}


def run_trajdiff(dataset_id: str, args: argparse.Namespace, env_id: str) -> dict:
    if args.condition:
        return run_conditioned(dataset_id, args, env_id)
    model = Path(args.work) / f"trajdiff-{args.body}-{args.kind}-{args.recipe or 'default'}"
    cpu0 = time.process_time()
    trained = api.train("rl", dataset_id, model, minutes=args.minutes, steps=args.train_steps, history=1,
                        horizon=args.horizon, encoder={"skip": 1}, progress=False, overwrite=True,
                        recipe=args.recipe)
    record = fit_value(model, api.load_model(model), dataset_id, gamma=0.99, steps=args.value_steps)
    cpu = (time.process_time() - cpu0) / 60
    value, loaded = load_value(model), api.load_model(model)
    validation = {}
    for candidates, scale, level in GUIDED:
        config = PlannerConfig(replan_every=1, candidates=candidates, nfe=8, warm_nfe=3, value_guidance=scale,
                               warm_level=level)
        result = run_planner(loaded, env_id, episodes=args.validation_episodes, seed=VALIDATION_SEED, config=config,
                             value=value if candidates > 1 or scale > 0 else None)
        validation[f"{candidates}x{scale}@{level}"] = result["score_mean"]
        print(f"validation: {candidates} candidates, scale {scale}, warm level {level}: {result['score_mean']:.1f} "
              f"({result['ms_per_decision']:.1f} ms)", flush=True)
    candidates, scale, level = max(GUIDED, key=lambda c: validation[f"{c[0]}x{c[1]}@{c[2]}"])
    config = PlannerConfig(replan_every=1, candidates=candidates, nfe=8, warm_nfe=3, value_guidance=scale,
                           warm_level=level)
    result = run_planner(loaded, env_id, episodes=args.episodes, seed=0, config=config,
                         value=value if candidates > 1 or scale > 0 else None)
    network = loaded.defaults.network
    return {"method": "trajdiff (value-guided planner)", "score_mean": result["score_mean"],
            "score_se": result["score_se"], "ms_per_decision": result["ms_per_decision"],
            "train_cpu_minutes": round(cpu, 2), "train_steps": trained.steps, "value_windows": record["windows"],
            "recipe": args.recipe, "network": network if isinstance(network, dict) else str(network),
            "horizon": args.horizon, "candidates": candidates, "value_guidance": scale, "warm_level": level,
            "validation_scores": validation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--body", default="hopper", choices=sorted(LOCOMOTION))
    parser.add_argument("--kind", default="medium", choices=["medium", "medium-replay"])
    parser.add_argument("--steps", type=int, default=200_000, help="data set steps (medium)")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--validation-episodes", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=20.0, help="trajdiff's wall-clock training budget")
    parser.add_argument("--cpu-minutes", type=float, default=30.0, help="each peer's training CPU budget")
    parser.add_argument("--horizon", type=int, default=31)
    parser.add_argument("--value-steps", type=int, default=3000)
    parser.add_argument("--train-steps", type=int, default=1_000_000, help="trajdiff's training steps at most")
    parser.add_argument("--condition", default=None, choices=["return"],
                        help="train a return-conditioned planner (with inverse dynamics) instead")
    parser.add_argument("--inverse-steps", type=int, default=3000)
    parser.add_argument("--peers", default="bc,iql,td3plusbc")
    parser.add_argument("--reuse-peers", action="store_true",
                        help="evaluate the peer policies an earlier run trained into --work instead of training them")
    parser.add_argument("--recipe", default=None, help="the rl domain's training recipe for trajdiff (e.g. window-mlp)")
    parser.add_argument("--peer-python", default="/tmp/d3env/bin/python")
    parser.add_argument("--root", default="/tmp/trajdiff-locomotion-minari")
    parser.add_argument("--work", default="/tmp/trajdiff-locomotion")
    parser.add_argument("--policy", default=None, help="behaviour actor for medium (default: the shipped one)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.episodes, args.validation_episodes, args.minutes = 3000, 1, 1, 0.2
        args.cpu_minutes, args.value_steps, args.horizon, args.inverse_steps = 0.05, 30, 7, 30
    torch.set_num_threads(1)
    os.environ["MINARI_DATASETS_PATH"] = args.root
    Path(args.work).mkdir(parents=True, exist_ok=True)
    env_id, dataset_id = LOCOMOTION[args.body], locomotion_dataset_id(args.body, args.kind)
    try:
        open_dataset(dataset_id)
    except Exception:  # noqa: BLE001 - missing: make it (the shipped policy, or the replay buffer)
        make_locomotion(args.body, args.kind, args.steps, policy=args.policy, root=args.root, progress=False,
                        episodes_for_scores=10 if args.quick else 100)
    data = Path(args.work) / f"{args.body}-{args.kind}.npz"
    source = dataset_arrays(dataset_id, data)
    print(f"{dataset_id}: {source['steps']} steps, {source['episodes']} episodes; references "
          f"{source['ref_min_score']:.1f} / {source['ref_max_score']:.1f}", flush=True)
    rows = [run_trajdiff(dataset_id, args, env_id)]
    print(rows[-1], flush=True)
    for method in [m for m in args.peers.split(",") if m]:
        rows.append(run_peer(method, data, args, env_id, source))
        print(rows[-1], flush=True)
    for row in rows:
        row.update({"env": env_id, "dataset": dataset_id, "episodes": args.episodes,
                    "dataset_steps": source["steps"], "dataset_episodes": source["episodes"],
                    "reference": {"min": source["ref_min_score"], "max": source["ref_max_score"]}})
        row["score"] = f"{row['score_mean']:.1f} ± {row['score_se']:.1f}"
    command = "benchmarks/locomotion.py " + " ".join(sys.argv[1:])
    path = results_path("locomotion", args.quick)
    for row in rows:
        row["command"] = command
    if path.exists() and not args.quick:  # one file for every data set: rows of the others are kept
        earlier = json.loads(path.read_text())
        data = earlier.get("data", {})  # each row now names its data set's size; rows written before take the file's
        produced = {r["method"] for r in rows}
        kept = [{"command": earlier["command"], "dataset_steps": data.get("steps"),
                 "dataset_episodes": data.get("episodes"), **r} for r in earlier["rows"]
                if r["dataset"] != dataset_id or r["method"] not in produced]
        rows = kept + rows
    table = markdown_table(rows, ["dataset", "method", "score", "ms_per_decision", "train_cpu_minutes"],
                           ["data set", "method", "normalized score", "ms/decision", "training CPU-min"])
    print(table)
    path = write_results("locomotion", command, rows, path, table=table)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
