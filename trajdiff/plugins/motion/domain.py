"""The ``motion`` domain: human motion from BVH clips (any skeleton), its costs, constraints and metrics."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from trajdiff.core.data import Episodes
from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.motion import guides, metrics
from trajdiff.plugins.motion.baselines import constant_velocity, zero_velocity
from trajdiff.plugins.motion.encoder import MotionEncoder
from trajdiff.plugins.motion.export import write_motion
from trajdiff.plugins.motion.loader import CATEGORIES, load_motion, skeleton_mismatch, skeleton_of
from trajdiff.plugins.spec import (
    Baseline,
    Cost,
    DatasetCard,
    Domain,
    Encoder,
    Metric,
    ModelDefaults,
    Projection,
    Recipe,
    TrainingSet,
)

__all__ = ["MotionDomain", "dataset_cards", "seed_motions"]


class MotionDomain(Domain):
    """Human motion capture: BVH in and out, root motion + pose features, physical guides.

    The registry's instance holds no encoder; `with_encoder` gives each loaded model an instance holding that
    model's encoder, which the physical costs, constraints, metrics and BVH/GIF writers read."""

    name = "motion"
    summary = "human motion from BVH (any skeleton): prediction, label-conditioned endless synthesis, physical guides"

    def __init__(self, encoder: MotionEncoder | None = None) -> None:
        self._encoder = encoder

    # ------------------------------------------------------------------------------------------ data
    def load(self, source: Any, **options: Any) -> Episodes:
        """A .bvh file, a folder of them (recursively) or a list of files; options as `load_motion`."""
        known = [n for n in inspect.signature(load_motion).parameters if n != "source"]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"unknown motion loader option(s) {unknown}; valid options: {known}")
        if "fps" not in options and self._encoder is not None:
            options["fps"] = self._encoder.fps  # a trained model reads data at its own frame rate
        episodes = load_motion(source, **options)
        model = self._encoder.skeleton if self._encoder is not None else None
        problem = skeleton_mismatch(model, skeleton_of(episodes)) if model is not None else None
        if problem:  # a model reads only clips of its own skeleton (the joints' columns then map by name)
            where = source if isinstance(source, (str, Path)) else "the clips"
            raise DataError(f"{where}: the clips are of another skeleton than the model's: {problem}. No retarget "
                            "between different joint sets exists: give clips of the model's skeleton, or train a "
                            "model on these clips")
        return episodes

    def make_encoder(self, **options: Any) -> MotionEncoder:
        return MotionEncoder(**options)

    def encoder_from_state(self, state: dict[str, Any]) -> MotionEncoder:
        return MotionEncoder.from_state(state)

    def with_encoder(self, encoder: Encoder) -> MotionDomain:
        """A motion domain for the model whose fitted ``encoder`` this is."""
        if not isinstance(encoder, MotionEncoder):
            raise ConfigError(f"a motion domain needs a MotionEncoder, got {type(encoder).__name__}")
        return MotionDomain(encoder)

    def defaults(self) -> ModelDefaults:
        """30 fps, 1 s of history (30 frames) and 2 s ahead (60); two frames per token; transformer 128 x 4."""
        return ModelDefaults(
            history=30, horizon=60,
            network={"kind": "transformer", "dim": None, "width": 128, "depth": 4, "heads": 4},
            steps=3000, batch_size=64, lr=1e-3, stride=5, nfe=20, samples=10,
            encoder={"patch": 2},
        )

    def recipes(self) -> dict[str, Recipe]:
        """Two label-conditioned models (the clip category, dropped 10% of the time for classifier-free
        guidance): "forecast" (one noise level per window, the history held clean: full-sequence sampling of
        the future) and "stream" (the rolling window's staircase after a clean second, as long as the
        history, storing a seed motion per label for `synthesize`)."""
        labelled: dict[str, Any] = {"label": "category", "labels": list(CATEGORIES), "cond_dropout": 0.1,
                                    "history_prob": 0.9}
        return {
            "forecast": Recipe("label-conditioned prediction, 1 s of history and 2 s ahead (trajdiff forecast)",
                               {**labelled, "noise": "shared"}),
            "forecast-mlp": Recipe("label-conditioned prediction with the window MLP (width 256, depth 2) predicting "
                                   "the clean window; the future as a residual over a body-centred constant "
                                   "velocity and a per-feature ridge forecast; mirrored copies in training; also "
                                   "streams motion chunk by chunk",
                                   {**labelled, "noise": "shared", "history_prob": 1.0, "parametrization": "x0",
                                    "solver": "dpmpp2m", "nfe": 10,
                                    "network": {"kind": "window_mlp", "dim": None, "length": None, "width": 256,
                                                "depth": 2},
                                    "encoder": {"residual": True, "mirror": True, "ridge": True}},
                                   store=seed_motions),
            "stream": Recipe("label-conditioned endless synthesis through the rolling plan (trajdiff sample --label)",
                             {**labelled, "noise": "rolling", "horizon": self.defaults().history},
                             store=seed_motions),
        }

    def augment_windows(self, windows: np.ndarray, encoder: Encoder) -> np.ndarray:
        """Adds each window's mirror image (left and right swapped) when the encoder was built with ``mirror``."""
        if not isinstance(encoder, MotionEncoder) or not encoder.mirror:
            return windows
        import torch

        from trajdiff.plugins.motion.residual import mirror_features

        features = encoder.from_tokens(torch.from_numpy(np.asarray(windows, dtype=np.float64)))
        mirrored = encoder.tokens_from_features(mirror_features(encoder._layout(), features))
        return np.concatenate([windows, mirrored.numpy().astype(windows.dtype)])

    # -------------------------------------------------------------------------------- guides, metrics
    def encoder(self) -> MotionEncoder:
        """The fitted encoder this instance is bound to (guides, metrics and writers use it)."""
        if self._encoder is None or self._encoder.mean is None:
            raise ConfigError("motion costs, constraints and metrics need a fitted encoder: use the domain of a loaded "
                              "model (api.load_model(...).domain) or domain.with_encoder(fitted_encoder)")
        return self._encoder

    def _lazy(self, make: Any) -> Any:
        def fn(x: Tensor) -> Tensor:
            return make(self.encoder())(x)

        return fn

    def costs(self) -> dict[str, Cost]:
        return {
            "penetration": self._lazy(guides.penetration_cost),
            "skating": self._lazy(guides.skating_cost),
            "bone_length": self._lazy(guides.bone_cost),
            "joint_limits": self._lazy(guides.angle_cost),
        }

    def constraints(self) -> dict[str, Projection]:
        return {
            "bone_lengths": self._lazy(guides.bone_projection),
            "ground": self._lazy(guides.ground_projection),
            "foot_lock": self._lazy(guides.foot_lock_projection),
        }

    def metrics(self) -> dict[str, Metric]:
        def physical(fn: Any) -> Metric:
            def metric(samples: np.ndarray, truth: np.ndarray) -> float:
                return fn(self.encoder(), samples)

            return metric

        return {
            "ade_best": lambda s, t: metrics.ade(s, t, best=True),
            "fde_best": lambda s, t: metrics.fde(s, t, best=True),
            "ade_mean": lambda s, t: metrics.ade(s, t, best=False),
            "fde_mean": lambda s, t: metrics.fde(s, t, best=False),
            "apd": lambda s, t: metrics.apd(s),
            "bone_error_mm": physical(lambda e, s: 1000 * metrics.bone_length_error(e.layout, s)),
            "skating_m_s": physical(lambda e, s: metrics.foot_skating(e.layout, s, e.foot_floor, e.fps)),
            "penetration_mm": physical(lambda e, s: 1000 * metrics.ground_penetration(s)),
        }

    def baselines(self) -> dict[str, Baseline]:
        """zero_velocity (the last pose held) and constant_velocity (each joint keeps its last displacement)."""
        return {"zero_velocity": zero_velocity, "constant_velocity": constant_velocity}

    def point_metrics(self) -> list[str]:
        """The errors averaged over samples (each sample's error, not the error of the mean pose)."""
        return ["ade_mean", "fde_mean"]

    # ---------------------------------------------------------------------------------------- output
    def write_forecast(self, path: Path, histories: dict[str, np.ndarray], futures: dict[str, np.ndarray],
                       columns: list[str]) -> Path | None:
        """.bvh (history + each sample: ``<stem>_<entity>_<sample>.bvh``; ``path`` holds the first), .gif or .mp4
        (history then the samples overlaid) or .png (a strip per sample)."""
        if Path(path).suffix.lower() not in (".bvh", ".gif", ".mp4", ".png"):
            return None
        enc = self.encoder()
        assert enc.skeleton is not None
        first: Path | None = None
        for entity, future in futures.items():
            history = histories[entity]
            motions = [np.concatenate([history, sample]) for sample in future[:8]]
            target = Path(path) if first is None else Path(path).with_name(f"{Path(path).stem}_{entity}{path.suffix}")
            if Path(path).suffix.lower() == ".bvh":
                for s, motion in enumerate(motions):
                    name = target if s == 0 else target.with_name(f"{target.stem}_s{s}{target.suffix}")
                    write_motion(name, enc.skeleton, [motion], enc.fps, enc.unit)
            else:
                write_motion(target, enc.skeleton, motions, enc.fps, enc.unit,
                             [f"{entity} s{s}" for s in range(len(motions))], history=len(history))
            first = first or target
        return first

    def plot_forecasts(self, path: Path, histories: dict[str, np.ndarray], futures: dict[str, np.ndarray],
                       columns: list[str], truths: dict[str, np.ndarray] | None = None) -> Path | None:
        """A PNG strip of frames (history + up to 4 samples) for the first entity."""
        enc = self.encoder()
        assert enc.skeleton is not None
        entity = next(iter(futures))
        history = histories[entity]
        motions = [np.concatenate([history, s]) for s in futures[entity][:4]]
        path = Path(path).with_suffix(".png") if Path(path).suffix.lower() != ".png" else Path(path)
        return write_motion(path, enc.skeleton, motions, enc.fps, enc.unit,
                            [f"sample {s}" for s in range(len(motions))], history=len(history))

    def synthesize(self, model: Any, *, seconds: float, label: str | None = None, samples: int = 1,
                   guidance: float = 2.0, seed: int = 0, data: Any = None, out: str | Path | None = None,
                   constraints: tuple[str, ...] = ("bone_lengths", "ground", "foot_lock"),
                   substeps: int = 2) -> np.ndarray:
        """Endless synthesis from a loaded model (`api.load_model`): ``samples`` motions of ``seconds`` through
        the rolling plan, conditioned on ``label`` with classifier-free guidance ``guidance``, seeded by the first
        second of a clip of ``data`` (a clip of that label when there is one) or the model's stored seed. Writes
        ``out`` (.bvh, .csv, .gif, .mp4, .png) and returns positions ``[samples, frames, 3 J]`` in metres. ``substeps``:
        solver steps per token that leaves the rolling window (more: smoother, slower)."""
        from trajdiff.plugins.motion.synthesis import synthesize

        enc = self.encoder()
        model = model.model if hasattr(model, "model") else model  # a LoadedModel or a DiffusionModel
        context = None
        if data is not None:
            episodes = self.load(data)  # clips of the model's skeleton (else an error), joints in its order:
            episodes = episodes.reorder(enc.columns or episodes.columns)
            frames = int(model.extra["defaults"]["history"]) // enc.patch * enc.patch
            usable = [i for i, seq in enumerate(episodes.sequences) if len(seq) >= max(frames, 2)]
            if not usable:
                raise ConfigError(f"no clip in {data} has the {frames} frames a seed needs")
            matching = [i for i in usable if episodes.meta[i].get("category") == label] or usable
            context = enc.to_tokens(enc.features(episodes.sequences[matching[0]][:frames]))
        if model.extra["defaults"].get("noise") == "shared":  # a prediction model: chunk by chunk
            motions = self._chunked(model, enc, seconds, label, samples, guidance, context, constraints, seed)
        else:
            motions = synthesize(model, enc, seconds=seconds, label=label, samples=samples, guidance=guidance,
                                 context=context, constraints=constraints, seed=seed, substeps=substeps)
        if out is not None:
            assert enc.skeleton is not None
            write_motion(Path(out), enc.skeleton, list(motions), enc.fps, enc.unit,
                         [f"{label or 'any'} {s}" for s in range(len(motions))])
        return motions

    @staticmethod
    def _chunked(model: Any, enc: MotionEncoder, seconds: float, label: str | None, samples: int, guidance: float,
                 context: np.ndarray | None, constraints: tuple[str, ...], seed: int) -> np.ndarray:
        """Synthesis from a model trained with one noise level per window (the forecast recipes): the next two
        seconds forecast from the last second, one second kept at a time (`chunked.synthesize_chunked`)."""
        from trajdiff.plugins.motion.chunked import synthesize_chunked
        from trajdiff.plugins.motion.synthesis import _motion_extra

        if context is None:
            seeds = _motion_extra(model).get("seeds", {})
            key = label if label in seeds else next(iter(seeds), None)
            if key is None:
                raise ConfigError("this model stores no seed motion: pass --data (clips to start from)")
            context = np.asarray(seeds[key], dtype=np.float32)
        keep = min(int(model.extra["defaults"]["horizon"]), int(round(enc.fps)) // enc.patch * enc.patch)
        return synthesize_chunked(model, enc, np.repeat(np.asarray(context)[None], samples, axis=0), seconds=seconds,
                                  label=label, guidance=guidance, keep=keep, constraints=constraints, seed=seed)

    def future_times(self, times: np.ndarray, count: int) -> np.ndarray:
        step = 1.0 / (self._encoder.fps if self._encoder is not None else 30.0)
        return np.asarray(times)[-1] + step * np.arange(1, count + 1)


def seed_motions(trained: TrainingSet) -> dict[str, Any]:
    """What the "stream" recipe stores: per label, the history tokens of a training window of that label (the
    middle one), from which `synthesize` starts when given no data."""
    context = trained.defaults.history // trained.encoder.rows_per_token
    seeds = {}
    if trained.labels is not None:
        for n, label in enumerate(trained.defaults.labels):
            hits = np.flatnonzero(trained.labels == n)
            if len(hits):
                seeds[label] = trained.windows[hits[len(hits) // 2], :context].tolist()
    return {"seeds": seeds}


def dataset_cards() -> list[DatasetCard]:
    """The CMU motion capture subset (BVH, MotionBuilder-friendly conversion)."""
    return [DatasetCard(
        name="cmu_mocap",
        domain="motion",
        summary="CMU Graphics Lab motion capture, BVH (mb2 conversion): subjects 01-03, 05-08, 86 clips, 31 joints, "
                "120 fps: playground, walk, run, dance, basketball",
        source="http://mocap.cs.cmu.edu (BVH conversion: motion-viewer repository data/)",
        licence="CMU: free for research and for inclusion in commercial products, not for resale; credit "
                "'The data used in this project was obtained from mocap.cs.cmu.edu. The database was created with "
                "funding from NSF EIA-0196217.'",
        sha256=None,
        columns=["<joint>_x", "<joint>_y", "<joint>_z"],
        obtain="see datasets/cmu_mocap.md; then `trajdiff train --domain motion --data mb2/ --out runs/motion`",
    )]
