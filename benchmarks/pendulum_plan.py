"""Planning in Pendulum-v1 from a locally collected noisy-expert Minari data set: nothing maze-specific.

The data set (`trajdiff datasets make gym-pendulum`) holds 300 episodes of an energy-pumping + PD expert
with torque noise; Minari's reference scores come from that expert (100) and a random policy (0).
The planner sees every step as a token (skip 1), holds the present clean, and executes its planned
action, replanning every step (warm-started from the previous plan, or from noise for comparison).

    .venv/bin/python benchmarks/pendulum_plan.py --minutes 10
    .venv/bin/python benchmarks/pendulum_plan.py --quick
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--data-episodes", type=int, default=300)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--horizon", type=int, default=31, help="planned steps after the present")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--root", default="/tmp/trajdiff-pendulum-minari")
    parser.add_argument("--model", default="/tmp/trajdiff-pendulum-model")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.episodes, args.data_episodes, args.minutes = 2, 20, 0.2
    torch.set_num_threads(args.threads)
    os.environ["MINARI_DATASETS_PATH"] = args.root
    make_pendulum(args.data_episodes, root=args.root, overwrite=True, progress=False)
    cpu0 = time.process_time()
    summary = api.train("rl", PENDULUM_ID, args.model, minutes=args.minutes, steps=200_000, history=1,
                        horizon=args.horizon, encoder={"skip": 1}, progress=False)
    cpu_minutes = (time.process_time() - cpu0) / 60
    rows = []
    for warm in (True, False):
        config = PlannerConfig(replan_every=1, candidates=1, nfe=8, warm_nfe=3, warm_start=warm)
        result = run_planner(api.load_model(args.model), "Pendulum-v1", episodes=args.episodes, seed=0, config=config)
        rows.append({
            "planner": "warm-started replans (3 NFE)" if warm else "plans from noise (8 NFE)",
            "score": f"{result['score_mean']:.1f} ± {result['score_se']:.1f}",
            "return": f"{result['return_mean']:.0f} ± {result['return_se']:.0f}",
            "ms": f"{result['ms_per_decision']:.1f}",
            "score_mean": result["score_mean"], "score_se": result["score_se"], "return_mean": result["return_mean"],
            "ms_per_decision": result["ms_per_decision"], "reference": result["reference"],
            "train_steps": summary.steps, "train_cpu_minutes": round(cpu_minutes, 2), "episodes": args.episodes,
        })
    table = markdown_table(rows, ["planner", "score", "return", "ms"],
                           ["Pendulum-v1 planner", "normalized score", "return", "ms/decision"])
    print(table)
    print(f"reference returns: random {rows[0]['reference']['min']:.0f}, expert {rows[0]['reference']['max']:.0f}; "
          f"training {summary.steps} steps, {cpu_minutes:.1f} CPU-min")
    command = "benchmarks/pendulum_plan.py " + " ".join(sys.argv[1:])
    path = write_results("pendulum_plan", command, rows, results_path("pendulum_plan", args.quick), table=table)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
