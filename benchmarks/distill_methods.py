"""Which distillation method: `trajectory` against `consistency` (`trajdiff.core.distillation`) at equal budgets,
on a small domain where the answer is cheap to measure.

Domain: points going round circles, 12 tokens of 2 coordinates, the first 4 observed; the radius is 0.5 or
1.5 and, for half the sequences, grows by 60% after the observed tokens, so every history has a future of two
modes. Teacher: a transformer (width 64, depth 2) trained with per-token levels (history held clean half the
time) for --teacher-steps. Reference: the teacher's own samples at 64 network evaluations (UniPC, log-SNR
spacing) for 48 held-out histories, 64 samples each. Score: the energy distance between a sampler's futures
and the reference, per history, averaged (0 for equal laws; the reference against a second draw of itself
gives the Monte-Carlo floor). Rows: the teacher at 1 to 20 evaluations, and students of each method, started
from the teacher's weights, trained for the steps that fill --budgets CPU-seconds each (the cost of a step and
the fixed cost, such as generating the pool of teacher samples, measured on probes of 10 and 30 steps; the
trajectory method also from the teacher's own samples instead of the data), sampled with the `consistency`
solver at 1, 2 and 4.

    .venv/bin/python benchmarks/distill_methods.py      # writes benchmarks/results/distill-methods.json
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, results_path, write_results  # noqa: E402

from trajdiff.core.conditional import Known, sample_conditional  # noqa: E402
from trajdiff.core.distillation import DistillConfig, Distiller  # noqa: E402
from trajdiff.core.model import DiffusionModel  # noqa: E402
from trajdiff.core.training import TrainConfig, TrainData, Trainer  # noqa: E402

TOKENS, HISTORY = 12, 4


def circles(count: int, seed: int) -> torch.Tensor:
    """[count, 12, 2]: random phase and speed, radius 0.5 or 1.5, x1.6 after the history for half of them."""
    g = torch.Generator().manual_seed(seed)
    radius = 0.5 + (torch.rand(count, generator=g) < 0.5).float()
    speed = 0.2 + 0.2 * torch.rand(count, 1, generator=g)
    phase = 2 * math.pi * torch.rand(count, 1, generator=g)
    angle = phase + speed * torch.arange(TOKENS)[None, :]
    grows = (torch.rand(count, 1, generator=g) < 0.5).float() * (torch.arange(TOKENS)[None, :] >= HISTORY).float()
    scale = radius[:, None] * (1 + 0.6 * grows)
    return scale[..., None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)


def energy(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean())


def draw(model: DiffusionModel, histories: torch.Tensor, samples: int, nfe: int, solver: str, seed: int,
         spacing: str = "uniform") -> torch.Tensor:
    """Futures [samples, N, (12 - 4) * 2]."""
    drawn = sample_conditional(model.denoiser(), model.schedule, Known.history(histories, HISTORY), samples=samples,
                               nfe=nfe, solver=solver, plan_options={"spacing": spacing} if spacing != "uniform"
                               else None, generator=torch.Generator().manual_seed(seed))
    return drawn[:, :, HISTORY:].flatten(2)


def distance(samples: torch.Tensor, reference: torch.Tensor) -> float:
    return sum(energy(samples[:, j], reference[:, j]) for j in range(samples.shape[1])) / samples.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-steps", type=int, default=1500)
    parser.add_argument("--budgets", type=float, nargs="+", default=[60.0, 180.0], help="CPU seconds per student")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.teacher_steps, args.budgets = 50, [3.0]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = circles(8192, 1)
    teacher = DiffusionModel({"kind": "transformer", "dim": 2, "width": 64, "depth": 2, "heads": 4})
    started = time.monotonic()
    Trainer(teacher, TrainData(data), TrainConfig(steps=args.teacher_steps, batch_size=128, lr=2e-3, warmup_steps=50,
                                                  history=HISTORY, history_prob=0.5, progress=False)).fit()
    teacher_seconds = time.monotonic() - started
    histories = circles(48, 99)
    reference = draw(teacher, histories, 64, 64, "unipc", 1, "logsnr")
    rows = [{"method": "teacher, unipc logsnr, second draw (Monte-Carlo floor)", "nfe": 64,
             "energy": distance(draw(teacher, histories, 64, 64, "unipc", 2, "logsnr"), reference)}]
    for nfe in (1, 2, 4, 10, 20):
        rows.append({"method": "teacher, dpmpp2m", "nfe": nfe,
                     "energy": distance(draw(teacher, histories, 64, nfe, "dpmpp2m", 5), reference)})
        if nfe > 1:
            rows.append({"method": "teacher, unipc logsnr", "nfe": nfe,
                         "energy": distance(draw(teacher, histories, 64, nfe, "unipc", 5, "logsnr"), reference)})

    def windows(count: int, generator: torch.Generator) -> tuple[torch.Tensor, None, None]:
        return data[torch.randint(len(data), (count,), generator=generator)], None, None

    def distil(method: str, source: str, steps: int) -> tuple[Distiller, float]:
        config = DistillConfig(method=method, steps=steps, history=HISTORY, history_prob=0.5, progress=False)
        distiller = Distiller(teacher, config, horizon=TOKENS, dim=2, draw=windows if source == "data" else None)
        cpu = time.process_time()
        distiller.fit()
        return distiller, time.process_time() - cpu

    kinds = (("trajectory", "data"), ("consistency", "data"), ("trajectory", "teacher samples"))
    costs = {}  # CPU seconds per step and fixed (the pool of teacher samples), from probes of 10 and 30 steps
    for kind in kinds:
        short, long = distil(*kind, 10)[1], distil(*kind, 30)[1]
        costs[kind] = ((long - short) / 20, max(0.0, short - 10 * (long - short) / 20))
    for budget in args.budgets:
        for method, source in kinds:
            per_step, fixed = costs[method, source]
            steps = max(1, round((budget - fixed) / per_step))
            distiller, cpu = distil(method, source, steps)
            for nfe in (1, 2, 4):
                score = distance(draw(distiller.student, histories, 64, nfe, "consistency", 5), reference)
                rows.append({"method": f"student, {method}, from {source}", "nfe": nfe, "budget_cpu_s": budget,
                             "cpu_s": cpu, "steps": steps, "teacher_evaluations": distiller.teacher_evaluations,
                             "energy": score})
            print(f"  {method} from {source}, {budget:.0f} CPU-s: {steps} steps in {cpu:.0f} CPU-s", flush=True)
    command = "python benchmarks/distill_methods.py " + " ".join(sys.argv[1:])
    path = write_results("distill-methods", command.strip(), rows, args.out or results_path("distill-methods",
                                                                                             args.quick),
                         teacher_train_s=teacher_seconds)
    print(markdown_table(rows, ["method", "nfe", "budget_cpu_s", "cpu_s", "steps", "energy"]))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
