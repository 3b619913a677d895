"""Forecast throughput: trajectories per second of `api.forecast` beside the forecasts' quality, per model.

What is timed: `api.forecast` from loaded data (episodes in memory, one per held-out window, cut to its history) to
decoded samples and their table (no file written), with the model loaded once before (`api.load_model`), in
batches of at least 1,000 trajectories, at 1 and 2 torch threads, median of ``--repeats`` calls timed in
interleaved rounds. Quality comes from the same call's samples against the windows' true futures: minADE20 /
minFDE20 (metres) for pedestrians (ETH/UCY, zara1 left out) and vessels (New York Harbor AIS, FDE at 30 minutes),
CRPS on standardized values for ETTh1 (h = 96).

Models (``--train NAME ...`` trains them into ``--models`` with `api.train`; the default run times those there):
the teacher of each domain is the transformer that was its default network, at its benchmarked size
(`eth_ucy_cpu.json`, `vessel.json`, `etth1-throughput-h96.json`); the students are the window MLP
(`trajdiff.core.networks.window_mlp`) trained on the same data, and students that `api.distill` makes of the
larger window MLPs (method ``trajectory``, 2,500 steps, on the teacher's training windows; ``--train`` makes them
after their teachers). Any other model folder can be timed with ``--extra NAME=DOMAIN:FOLDER``. Rows marked bfloat16
run the same model with ``precision="bfloat16"`` (the network's matrix products in bfloat16 under CPU autocast;
fast on CPUs with AMX or AVX512-BF16 units, as this VM's), the teacher among them for a same-precision ratio.

    .venv/bin/python benchmarks/throughput.py --train all --models /tmp/throughput-models
    .venv/bin/python benchmarks/throughput.py --models /tmp/throughput-models
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _throughput_models as data  # noqa: E402
from _common import markdown_table, median, results_path, write_results  # noqa: E402

from trajdiff import api  # noqa: E402


@dataclass(frozen=True)
class ModelSpec:
    """A model of the benchmark: its domain, network and training budget (``options`` go to `api.train`)."""

    domain: str
    network: dict[str, Any]
    minutes: float | None
    steps: int
    options: dict[str, Any] = field(default_factory=dict)


MLP = {"kind": "window_mlp", "dim": None, "length": None}
WINDOW_MLP = {"recipe": "window-mlp"}  # one noise level per window, the history always clean
ETTH1_OPTIONS = {"history": data.ETTH1_CONTEXT, "horizon": data.ETTH1_HORIZON, "batch_size": 64}
MODELS: dict[str, ModelSpec] = {
    "pedestrians-transformer": ModelSpec("traffic", data.TRAFFIC_TEACHER, None, 3519, {"recipe": "transformer"}),
    "vessels-transformer": ModelSpec("vessel", {"kind": "transformer", "width": 64, "depth": 3, "heads": 4}, None,
                                     3657),
    "etth1-transformer": ModelSpec("timeseries", data.ETTH1_TEACHER, None, 1000, ETTH1_OPTIONS),
    "pedestrians-mlp": ModelSpec("traffic", {**MLP, "width": 256, "depth": 3}, None, 3519),
    "pedestrians-mlp-small": ModelSpec("traffic", {**MLP, "width": 128, "depth": 2}, None, 3519),  # the default
    "vessels-mlp": ModelSpec("vessel", {**MLP, "width": 256, "depth": 3}, None, 3657, WINDOW_MLP),
    "vessels-mlp-small": ModelSpec("vessel", {**MLP, "width": 128, "depth": 2}, None, 3657, WINDOW_MLP),
    "etth1-mlp": ModelSpec("timeseries", {**MLP, "width": 256, "depth": 3, "dropout": 0.1}, None, 1000,
                           {**ETTH1_OPTIONS, **WINDOW_MLP}),
}


@dataclass(frozen=True)
class StudentSpec:
    """A student `api.distill` makes from a model of `MODELS` (the teacher), on that model's training data."""

    teacher: str
    nfe: int
    steps: int = 2500


STUDENTS: dict[str, StudentSpec] = {
    "pedestrians-mlp-d2": StudentSpec("pedestrians-mlp", 2),
    "vessels-mlp-d2": StudentSpec("vessels-mlp", 2),
}


def training_data(domain: str) -> Any:
    if domain == "traffic":
        return data.pedestrian_training()
    if domain == "vessel":
        return data.vessel_split()[0]
    return data.etth1_frames()[0]


def train(names: list[str], models: Path, steps: int | None = None) -> None:
    """Trains the named models (``all``: every one) into ``models``, one thread each, and records what each did;
    ``steps`` replaces every model's training steps (the smoke run)."""
    torch.set_num_threads(1)
    chosen = [*MODELS, *STUDENTS] if names == ["all"] else names
    for name in chosen:
        cpu = time.process_time()
        if name in STUDENTS:  # after its teacher
            student = STUDENTS[name]
            summary = api.distill(models / student.teacher, models / name, nfe=student.nfe,
                                  steps=steps or student.steps, data=training_data(MODELS[student.teacher].domain),
                                  progress=False, overwrite=True)
            info = {"model": str(models / name), "teacher": student.teacher, "method": summary.method,
                    "nfe": student.nfe, "steps": summary.steps, "seconds": round(summary.seconds, 1),
                    "final_loss": summary.final_loss, "windows": summary.windows}
        else:
            spec = MODELS[name]
            info = data.train_model(spec.domain, training_data(spec.domain), models / name, spec.network,
                                    minutes=spec.minutes, steps=steps or spec.steps, **spec.options)
        info["cpu_seconds"] = round(time.process_time() - cpu, 1)
        (models / name / "benchmark_training.json").write_text(json.dumps(info, indent=1) + "\n")
        print(f"{name}: {info['steps']} steps in {info['seconds']} s, final loss {info['final_loss']:.4f}", flush=True)


@dataclass(frozen=True)
class Method:
    """One timed configuration: a label, a model folder under ``--models`` (or a path) and `api.forecast` options."""

    label: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    compile: bool = False  # with --compile, also timed under torch.compile


ETTH1 = {"antithetic": True, "nfe": 10}  # the settings of `etth1-throughput-h96.json`
BF16 = {"precision": "bfloat16"}  # the network's matrix products in bfloat16 (CPU autocast), the solver in float32
METHODS: dict[str, list[Method]] = {
    "pedestrians": [Method("transformer w64 d3 (teacher)", "pedestrians-transformer"),
                    Method("window MLP w256 d3", "pedestrians-mlp"),
                    Method("window MLP w128 d2 (default)", "pedestrians-mlp-small", compile=True),
                    Method("window MLP w128 d2, 3 NFE", "pedestrians-mlp-small", {"nfe": 3}),
                    Method("window MLP w128 d2, 2 NFE", "pedestrians-mlp-small", {"nfe": 2}),
                    Method("distilled window MLP w256 d3, 2 NFE", "pedestrians-mlp-d2"),
                    Method("distilled window MLP w256 d3, 1 NFE", "pedestrians-mlp-d2", {"nfe": 1}),
                    Method("distilled window MLP w256 d3, 1 NFE, bfloat16", "pedestrians-mlp-d2", {"nfe": 1, **BF16}),
                    Method("transformer w64 d3 (teacher), bfloat16", "pedestrians-transformer", BF16)],
    "vessels": [Method("transformer w64 d3 (teacher)", "vessels-transformer"),
                Method("window MLP w256 d3", "vessels-mlp"),
                Method("window MLP w128 d2", "vessels-mlp-small", compile=True),
                Method("window MLP w128 d2, 3 NFE", "vessels-mlp-small", {"nfe": 3}),
                Method("window MLP w128 d2, 2 NFE", "vessels-mlp-small", {"nfe": 2}),
                Method("distilled window MLP w256 d3, 2 NFE", "vessels-mlp-d2"),
                Method("distilled window MLP w256 d3, 1 NFE", "vessels-mlp-d2", {"nfe": 1}),
                Method("distilled window MLP w256 d3, 1 NFE, bfloat16", "vessels-mlp-d2", {"nfe": 1, **BF16}),
                Method("transformer w64 d3 (teacher), bfloat16", "vessels-transformer", BF16)],
    "etth1": [Method("transformer w128 d3 (teacher)", "etth1-transformer", ETTH1),
              Method("window MLP w256 d3", "etth1-mlp", ETTH1, compile=True),
              Method("window MLP w256 d3, 5 NFE", "etth1-mlp", {**ETTH1, "nfe": 5}),
              Method("window MLP w256 d3, 3 NFE", "etth1-mlp", {**ETTH1, "nfe": 3}),
              Method("window MLP w256 d3, 5 NFE, bfloat16", "etth1-mlp", {**ETTH1, "nfe": 5, **BF16})],
}
SAMPLES = 20


def domain_windows(domain: str, args: argparse.Namespace, split: str = "test") -> tuple[data.Windows, Any]:
    """The held-out windows of ``domain`` (``split``: test or val) and what its quality metric needs (ETTh1: the
    standardization)."""
    if domain == "pedestrians":
        return data.pedestrian_windows(args.max_groups, split), None
    if domain == "vessels":
        windows = data.vessel_windows(data.vessel_split()[1] if split == "test" else data.vessel_validation())
        if args.max_windows and len(windows.episodes) > args.max_windows:
            keep = np.linspace(0, len(windows.episodes) - 1, args.max_windows).round().astype(int).tolist()
            windows = data.Windows(windows.episodes.select(keep), windows.truth[keep], windows.metric, windows.columns,
                                   windows.distance)
        return windows, None
    train, test = data.etth1_frames(split)
    return data.etth1_windows(test, args.etth1_windows), data.etth1_standardization(train)


def validation_rows(domain: str, methods: list[Method], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each method's quality on the domain's validation windows (what decides a domain's default network)."""
    windows, standardize = domain_windows(domain, args, "val")
    torch.set_num_threads(max(args.threads))
    rows = []
    for method in methods:
        folder = method.model if Path(method.model).is_absolute() else args.models / method.model
        result = api.forecast(folder, windows.episodes, samples=SAMPLES, seed=args.seed, **method.options)
        rows.append({"domain": domain, "method": method.label, "windows": len(windows.episodes),
                     "quality_metric": windows.metric, "quality": data.quality(windows, result.samples, standardize)})
        print(f"{domain} validation {method.label}: {rows[-1]['quality']}", flush=True)
    return rows


def time_methods(domain: str, methods: list[Method], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every method of ``domain`` timed in interleaved rounds at each thread count, with its forecasts' quality."""
    windows, standardize = domain_windows(domain, args)
    trajectories = SAMPLES * len(windows.episodes)
    folders = {m.label: (m.model if Path(m.model).is_absolute() else args.models / m.model) for m in methods}
    models = {label: api.load_model(folder) for label, folder in folders.items()}  # loaded once, as a service would
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        results: dict[str, Any] = {}

        def call(method: Method, results: dict[str, Any] = results) -> None:
            results[method.label] = api.forecast(models[method.label], windows.episodes, samples=SAMPLES,
                                                 seed=args.seed, **method.options)

        load_before = os.getloadavg()[0]
        timings = interleaved({m.label: (lambda m=m: call(m)) for m in methods}, args.repeats, warmup=1)
        load_after = os.getloadavg()[0]
        teacher = methods[0]
        scores = {m.label: data.quality(windows, results[m.label].samples, standardize) for m in methods}
        for method in methods:
            walls = [wall for wall, _ in timings[method.label]]
            cpus = [cpu for _, cpu in timings[method.label]]
            loaded = models[method.label]
            rate = trajectories / median(walls)
            rows.append({
                "method": method.label, "domain": domain,
                "params": sum(p.numel() for p in loaded.model.network.parameters()),
                "nfe": method.options.get("nfe", loaded.defaults.nfe), "threads": threads,
                "trajectories_per_s": rate, "quality_metric": windows.metric, "quality": scores[method.label],
                "teacher_quality": scores[teacher.label], "network": loaded.model.network.config["kind"],
                "solver": method.options.get("solver", loaded.defaults.solver), "windows": len(windows.episodes),
                "precision": method.options.get("precision", "float32"),
                "trajectories": trajectories, "windows_per_s": len(windows.episodes) / median(walls),
                "seconds_median": median(walls),
                "cpu_seconds_median": median(cpus), "trajectories_per_cpu_s": trajectories / median(cpus),
                "speedup_vs_teacher": rate / (trajectories / median(w for w, _ in timings[teacher.label])),
                "load_average": [round(load_before, 2), round(load_after, 2)], "repeats": args.repeats,
            })
            print(f"{domain} {threads} thread(s) {method.label}: {rate:.0f} trajectories/s "
                  f"({trajectories / median(cpus):.0f} per CPU-second), quality {scores[method.label]}", flush=True)
    return rows


def compile_rows(domain: str, method: Method, args: argparse.Namespace) -> dict[str, Any]:
    """`api.sample_futures` on the windows' encoded histories, plain and with ``compile=True`` (at the first of
    ``--threads``): what compiling costs on first use and what it saves per trajectory afterwards."""
    windows, _ = domain_windows(domain, args)
    loaded = api.load_model(args.models / method.model)
    d = loaded.defaults
    contexts = np.stack([loaded.encoder.encode_history(rows[-d.history:], d.horizon)[0]
                         for rows in windows.episodes.sequences]).astype(np.float32)
    options = {k: v for k, v in method.options.items() if k in ("nfe", "solver", "antithetic")}
    torch.set_num_threads(args.threads[0])

    def run(compiled: bool) -> float:
        started = time.perf_counter()
        api.sample_futures(loaded, contexts, samples=SAMPLES, seed=args.seed, compile=compiled, **options)
        return time.perf_counter() - started

    first = run(True)
    timings = interleaved({"plain": lambda: run(False), "compiled": lambda: run(True)}, args.repeats)
    plain, compiled = (median([wall for wall, _ in timings[name]]) for name in ("plain", "compiled"))
    trajectories = SAMPLES * len(contexts)
    saved = (plain - compiled) / trajectories
    return {"domain": domain, "method": method.label, "threads": args.threads[0], "trajectories": trajectories,
            "first_call_s": first, "plain_s": plain, "compiled_s": compiled,
            "plain_trajectories_per_s": trajectories / plain, "compiled_trajectories_per_s": trajectories / compiled,
            "break_even_trajectories": (first - compiled) / saved if saved > 0 else None}


def interleaved(fns: dict[str, Any], repeats: int, warmup: int = 1) -> dict[str, list[tuple[float, float]]]:
    """(wall, process CPU) seconds of each call, the functions called in rotating order each round."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = time.perf_counter(), time.process_time()
            fns[name]()
            out[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, required=True, help="folder of the models (one sub-folder each)")
    parser.add_argument("--train", nargs="+", default=None, choices=[*MODELS, *STUDENTS, "all"],
                        help="train (or distil) these models into --models, then stop")
    parser.add_argument("--domains", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to time")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--max-groups", type=int, default=100, help="pedestrians: evenly spaced 20-frame windows")
    parser.add_argument("--max-windows", type=int, default=400, help="vessels: evenly spaced windows")
    parser.add_argument("--etth1-windows", type=int, default=200,
                        help="ETTh1: evenly spaced windows (200 as in etth1-throughput-h96.json)")
    parser.add_argument("--extra", nargs="*", default=[], metavar="LABEL=DOMAIN:FOLDER[:NFE]",
                        help="also time these model folders (e.g. a distilled student) beside the domain's methods")
    parser.add_argument("--compile", action="store_true",
                        help="also time each domain's first student under torch.compile (first call and after)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default benchmarks/results/throughput.json)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: models trained for 20 steps into --models, a few windows, one round, 1 thread")
    args = parser.parse_args()
    if args.quick:
        args.max_groups, args.max_windows, args.etth1_windows, args.repeats, args.threads = 3, 10, 5, 1, [1]
        args.out = args.out or args.models / "throughput-quick.json"
        train(["all"], args.models, steps=20)
    if args.train:
        started = time.monotonic()
        train(args.train, args.models)
        print(f"trained in {time.monotonic() - started:.0f} s")
        return
    warnings.simplefilter("ignore")
    methods = {domain: list(METHODS[domain]) for domain in args.domains}
    for extra in args.extra:
        label, rest = extra.split("=", 1)
        domain, folder, *nfe = rest.split(":")
        methods[domain].append(Method(label, folder, {"nfe": int(nfe[0])} if nfe else {}))
    rows: list[dict[str, Any]] = []
    compiled: list[dict[str, Any]] = []
    validation: list[dict[str, Any]] = []
    for domain in args.domains:
        validation += validation_rows(domain, methods[domain], args)
        rows += time_methods(domain, methods[domain], args)
        for method in (m for m in methods[domain] if m.compile and args.compile):
            compiled.append(compile_rows(domain, method, args))
            print(compiled[-1], flush=True)
    command = "python benchmarks/throughput.py " + " ".join(sys.argv[1:])
    trained = {name: json.loads((args.models / name / "benchmark_training.json").read_text())
               for name in [*MODELS, *STUDENTS] if (args.models / name / "benchmark_training.json").exists()}
    path = write_results("throughput", command, rows, args.out or results_path("throughput", False),
                         validation=validation, compile=compiled, training=trained)
    print(markdown_table(rows, ["domain", "method", "params", "nfe", "threads", "trajectories_per_s",
                                "speedup_vs_teacher", "quality", "teacher_quality"]))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
