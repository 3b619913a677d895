"""Behaviour policies for locomotion data sets: SAC stopped early, shipped as small safetensors files.

D4RL's "medium" data came from a SAC policy stopped at about a third of expert return and its
"medium-replay" data from that run's replay buffer (Fu et al., 2020). `train_behaviour` reruns that
recipe with Stable-Baselines3's SAC (its default hyperparameters, one torch thread): every
``eval_every`` steps the stochastic policy is scored with the numpy actor that will be shipped, and
training stops once its mean return reaches ``target_return``. The actor (two hidden layers, a mean
and a log-std head) is written as safetensors (well under 1 MB), and the replay buffer as a
compressed ``.npz`` for the medium-replay set. `GaussianActor` runs the shipped actor in numpy, so
remaking "medium" needs neither torch nor Stable-Baselines3.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.rl.envs import make_env

POLICY_DIR = Path(__file__).resolve().parent / "policies"
TRAINING_DIR = Path("~/.cache/trajdiff/behaviour")
"""Where the training command writes by default (its replay buffer makes the medium-replay set)."""
LAYERS = ("latent.0", "latent.1", "mu", "log_std")


class GaussianActor:
    """A tanh-squashed Gaussian policy (SAC's actor) in numpy, read from a safetensors file."""

    def __init__(self, weights: dict[str, np.ndarray], low: np.ndarray, high: np.ndarray,
                 meta: dict[str, str] | None = None) -> None:
        missing = [f"{name}.{part}" for name in LAYERS for part in ("weight", "bias")
                   if f"{name}.{part}" not in weights]
        if missing:
            raise DataError(f"behaviour policy weights lack {missing}")
        self.weights = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
        self.low, self.high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        self.meta = dict(meta or {})

    @classmethod
    def load(cls, path: str | Path) -> GaussianActor:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise DataError(f"behaviour policy file {path} does not exist")
        with safe_open(str(path), framework="numpy") as handle:
            weights = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
            meta = handle.metadata() or {}
        low, high = weights.pop("action_low"), weights.pop("action_high")
        return cls(weights, low, high, meta)

    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        tensors = {k: v.astype(np.float32) for k, v in self.weights.items()}
        tensors["action_low"], tensors["action_high"] = self.low.astype(np.float32), self.high.astype(np.float32)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata={k: str(v) for k, v in self.meta.items()})

    def _layer(self, name: str, x: np.ndarray) -> np.ndarray:
        return x @ self.weights[f"{name}.weight"].T + self.weights[f"{name}.bias"]

    def __call__(self, obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """The action for ``obs``: a sample when ``rng`` is given, else the mean (tanh of the Gaussian's mean)."""
        h = np.maximum(self._layer("latent.0", np.asarray(obs, dtype=np.float64)), 0.0)
        h = np.maximum(self._layer("latent.1", h), 0.0)
        mean = self._layer("mu", h)
        if rng is not None:
            std = np.exp(np.clip(self._layer("log_std", h), -20.0, 2.0))
            mean = mean + std * rng.standard_normal(mean.shape)
        squashed = np.tanh(mean)
        return (self.low + (squashed + 1.0) * 0.5 * (self.high - self.low)).astype(np.float32)


def shipped_policy(env_id: str, trained: Path | None = None) -> Path:
    """The behaviour policy for ``env_id`` (e.g. ``Hopper-v5``): the one shipped with the package, else the one
    the training command wrote to ``trained`` (default `TRAINING_DIR`)."""
    name = f"{env_id.lower()}-medium.safetensors"
    for folder in (POLICY_DIR, (trained or TRAINING_DIR).expanduser()):
        if (folder / name).is_file():
            return folder / name
    have = sorted(p.name for p in POLICY_DIR.glob("*.safetensors")) if POLICY_DIR.is_dir() else []
    raise ConfigError(f"no behaviour policy for {env_id!r} is shipped (have {have}) or trained in "
                      f"{trained or TRAINING_DIR}; train one with `python -m trajdiff.plugins.rl.behaviour {env_id}`")


def evaluate(actor: GaussianActor, env_id: str, episodes: int, seed: int, stochastic: bool = True) -> list[float]:
    """Returns of ``episodes`` episodes (reset seeds ``seed``, ``seed + 1``, ...)."""
    env = make_env(env_id)
    rng = np.random.default_rng(seed)
    returns = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(actor(obs, rng if stochastic else None))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def _actor_from_sb3(model: Any, env: Any, meta: dict[str, Any]) -> GaussianActor:
    actor = model.actor
    linears = [m for m in actor.latent_pi if hasattr(m, "weight")]
    weights = {}
    for name, module in zip(LAYERS, [*linears, actor.mu, actor.log_std], strict=True):
        weights[f"{name}.weight"] = module.weight.detach().cpu().numpy()
        weights[f"{name}.bias"] = module.bias.detach().cpu().numpy()
    return GaussianActor(weights, env.action_space.low, env.action_space.high, meta)


def train_behaviour(env_id: str, out: str | Path, *, target_return: float, max_steps: int = 400_000,
                    eval_every: int = 5000, eval_episodes: int = 5, seed: int = 0, threads: int = 1,
                    learning_starts: int = 10_000, progress: bool = True,
                    resume: str | Path | None = None) -> dict[str, Any]:
    """Trains SAC on ``env_id`` until the stochastic policy's mean return reaches ``target_return``;
    writes ``out/<env>-medium.safetensors``, ``out/<env>-replay.npz``, ``out/<env>-train.json`` and, to continue
    training later with ``resume=out/<env>-sac`` (the ``.zip`` and ``-replay.pkl`` pair), the SAC state."""
    try:
        import torch
        from stable_baselines3 import SAC
        from stable_baselines3.common.callbacks import BaseCallback
    except ImportError:
        raise ConfigError("training a behaviour policy needs stable-baselines3: "
                          "pip install 'trajdiff[bench]'") from None
    torch.set_num_threads(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = make_env(env_id)
    if resume is not None:
        model = SAC.load(f"{resume}.zip", env=env, device="cpu")
        model.load_replay_buffer(f"{resume}-replay.pkl")
    else:
        model = SAC("MlpPolicy", env, seed=seed, learning_starts=learning_starts, verbose=0, device="cpu")
    curve: list[dict[str, float]] = []
    cpu0, wall0 = time.process_time(), time.monotonic()

    class Stop(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every or self.num_timesteps < model.learning_starts:
                return True
            actor = _actor_from_sb3(model, env, {})
            returns = evaluate(actor, env_id, eval_episodes, seed=10_000 + self.num_timesteps)
            mean = float(np.mean(returns))
            curve.append({"steps": self.num_timesteps, "return": mean,
                          "cpu_minutes": (time.process_time() - cpu0) / 60})
            if progress:
                print(f"{env_id} step {self.num_timesteps}: return {mean:.0f} "
                      f"({curve[-1]['cpu_minutes']:.1f} CPU-min)", flush=True)
            actor.meta = {"env_id": env_id, "steps": self.num_timesteps, "eval_return": mean}
            actor.save(out / f"{env_id.lower()}-checkpoint.safetensors")  # usable if the run is stopped
            return mean < target_return

    model.learn(total_timesteps=max(0, max_steps - model.num_timesteps), callback=Stop(),
                reset_num_timesteps=resume is None)
    steps = int(model.num_timesteps)
    cpu_minutes = (time.process_time() - cpu0) / 60
    meta = {"env_id": env_id, "algorithm": "stable-baselines3 SAC (default hyperparameters)",
            "steps": steps, "target_return": target_return, "seed": seed,
            "eval_return": curve[-1]["return"] if curve else float("nan"), "cpu_minutes": round(cpu_minutes, 2)}
    actor = _actor_from_sb3(model, env, meta)
    name = env_id.lower()
    actor.save(out / f"{name}-medium.safetensors")
    buffer = model.replay_buffer
    n = buffer.buffer_size if buffer.full else buffer.pos
    np.savez_compressed(out / f"{name}-replay.npz", observations=buffer.observations[:n, 0],
                        next_observations=buffer.next_observations[:n, 0], actions=buffer.actions[:n, 0],
                        rewards=buffer.rewards[:n, 0], dones=buffer.dones[:n, 0], timeouts=buffer.timeouts[:n, 0])
    summary = {**meta, "wall_minutes": round((time.monotonic() - wall0) / 60, 2), "threads": threads,
               "curve": curve}
    (out / f"{name}-train.json").write_text(json.dumps(summary, indent=2))
    model.save(str(out / f"{name}-sac.zip"))
    model.save_replay_buffer(str(out / f"{name}-sac-replay.pkl"))
    env.close()
    return summary


def main(argv: list[str] | None = None) -> None:
    """``python -m trajdiff.plugins.rl.behaviour ENV [--out DIR] [--target R]``."""
    import argparse

    from trajdiff.plugins.rl.locomotion import REFERENCE

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("env_id")
    parser.add_argument("--out", default=str(TRAINING_DIR), help=f"default {TRAINING_DIR}")
    parser.add_argument("--target", type=float, default=None, help="default: a third of the expert reference")
    parser.add_argument("--max-steps", type=int, default=400_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", default=None, help="continue a run: OUT/<env>-sac (its .zip and -replay.pkl)")
    args = parser.parse_args(argv)
    if args.target is None and args.env_id not in REFERENCE:
        raise SystemExit(f"no expert reference for {args.env_id}; pass --target")
    target = args.target if args.target is not None else REFERENCE[args.env_id]["expert"] / 3
    summary = train_behaviour(args.env_id, Path(args.out).expanduser(), target_return=target, max_steps=args.max_steps,
                              threads=args.threads, seed=args.seed, resume=args.resume)
    print(json.dumps({k: v for k, v in summary.items() if k != "curve"}))


if __name__ == "__main__":
    main()
