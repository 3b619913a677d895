"""Closed-loop planning in PointMaze umaze / medium / large from locally generated D4RL-style data.

For each maze: the Minari data set (`trajdiff datasets make pointmaze-<maze>`, 1,000,000 noisy-expert
steps unless --steps) is made if absent, a planner is trained through `api.train` for a CPU-time budget,
and it plans closed-loop in the data set's evaluation environment (fixed goal, random start cell,
continuing task, 300 / 600 / 800 steps) for --episodes episodes with reset seeds 0, 1, ...
Scores are Minari-normalized: 100 x (return - random) / (expert - random) with the reference scores
Minari computed for the data set from the waypoint expert and a random policy (100 episodes each).
The first --cold-episodes episodes are also run with warm starts off, to time decisions both ways, and
the waypoint expert runs on the same reset seeds as a paired baseline (how far the goal lies from the
start varies a lot between episodes). --reuse evaluates models saved in --models instead of training.

    .venv/bin/python benchmarks/pointmaze.py --mazes umaze --minutes 20
    .venv/bin/python benchmarks/pointmaze.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, results_path, write_results  # noqa: E402

from trajdiff import api  # noqa: E402
from trajdiff.plugins.rl.collect import make_pointmaze, pointmaze_dataset_id  # noqa: E402
from trajdiff.plugins.rl.mazes import EVAL_MAPS, MazeGrid, WaypointController  # noqa: E402
from trajdiff.plugins.rl.planner import PlannerConfig  # noqa: E402
from trajdiff.plugins.rl.rollout import environment_for, normalized_score, run_planner  # noqa: E402

HORIZONS = {"umaze": 128, "medium": 256, "large": 384}  # plan length in steps, as Diffuser's maze2d configs
SKIPS = {"umaze": 4, "medium": 4, "large": 8}  # steps per token: large plans every 8th state (48 tokens)
ENV_IDS = {"umaze": "PointMaze_UMaze-v3", "medium": "PointMaze_Medium-v3", "large": "PointMaze_Large-v3"}
DIFFUSER = {"umaze": 113.9, "medium": 121.5, "large": 123.0}  # Janner et al. (2022), D4RL maze2d-v1


def ensure_dataset(maze: str, steps: int, root: Path) -> str:
    import minari

    os.environ["MINARI_DATASETS_PATH"] = str(root)
    dataset_id = pointmaze_dataset_id(maze)
    if dataset_id in minari.list_local_datasets():
        dataset = minari.load_dataset(dataset_id)
        if dataset.total_steps == steps:
            return dataset_id
    return make_pointmaze(maze, steps, root=root, overwrite=True, progress=False)


def add_data_statistics(model_dir: Path, dataset_id: str) -> None:
    """A saved model whose encoder state lacks ``step_limits`` (the data's largest token-to-token
    changes) or ``support`` (the grid of positions the data visited), both read by the planner,
    gets them from its data set, after a check that the data set is the one it was trained on
    (same normalizer statistics)."""
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    state = config["extra"]["encoder"]
    if state.get("step_limits") is not None and state.get("support") is not None:
        return
    from trajdiff.plugins.rl.encoder import StateActionEncoder
    from trajdiff.plugins.rl.loader import load_minari

    refit = StateActionEncoder(skip=int(state["skip"]), drop=tuple(state["drop"])).fit(load_minari(dataset_id))
    fitted, stored = refit.normalizer.state_dict(), state["normalizer"]
    if not all(np.allclose(fitted[key], stored[key], rtol=1e-6) for key in ("shift", "scale")):
        raise SystemExit(f"{model_dir} was not trained on {dataset_id} (normalizer differs); retrain it")
    refitted = refit.state_dict()
    for key in ("step_limits", "support"):
        if state.get(key) is None:
            state[key] = refitted[key]
            print(f"{model_dir}: recorded the data's {key}")
    config_path.write_text(json.dumps(config, indent=2))


def expert_scores(maze: str, loaded: api.LoadedModel, episodes: int, first_seed: int) -> list[float]:
    """Normalized scores of the waypoint expert (the 100 of the reference scores, without action noise)
    on the same evaluation environment and reset seeds as the planner: a paired baseline, since
    how far the goal lies from the start varies a lot between episodes."""
    source = loaded.encoder.source
    env, _ = environment_for(ENV_IDS[maze], source)
    expert = WaypointController(MazeGrid.from_map(EVAL_MAPS[maze], env.unwrapped.maze.maze_size_scaling))
    scores = []
    for seed in range(first_seed, first_seed + episodes):
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(expert(obs))
            total += float(reward)
            done = terminated or truncated
        scores.append(float(normalized_score(total, source)))
    env.close()
    return scores


def run_maze(maze: str, args: argparse.Namespace, root: Path) -> dict:
    started = time.monotonic()
    dataset_id = ensure_dataset(maze, args.steps, root)
    collect_s = time.monotonic() - started
    model_dir = Path(args.models) / maze
    cpu0 = time.process_time()
    horizon = HORIZONS[maze]
    record = model_dir / "training.json"
    if args.reuse and (model_dir / "config.json").exists():
        # a saved model (possibly trained over several resumed runs): its training.json says how
        trained = json.loads(record.read_text()) if record.exists() else {}
        train_s = trained.get("seconds", float("nan"))
        cpu_min = trained.get("cpu_minutes") or trained.get("cpu_minutes_at_most", float("nan"))
        train_steps = trained.get("steps", -1)
    else:
        skip = SKIPS[maze]  # the first token (skip rows) is the present
        summary = api.train("rl", dataset_id, model_dir, minutes=args.minutes, steps=args.train_steps,
                            history=skip, horizon=horizon - skip, encoder={"skip": skip}, progress=False,
                            seed=args.seed, recipe=args.recipe)
        train_s, train_steps = summary.seconds, summary.steps
        cpu_min = (time.process_time() - cpu0) / 60
        record.write_text(json.dumps({"seconds": train_s, "cpu_minutes": cpu_min, "steps": train_steps,
                                      "runs": [{"seconds": train_s, "cpu_minutes": cpu_min, "steps": train_steps}]}))
    results = {}
    add_data_statistics(model_dir, dataset_id)
    loaded = api.load_model(model_dir, domain="rl")
    for warm in (True, False) if args.cold_episodes > 0 else (True,):  # 0 cold episodes: warm starts only
        config = PlannerConfig(warm_start=warm, candidates=args.candidates, replan_every=args.replan_every,
                               nfe=args.nfe, warm_nfe=args.warm_nfe, support_check=args.support_check,
                               support_guidance=args.support_guidance, speed_margin=args.speed_margin,
                               lookahead=args.lookahead, warm_level=args.warm_level)
        episodes = args.episodes if warm else args.cold_episodes
        render = Path(args.models) / f"{maze}.png" if warm else None
        results[warm] = run_planner(loaded, ENV_IDS[maze], episodes=episodes, seed=args.seeds_from, config=config,
                                    render=render)
    warm = results[True]
    expert = expert_scores(maze, loaded, args.episodes, args.seeds_from)
    gap = np.asarray(warm["normalized_scores"]) - np.asarray(expert)
    cold = results.get(False, {"score_mean": None, "score_se": None, "ms_per_decision": None, "normalized_scores": []})
    return {
        "maze": maze, "env": ENV_IDS[maze], "dataset": dataset_id, "dataset_steps": args.steps,
        "recipe": loaded.model.extra.get("recipe", {}).get("name"), "network": loaded.defaults.network,
        "collect_s": round(collect_s, 1), "train_steps": train_steps, "train_s": round(train_s, 1),
        "train_cpu_minutes": round(cpu_min, 2), "horizon": horizon,
        "score_mean": warm["score_mean"], "score_se": warm["score_se"], "success_rate": warm["success_rate"],
        "score_mean_cold": cold["score_mean"], "score_se_cold": cold["score_se"],
        "ms_per_decision_warm": warm["ms_per_decision"], "ms_per_decision_cold": cold["ms_per_decision"],
        "ms_per_plan_cold": warm["ms_per_plan_cold"], "ms_per_plan_warm": warm["ms_per_plan_warm"],
        "reference": warm["reference"], "episodes": args.episodes, "cold_episodes": args.cold_episodes,
        "diffuser_published": DIFFUSER[maze],
        "expert_score_mean": float(np.mean(expert)),
        "expert_score_se": float(np.std(expert, ddof=1) / len(expert) ** 0.5),
        "minus_expert_mean": float(gap.mean()), "minus_expert_se": float(gap.std(ddof=1) / len(gap) ** 0.5),
        "expert_scores": expert,
        "scores": warm["normalized_scores"], "scores_cold": cold["normalized_scores"], "planner": warm["planner"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mazes", nargs="+", default=["umaze", "medium", "large"], choices=list(HORIZONS))
    parser.add_argument("--steps", type=int, default=1_000_000, help="data set size (environment steps)")
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget per maze (wall minutes)")
    parser.add_argument("--train-steps", type=int, default=200_000, help="training steps cap")
    parser.add_argument("--recipe", default=None, help="the rl domain's training recipe (e.g. window-mlp)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--cold-episodes", type=int, default=5, help="episodes without warm starts (timing)")
    defaults = PlannerConfig()
    parser.add_argument("--candidates", type=int, default=defaults.candidates)
    parser.add_argument("--replan-every", type=int, default=defaults.replan_every)
    parser.add_argument("--nfe", type=int, default=defaults.nfe)
    parser.add_argument("--warm-nfe", type=int, default=defaults.warm_nfe)
    parser.add_argument("--warm-level", type=float, default=defaults.warm_level,
                        help="noise level a warm start re-noises the previous plan to (1: a fresh plan)")
    parser.add_argument("--support-check", action=argparse.BooleanOptionalAction, default=defaults.support_check)
    parser.add_argument("--support-guidance", type=float, default=defaults.support_guidance)
    parser.add_argument("--speed-margin", type=float, default=defaults.speed_margin)
    parser.add_argument("--lookahead", type=int, default=defaults.lookahead)
    parser.add_argument("--seeds-from", type=int, default=0, help="first reset seed (planner settings were "
                        "chosen on seeds 100-119)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=str(Path.home() / ".minari" / "datasets"), help="MINARI_DATASETS_PATH")
    parser.add_argument("--models", default="/tmp/trajdiff-pointmaze-models")
    parser.add_argument("--reuse", action="store_true", help="evaluate existing models in --models")
    parser.add_argument("--out", type=Path, default=None, help="results file (default: results/pointmaze.json)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.mazes, args.steps, args.minutes, args.train_steps, args.episodes = ["umaze"], 5000, 0.3, 50, 2
        args.cold_episodes = 1
        args.root, args.models = "/tmp/trajdiff-pointmaze-quick", "/tmp/trajdiff-pointmaze-quick-models"
    torch.set_num_threads(args.threads)
    rows = [run_maze(maze, args, Path(args.root)) for maze in args.mazes]
    display = [{
        "maze": r["maze"],
        "warm": f"{r['score_mean']:.1f} ± {r['score_se']:.1f}",
        "cold": f"{r['score_mean_cold']:.1f} ± {r['score_se_cold']:.1f}" if r["score_mean_cold"] is not None else "-",
        "success": f"{r['success_rate']:.2f}",
        "ms_warm": f"{r['ms_per_decision_warm']:.1f}",
        "ms_cold": f"{r['ms_per_decision_cold']:.1f}" if r["ms_per_decision_cold"] is not None else "-",
        "cpu": f"{r['train_cpu_minutes']:.1f}",
        "steps": r["train_steps"],
        "diffuser": f"{r['diffuser_published']:.1f}",
        "expert": f"{r['expert_score_mean']:.1f} ± {r['expert_score_se']:.1f}",
        "gap": f"{r['minus_expert_mean']:+.1f} ± {r['minus_expert_se']:.1f}",
    } for r in rows]
    columns = ["maze", "warm", "cold", "success", "ms_warm", "ms_cold", "cpu", "steps", "expert", "gap", "diffuser"]
    table = markdown_table(display, columns,
                           ["maze", "score, warm starts", "score, cold plans", "success", "ms/decision warm",
                            "ms/decision cold", "training CPU-min", "training steps", "expert, same seeds",
                            "warm minus expert (paired)", "Diffuser (maze2d-v1)"])
    print(table)
    command = "benchmarks/pointmaze.py " + " ".join(sys.argv[1:])
    path = write_results("pointmaze", command, rows, args.out or results_path("pointmaze", args.quick), table=table)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
