"""Sampler accuracy against function evaluations (NFE) on a closed-form Gaussian problem.

Data are N(mean, cov) in D = 8 dimensions with a random non-diagonal covariance (fixed seed), as a
sequence of T = 1 token; the denoiser is the exact one (`gaussian_denoiser`), so every error below
is the solver's own. For each schedule x solver x NFE we draw N = 50,000 samples (float64, fixed
seeds) and report:

- ``w2``: the 2-Wasserstein distance between the Gaussian fitted to the samples and the true one
  (includes Monte-Carlo noise, see the ``mc_floor`` rows);
- ``flow_map_mae`` (deterministic solvers): the mean absolute error against the exact
  probability-flow map of the same starting noise, free of Monte-Carlo noise;
- ``w2_law`` (deterministic solvers): the W2 of the solver's exact output *distribution*. With an
  exact Gaussian denoiser a deterministic solver is an affine map x1 -> A x1 + b, which a least-squares
  fit over the 50,000 (start, sample) pairs recovers to round-off; with x1 ~ N(0, s1^2 I) the output
  law is N(b, s1^2 A A^T). Also free of Monte-Carlo noise.

Also: the adaptive probability-flow ODE (`sample_ode`, dopri5) at several tolerances, as shipped
(a step pinned onto its last level with torchdiffeq's ``step_t``) and without that pin (``dopri5,
no step_t``: the solver steps past k_end and interpolates back, evaluating negative levels); a
baseline, diffusers' DPMSolverMultistepScheduler driven by the same exact denoiser on its own
discrete schedules (NFE 5-100); the Monte-Carlo floor (W2 of 50,000 exact samples, over 20 seeds)
and the exact flow map of each schedule's starting noise; and the issue's target: DPM-Solver++ at
10 NFE within 10% of DDPM's W2 at 1000 steps (cosine schedule).

    .venv/bin/python benchmarks/samplers.py            # full run, writes benchmarks/results/samplers.json
    .venv/bin/python benchmarks/samplers.py --quick    # smoke run (N = 2,000, few NFE), temp file
    .venv/bin/python benchmarks/samplers.py --show     # print the tables of the saved results
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, results_path, write_results  # noqa: E402

from trajdiff.core import plans, samplers  # noqa: E402
from trajdiff.core.denoiser import CountingDenoiser, gaussian_denoiser  # noqa: E402
from trajdiff.core.ode import sample_ode  # noqa: E402
from trajdiff.core.schedules import build_schedule  # noqa: E402

NAME = "samplers"
COMMAND = ".venv/bin/python benchmarks/samplers.py"
DIM = 8
SCHEDULES = ["cosine", "linear", "edm", "flow"]
SOLVERS = ["ddpm", "ddim", "dpmpp2m", "euler", "heun"]
DETERMINISTIC = {"ddim", "dpmpp2m", "euler", "heun"}
CHUNK = 10_000  # rows per sampler call for fixed-step solvers (faster than one 50,000-row batch)
DIFFUSERS_NFES = [5, 10, 20, 50, 100]  # the baseline, at the budgets that matter for the target
K_END = 1e-3  # sample_ode's default last level before its final denoising step
# "dopri5": sample_ode as shipped, which lands a step exactly on k_end (torchdiffeq's step_t option).
# "dopri5, no step_t": without that pin the solver steps past k_end and evaluates levels < k_end.
ODE_VARIANTS = {
    "dopri5": lambda: None,
    "dopri5, no step_t": lambda: {"step_t": None},
}
NFES = [5, 10, 20, 50, 100, 1000]
TOLERANCES = [1e-2, 1e-3, 1e-4, 1e-5]
PROBLEM_SEED, START_SEED, SOLVER_SEED = 0, 1, 2
FLOOR_SEEDS = 20
TARGET = "DPM-Solver++ at 10 NFE within 10% of DDPM's W2 at 1000 steps (cosine)"


def problem() -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed Gaussian: mean ~ N(0, I), cov = A A^T / D + 0.1 I with A ~ N(0, 1)^{D x D}."""
    g = torch.Generator().manual_seed(PROBLEM_SEED)
    a = torch.randn(DIM, DIM, generator=g, dtype=torch.float64)
    cov = a @ a.T / DIM + 0.1 * torch.eye(DIM, dtype=torch.float64)
    mean = torch.randn(DIM, generator=g, dtype=torch.float64)
    return mean, cov


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def w2_gaussians(m1: np.ndarray, c1: np.ndarray, m2: np.ndarray, c2: np.ndarray) -> float:
    """Closed-form W2 between N(m1, c1) and N(m2, c2)."""
    root2 = _psd_sqrt(c2)
    cross = _psd_sqrt(root2 @ c1 @ root2)
    value = float(np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2.0 * cross))
    return math.sqrt(max(value, 0.0))


def w2_fitted(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> float:
    """W2 between the Gaussian fitted to ``samples`` ([N, D]) and N(mean, cov)."""
    s = samples.numpy()
    return w2_gaussians(s.mean(0), np.cov(s.T), mean.numpy(), cov.numpy())


def w2_law(start: torch.Tensor, out: torch.Tensor, sigma1: float, mean: torch.Tensor, cov: torch.Tensor) -> float:
    """W2 of the exact output law of an affine sampler (recovered by least squares) from N(mean, cov)."""
    x = np.concatenate([start.numpy(), np.ones((start.shape[0], 1))], axis=1)
    coef, *_ = np.linalg.lstsq(x, out.numpy(), rcond=None)
    a, b = coef[:-1].T, coef[-1]  # out = a @ x1 + b
    return w2_gaussians(b, sigma1**2 * a @ a.T, mean.numpy(), cov.numpy())


def exact_flow_map(x1: torch.Tensor, schedule, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """x1 ([N, D], at level 1) -> x0 along the exact probability-flow ODE of N(mean, cov)."""
    eigval, eigvec = torch.linalg.eigh(cov)
    alpha1, sigma1 = schedule.alpha_sigma(torch.tensor(1.0, dtype=torch.float64))
    z = ((x1 - alpha1 * mean) @ eigvec) / torch.sqrt(alpha1**2 * eigval + sigma1**2)  # constant along the flow
    return mean + (z * eigval.sqrt()) @ eigvec.T


def steps_for(solver: str, nfe: int) -> int:
    """Heun costs 2 evaluations per step except the last (Euler onto level 0): 2 S - 1 <= nfe."""
    if solver == "heun":
        return max(1, (nfe + 1) // 2)
    return nfe


def start_state(schedule, n: int) -> torch.Tensor:
    plan = plans.full_sequence(1, 1)
    g = torch.Generator().manual_seed(START_SEED)
    return samplers.initial_state((n, 1, DIM), plan, schedule, generator=g, dtype=torch.float64)


def run_task(task: tuple[str, str, list, int]) -> list[dict[str, Any]]:
    """One schedule x solver (or x the adaptive ODE) over its NFE budgets / tolerances."""
    torch.set_num_threads(1)
    schedule_name, solver, budgets, n = task
    mean, cov = problem()
    schedule = build_schedule(schedule_name)
    x1 = start_state(schedule, n)
    sigma1 = float(schedule.alpha_sigma(torch.tensor(1.0, dtype=torch.float64))[1])
    exact = exact_flow_map(x1[:, 0], schedule, mean, cov)
    rows = []
    for budget in budgets:
        counter = CountingDenoiser(gaussian_denoiser(mean, cov, schedule))
        start = time.perf_counter()
        error = None
        if solver in ODE_VARIANTS:
            lowest = [math.inf]

            def watched(x, k, cond=None, counter=counter, lowest=lowest):
                lowest[0] = min(lowest[0], float(k.min()))
                return counter(x, k, cond)

            try:
                result = sample_ode(
                    watched, x1.clone(), schedule, rtol=budget, atol=budget, options=ODE_VARIANTS[solver]()
                )
                out, nfe, steps = result.x[:, 0], result.nfe, None
                assert nfe == counter.calls
            except AssertionError as exc:  # torchdiffeq's step-size underflow
                out, nfe, steps, error = None, counter.calls, None, f"{type(exc).__name__}: {exc}"
        else:
            steps = steps_for(solver, budget)
            g = torch.Generator().manual_seed(SOLVER_SEED)
            plan = plans.full_sequence(1, steps)
            # Rows are independent under fixed steps, so the batch runs in cache-sized chunks (same
            # result for deterministic solvers; DDPM draws its noise chunk by chunk from one generator).
            chunks = [
                samplers.sample(counter, part.clone(), plan, schedule, solver=solver, generator=g)[:, 0]
                for part in x1.split(CHUNK)
            ]
            out = torch.cat(chunks)
            nfe = counter.calls // len(chunks)
        seconds = time.perf_counter() - start
        ode = solver in ODE_VARIANTS
        row: dict[str, Any] = {
            "method": "trajdiff",
            "kind": "ode" if ode else "fixed_steps",
            "schedule": schedule_name,
            "solver": solver,
        }
        if ode:
            row["tol"] = budget
        else:
            row["nfe_target"] = budget
            row["steps"] = steps
        row["nfe"] = nfe
        if ode:
            row["min_level"] = lowest[0]  # the lowest noise level the denoiser was asked about
        if error is not None:
            row["error"] = error
            row["seconds"] = seconds
            rows.append(row)
            continue
        row["w2"] = w2_fitted(out, mean, cov)
        if solver in DETERMINISTIC or ode:
            row["flow_map_mae"] = (out - exact).abs().mean().item()
            row["w2_law"] = w2_law(x1[:, 0], out, sigma1, mean, cov)
        row["seconds"] = seconds
        rows.append(row)
    return rows


def run_diffusers_task(task: tuple[str, str, list, int]) -> list[dict[str, Any]]:
    """Baseline: diffusers' DPMSolverMultistepScheduler (DPM-Solver++(2M), its defaults: 1000 training
    steps, linspace timesteps, first-order final step to sigma = 0) driven by the same exact denoiser,
    with its own discrete schedule (``linear`` betas, or ``squaredcos_cap_v2`` for ``cosine``)."""
    from diffusers import DPMSolverMultistepScheduler

    torch.set_num_threads(1)
    schedule_name, _, budgets, n = task
    betas = {"linear": "linear", "cosine": "squaredcos_cap_v2"}[schedule_name]
    mean, cov = problem()
    eigval, eigvec = torch.linalg.eigh(cov)
    rows = []
    for budget in budgets:
        scheduler = DPMSolverMultistepScheduler(beta_schedule=betas)
        # 1000 inference steps over 1000 training steps repeat a timestep under diffusers' linspace
        # spacing (a zero step in log-SNR, NaN samples), so the largest budget runs 999 steps.
        steps = min(budget, scheduler.config.num_train_timesteps - 1)
        scheduler.set_timesteps(steps)
        alpha_bar = scheduler.alphas_cumprod.double()
        g = torch.Generator().manual_seed(START_SEED)
        x = torch.randn(n, 1, DIM, generator=g, dtype=torch.float64) * scheduler.init_noise_sigma
        x1 = x[:, 0].clone()
        first = int(scheduler.timesteps[0])
        a1, s1 = alpha_bar[first].sqrt(), (1 - alpha_bar[first]).sqrt()
        z = ((x1 - a1 * mean) @ eigvec) / torch.sqrt(a1**2 * eigval + s1**2)
        exact = mean + (z * eigval.sqrt()) @ eigvec.T
        calls = 0
        start = time.perf_counter()
        for t in scheduler.timesteps:
            a, s = alpha_bar[int(t)].sqrt(), (1 - alpha_bar[int(t)]).sqrt()
            x0 = mean + ((a * eigval / (a * a * eigval + s * s)) * ((x - a * mean) @ eigvec)) @ eigvec.T
            eps = (x - a * x0) / s  # the exact Gaussian denoiser, as epsilon prediction
            calls += 1
            x = scheduler.step(eps, t, x).prev_sample
        seconds = time.perf_counter() - start
        out = x[:, 0]
        rows.append(
            {
                "method": "diffusers",
                "kind": "fixed_steps",
                "schedule": schedule_name,
                "solver": "DPMSolverMultistep",
                "betas": betas,
                "nfe_target": budget,
                "steps": steps,
                "nfe": calls,
                "w2": w2_fitted(out, mean, cov),
                "flow_map_mae": (out - exact).abs().mean().item(),
                "w2_law": w2_law(x1, out, float(scheduler.init_noise_sigma), mean, cov),
                "seconds": seconds,
            }
        )
    return rows


def run_any(task: tuple[str, str, list, int]) -> list[dict[str, Any]]:
    return run_diffusers_task(task) if task[1] == "diffusers" else run_task(task)


def reference_rows(n: int) -> list[dict[str, Any]]:
    """The Monte-Carlo floor (exact samples, 20 seeds) and the exact flow map of each start."""
    mean, cov = problem()
    chol = torch.linalg.cholesky(cov)
    floors = []
    for seed in range(FLOOR_SEEDS):
        g = torch.Generator().manual_seed(1000 + seed)
        draws = mean + torch.randn(n, DIM, generator=g, dtype=torch.float64) @ chol.T
        floors.append(w2_fitted(draws, mean, cov))
    rows = [
        {
            "method": "exact sampling",
            "kind": "mc_floor",
            "n": n,
            "seeds": FLOOR_SEEDS,
            "w2": float(np.median(floors)),
            "w2_min": min(floors),
            "w2_max": max(floors),
            "w2_first_seed": floors[0],
        }
    ]
    for schedule_name in SCHEDULES:
        schedule = build_schedule(schedule_name)
        x1 = start_state(schedule, n)[:, 0]
        sigma1 = float(schedule.alpha_sigma(torch.tensor(1.0, dtype=torch.float64))[1])
        exact = exact_flow_map(x1, schedule, mean, cov)
        rows.append(
            {
                "method": "exact flow map",
                "kind": "flow_map_reference",
                "schedule": schedule_name,
                "n": n,
                "w2": w2_fitted(exact, mean, cov),
                "w2_law": w2_law(x1, exact, sigma1, mean, cov),
            }
        )
    return rows


def target_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def find(solver: str, nfe: int) -> dict[str, Any] | None:
        for r in rows:
            if (
                r["kind"] == "fixed_steps"
                and r["schedule"] == "cosine"
                and r["solver"] == solver
                and r["nfe_target"] == nfe
            ):
                return r
        return None

    def first_within(solver: str, bound: float) -> int | None:
        hits = [
            r["nfe"]
            for r in rows
            if r["kind"] == "fixed_steps" and r["schedule"] == "cosine" and r["solver"] == solver and r["w2"] <= bound
        ]
        return min(hits) if hits else None

    ours, ref = find("dpmpp2m", 10), find("ddpm", 1000)
    if ours is None or ref is None:
        return {"method": "trajdiff", "kind": "target", "target": TARGET, "pass": None}
    ratio = ours["w2"] / ref["w2"]
    return {
        "method": "trajdiff",
        "kind": "target",
        "target": TARGET,
        "schedule": "cosine",
        "dpmpp2m_nfe": ours["nfe"],
        "dpmpp2m_w2": ours["w2"],
        "ddpm_nfe": ref["nfe"],
        "ddpm_w2": ref["w2"],
        "ratio": ratio,
        "pass": bool(ratio <= 1.10),
        "dpmpp2m_w2_law": ours.get("w2_law"),
        "dpmpp2m_nfe_within_10pct": first_within("dpmpp2m", 1.10 * ref["w2"]),
        "diffusers_dpmpp2m_nfe10_w2": (find("DPMSolverMultistep", 10) or {}).get("w2"),
    }


def tables(payload: dict[str, Any]) -> str:
    rows = payload["rows"]
    fixed = [r for r in rows if r["kind"] == "fixed_steps"]
    nfes = sorted({r["nfe_target"] for r in fixed})
    out = []

    def pivot(metric: str, solvers: list[str]) -> list[dict[str, Any]]:
        table = []
        for schedule in SCHEDULES:
            for solver in solvers:
                cells = {r["nfe_target"]: r for r in fixed if r["schedule"] == schedule and r["solver"] == solver}
                if not cells:
                    continue
                label = (
                    f"diffusers DPMSolverMultistep ({cells[min(cells)]['betas']} betas)"
                    if solver == "DPMSolverMultistep"
                    else solver
                )
                line: dict[str, Any] = {"schedule": schedule, "solver": label}
                for nfe in nfes:
                    r = cells.get(nfe)
                    if r is not None and metric in r:
                        line[str(nfe)] = r[metric]
                        if r["nfe"] != nfe:
                            line[str(nfe)] = f"{_short(r[metric])} ({r['nfe']})"
                table.append(line)
        return table

    columns = ["schedule", "solver", *map(str, nfes)]
    headers = ["schedule", "solver", *[f"NFE {n}" for n in nfes]]
    floor = next(r for r in rows if r["kind"] == "mc_floor")
    out.append(
        f"W2 of the fitted Gaussian (N = {floor['n']}; Heun's actual NFE in brackets; "
        f"Monte-Carlo floor {floor['w2']:.4f}, range {floor['w2_min']:.4f}-{floor['w2_max']:.4f} "
        f"over {floor['seeds']} seeds of exact samples)\n"
    )
    out.append(markdown_table(pivot("w2", [*SOLVERS, "DPMSolverMultistep"]), columns, headers))
    out.append("\nExact-law W2 of the deterministic solvers (no Monte-Carlo noise)\n")
    out.append(
        markdown_table(
            pivot("w2_law", [*[s for s in SOLVERS if s in DETERMINISTIC], "DPMSolverMultistep"]), columns, headers
        )
    )
    out.append("\nMean absolute error to the exact probability-flow map (no Monte-Carlo noise)\n")
    out.append(
        markdown_table(
            pivot("flow_map_mae", [*[s for s in SOLVERS if s in DETERMINISTIC], "DPMSolverMultistep"]), columns, headers
        )
    )
    ode = [r for r in rows if r["kind"] == "ode"]
    if ode:
        out.append(
            "\nAdaptive probability-flow ODE (`sample_ode`, rtol = atol = tol, final denoising step from "
            "k = 1e-3; `no step_t`: with options={'step_t': None}, so the solver may step past k_end)\n"
        )
        out.append(
            markdown_table(
                [_with_error(r) for r in ode],
                ["schedule", "solver", "tol", "nfe", "min_level", "w2", "w2_law", "flow_map_mae"],
            )
        )
    refs = [r for r in rows if r["kind"] == "flow_map_reference"]
    if refs:
        out.append(
            "\nReferences: exact flow map of each schedule's starting noise (the limit of every deterministic solver)\n"
        )
        out.append(markdown_table(refs, ["schedule", "w2", "w2_law"]))
    target = next((r for r in rows if r["kind"] == "target"), None)
    if target and target.get("pass") is not None:
        verdict = "PASS" if target["pass"] else "FAIL"
        out.append(
            f"\nTarget: {target['target']}: {verdict} (DPM-Solver++ {target['dpmpp2m_nfe']} NFE W2 = "
            f"{target['dpmpp2m_w2']:.4f}, DDPM {target['ddpm_nfe']} NFE W2 = {target['ddpm_w2']:.4f}, "
            f"ratio {target['ratio']:.3f}; exact-law W2 of DPM-Solver++ at 10 NFE "
            f"{target['dpmpp2m_w2_law']:.4f}; smallest NFE within 10%: {target['dpmpp2m_nfe_within_10pct']}; "
            f"diffusers' DPM-Solver++(2M) at 10 NFE, cosine betas: W2 = "
            f"{target['diffusers_dpmpp2m_nfe10_w2']:.4f})"
        )
    return "\n".join(out)


def _with_error(row: dict[str, Any]) -> dict[str, Any]:
    if "error" not in row:
        return row
    return {**row, "w2": f"failed after {row['nfe']} NFE ({row['error']})"}


def _short(value: float) -> str:
    return f"{value:.2e}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 2,000, NFE 5/10, writes a temp file")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (1 torch thread each)")
    parser.add_argument("--samples", type=int, default=None, help="samples per run (default 50,000)")
    parser.add_argument("--show", action="store_true", help="only print the tables of the saved results")
    parser.add_argument("--out", type=Path, default=None, help="results file (default benchmarks/results)")
    args = parser.parse_args()
    path = args.out or results_path(NAME, args.quick)
    if args.show:
        print(tables(json.loads(path.read_text(encoding="utf-8"))))
        return
    torch.set_num_threads(1)
    n = args.samples or (2000 if args.quick else 50_000)
    nfes = [5, 10] if args.quick else NFES
    tols = [1e-2] if args.quick else TOLERANCES
    tasks = [(s, v, tols, n) for v in ODE_VARIANTS for s in SCHEDULES]
    tasks += [(s, v, nfes, n) for v in ("heun", "ddpm", "dpmpp2m", "ddim", "euler") for s in SCHEDULES]
    tasks += [(s, "diffusers", [b for b in nfes if b in DIFFUSERS_NFES], n) for s in ("cosine", "linear")]
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for result in pool.map(run_any, tasks):
                rows.extend(result)
    else:
        for task in tasks:
            rows.extend(run_any(task))
    order = {v: i for i, v in enumerate([*SOLVERS, "DPMSolverMultistep", *ODE_VARIANTS])}
    rows.sort(key=lambda r: (r["method"] != "trajdiff", r["kind"], order[r["solver"]], SCHEDULES.index(r["schedule"])))
    rows.extend(reference_rows(n))
    rows.append(target_row(rows))
    elapsed = time.perf_counter() - start
    cpu = sum(
        getattr(resource.getrusage(who), f)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for f in ("ru_utime", "ru_stime")
    )
    command = COMMAND + (" --quick" if args.quick else "")
    write_results(
        NAME,
        command,
        rows,
        path,
        samples=n,
        dim=DIM,
        tokens=1,
        dtype="float64",
        jobs=args.jobs,
        chunk=CHUNK,
        wall_seconds=round(elapsed, 1),
        cpu_seconds=round(cpu, 1),
        seeds={"problem": PROBLEM_SEED, "start": START_SEED, "solver": SOLVER_SEED},
    )
    payload = json.loads(path.read_text(encoding="utf-8"))
    print(tables(payload))
    print(f"\nwrote {path} in {elapsed:.0f} s ({cpu:.0f} CPU-seconds)")


if __name__ == "__main__":
    main()
