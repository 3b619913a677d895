"""Planning in Pendulum-v1 from a locally collected noisy-expert Minari data set: nothing maze-specific.

The data set (`trajdiff datasets make gym-pendulum`) holds 300 episodes of an energy-pumping + PD expert
with torque noise; Minari's reference scores come from that expert (100) and a random policy (0).
The planner sees every step as a token (skip 1), holds the present clean, and executes its planned
action, replanning every step (warm-started from the previous plan, or from noise for comparison).
With value guidance (`trajdiff fit-value`, `--guide value`) a value of noisy plans is fitted on the
data set's discounted returns, several candidates are sampled with its gradient added and the one it
rates highest is executed; the candidate count and scale are chosen on reset seeds 100-104 (never
on the reported seeds 0-19) and recorded.

    .venv/bin/python benchmarks/pendulum_plan.py --minutes 10
    .venv/bin/python benchmarks/pendulum_plan.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, results_path, write_results  # noqa: E402

from trajdiff import api  # noqa: E402
from trajdiff.plugins.rl.collect import PENDULUM_ID, make_pendulum  # noqa: E402
from trajdiff.plugins.rl.planner import PlannerConfig  # noqa: E402
from trajdiff.plugins.rl.rollout import run_planner  # noqa: E402
from trajdiff.plugins.rl.value import fit_value, load_value  # noqa: E402

VALIDATION_SEEDS = 100
GUIDED = [(1, 0.0), (1, 3.0), (1, 10.0), (1, 30.0), (8, 0.0), (8, 10.0)]
"""(candidates, value-guidance scale) tried on the validation seeds."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--data-episodes", type=int, default=300)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--horizon", type=int, default=31, help="planned steps after the present")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--root", default="/tmp/trajdiff-pendulum-minari")
    parser.add_argument("--model", default="/tmp/trajdiff-pendulum-model")
    parser.add_argument("--value-steps", type=int, default=3000)
    parser.add_argument("--validation-episodes", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="reuse the data set and model of an earlier run")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.episodes, args.data_episodes, args.minutes, args.value_steps, args.validation_episodes = 2, 20, 0.2, 50, 1
    torch.set_num_threads(args.threads)
    os.environ["MINARI_DATASETS_PATH"] = args.root
    if not args.reuse:
        make_pendulum(args.data_episodes, root=args.root, overwrite=True, progress=False)
    cpu0 = time.process_time()
    if args.reuse:
        steps = json.loads((Path(args.model) / "pendulum_train.json").read_text())  # the earlier run's figures
    else:
        trained = api.train("rl", PENDULUM_ID, args.model, minutes=args.minutes, steps=200_000, history=1,
                            horizon=args.horizon, encoder={"skip": 1}, progress=False)
        steps = {"steps": trained.steps, "cpu_minutes": (time.process_time() - cpu0) / 60}
        (Path(args.model) / "pendulum_train.json").write_text(json.dumps(steps))
    cpu1 = time.process_time()
    record = fit_value(args.model, api.load_model(args.model), PENDULUM_ID, steps=args.value_steps)
    value_cpu = (time.process_time() - cpu1) / 60
    value = load_value(args.model)
    print(f"value: {record['windows']} windows, {record['steps']} steps, validation loss "
          f"{record['validation_loss']:.3f}, {value_cpu:.1f} CPU-min")
    validation = {}
    for candidates, scale in GUIDED:
        config = PlannerConfig(replan_every=1, candidates=candidates, nfe=8, warm_nfe=3, value_guidance=scale)
        result = run_planner(api.load_model(args.model), "Pendulum-v1", episodes=args.validation_episodes,
                             seed=VALIDATION_SEEDS, config=config, value=value)
        validation[f"{candidates}x{scale}"] = result["score_mean"]
        print(f"validation seeds: {candidates} candidates, scale {scale}: score {result['score_mean']:.1f}")
    chosen = max(GUIDED, key=lambda cs: validation[f"{cs[0]}x{cs[1]}"])
    rows = []
    for name in ("warm", "noise", "value"):
        warm = name != "noise"
        candidates, scale = chosen if name == "value" else (1, 0.0)
        config = PlannerConfig(replan_every=1, candidates=candidates, nfe=8, warm_nfe=3, warm_start=warm,
                               value_guidance=scale)
        result = run_planner(api.load_model(args.model), "Pendulum-v1", episodes=args.episodes, seed=0, config=config,
                             value=value if name == "value" else None)
        label = {"warm": "warm-started replans (3 NFE)", "noise": "plans from noise (8 NFE)",
                 "value": f"value chosen on validation: {candidates} candidate(s), scale {scale} (3 NFE warm)"}[name]
        rows.append({
            "planner": label, "value_guidance": scale, "candidates": candidates,
            "validation_scores": validation if name == "value" else None,
            "value_cpu_minutes": round(value_cpu, 2) if name == "value" else 0.0,
            "score": f"{result['score_mean']:.1f} ± {result['score_se']:.1f}",
            "return": f"{result['return_mean']:.0f} ± {result['return_se']:.0f}",
            "ms": f"{result['ms_per_decision']:.1f}",
            "score_mean": result["score_mean"], "score_se": result["score_se"], "return_mean": result["return_mean"],
            "ms_per_decision": result["ms_per_decision"], "reference": result["reference"],
            "train_steps": steps["steps"], "train_cpu_minutes": round(steps["cpu_minutes"], 2),
            "episodes": args.episodes,
        })
    table = markdown_table(rows, ["planner", "score", "return", "ms"],
                           ["Pendulum-v1 planner", "normalized score", "return", "ms/decision"])
    print(table)
    print(f"reference returns: random {rows[0]['reference']['min']:.0f}, expert {rows[0]['reference']['max']:.0f}; "
          f"training {steps['steps']} steps, {steps['cpu_minutes']:.1f} CPU-min; value {value_cpu:.1f} CPU-min")
    command = "benchmarks/pendulum_plan.py " + " ".join(sys.argv[1:])
    path = write_results("pendulum_plan", command, rows, results_path("pendulum_plan", args.quick), table=table)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
