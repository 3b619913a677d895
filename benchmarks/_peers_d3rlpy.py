"""Runs inside the peers' own environment (d3rlpy): trains one offline-RL method on arrays and exports its policy.

    /tmp/d3env/bin/python benchmarks/_peers_d3rlpy.py DATA.npz METHOD OUT_DIR --cpu-minutes 30

DATA.npz holds observations, actions, rewards, terminals, timeouts (one row per step, episodes in order).
The policy is written as TorchScript (``policy.pt``, d3rlpy's ``save_policy``) so that trajdiff's own
environment evaluates it; ``train.json`` records steps and CPU minutes. Hyperparameters are d3rlpy's for
D4RL MuJoCo locomotion (its ``reproductions/offline`` scripts): IQL with returns scaled by 1000 /
(max - min episode return) and a cosine-annealed actor learning rate; TD3+BC with standardized
observations, alpha 2.5; BC with the library's defaults. No evaluation happens here.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def build(method: str, steps: int):  # noqa: ANN201 - d3rlpy objects
    import d3rlpy

    if method == "bc":
        return d3rlpy.algos.BCConfig().create(device="cpu:0")
    if method == "iql":
        return d3rlpy.algos.IQLConfig(
            actor_learning_rate=3e-4, critic_learning_rate=3e-4, batch_size=256, weight_temp=3.0, max_weight=100.0,
            expectile=0.7, reward_scaler=d3rlpy.preprocessing.ReturnBasedRewardScaler(multiplier=1000.0),
            actor_optim_factory=d3rlpy.optimizers.AdamFactory(
                lr_scheduler_factory=d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=steps)),
        ).create(device="cpu:0")
    if method == "td3plusbc":
        return d3rlpy.algos.TD3PlusBCConfig(
            actor_learning_rate=3e-4, critic_learning_rate=3e-4, batch_size=256, target_smoothing_sigma=0.2,
            target_smoothing_clip=0.5, alpha=2.5, update_actor_interval=2,
            observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(),
        ).create(device="cpu:0")
    raise SystemExit(f"unknown method {method}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("method", choices=["bc", "iql", "td3plusbc"])
    parser.add_argument("out")
    parser.add_argument("--cpu-minutes", type=float, default=30.0)
    parser.add_argument("--steps", type=int, default=1_000_000, help="d3rlpy's D4RL budget; the CPU cap stops first")
    parser.add_argument("--epoch", type=int, default=1000)
    args = parser.parse_args()
    import d3rlpy
    import torch

    torch.set_num_threads(1)
    d3rlpy.seed(0)
    arrays = np.load(args.data)
    dataset = d3rlpy.dataset.MDPDataset(
        observations=arrays["observations"].astype(np.float32), actions=arrays["actions"].astype(np.float32),
        rewards=arrays["rewards"].astype(np.float32), terminals=arrays["terminals"].astype(np.float32),
        timeouts=arrays["timeouts"].astype(np.float32))
    algo = build(args.method, args.steps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cpu0 = time.process_time()
    done = 0
    for epoch, _ in algo.fitter(dataset, n_steps=args.steps, n_steps_per_epoch=args.epoch, show_progress=False,
                                save_interval=10**9, logger_adapter=d3rlpy.logging.NoopAdapterFactory()):
        done = epoch * args.epoch
        if (time.process_time() - cpu0) / 60 >= args.cpu_minutes:
            break
    algo.save_policy(str(out / "policy.pt"))
    record = {"method": args.method, "steps": done, "cpu_minutes": round((time.process_time() - cpu0) / 60, 2),
              "d3rlpy": d3rlpy.__version__}
    (out / "train.json").write_text(json.dumps(record))
    print(json.dumps(record))


if __name__ == "__main__":
    main()
