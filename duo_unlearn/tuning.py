"""`duo tune`: choose DUO's β and λ for a preservation target, on held-out prompts.

    make tune          (duo tune --config configs/tune_shapeworld.yaml)
    duo tune --config tune.yaml     (a real model: see the real-model fields below)

DUO has two knobs that trade forgetting against keeping the rest of the model: β (the DPO
temperature: higher forgets harder) and λ (the output-preserving regulariser). Nobody can
guess them for a new model or concept, so this sweeps them:

1. every (β, base λ) point of ``betas`` x ``base_preservation_weights`` is trained with the
   DUO settings of ``train_config`` (λ = base λ · β / 100, the paper's rule; the learning
   rate follows the train config's rule), each into ``output_dir/points/NAME``; a point whose
   training settings are unchanged since it finished is reused, not retrained;
2. each point and the base model generate the same *held-out* prompts with the same seeds
   (ShapeWorld: ``prompt_groups(num_prompts, seed + 7919)``, disjoint from `duo demo`'s and
   `duo eval`'s prompt and image seeds; a real model: your caption and concept prompt files,
   which must not be the ones you evaluate on). Measured: the concept rate (Wilson interval;
   ShapeWorld pools the unsafe and held-out-paraphrase groups), prior preservation on the
   safe prompts (1 − perceptual distance to the base image; bootstrap interval) and, where
   there are close-concept prompts, their preservation;
3. ``choose_operating_point``: among the points whose prior-preservation point estimate
   reaches ``preservation_target``, the lowest concept rate (ties: higher preservation, then
   the order of the sweep). If none reaches it, nothing is chosen: the report says so and shows
   the Pareto frontier, and no best config is written.

Output in ``output_dir``: tune_results.json (every point's settings and figures with their
intervals, the target, the choice), tune.md (the table), tune_pareto.png (concept rate vs
preservation with 95 % error bars and the target line) and best_train_config.yaml, the
chosen point as a `duo train --config` file (your train config with β and λ replaced).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from duo_unlearn.configs import SHAPEWORLD, InferenceDtype, check_choices
from duo_unlearn.threads import check_thread_count

TUNE_SEED_OFFSET = 7919
"""Held-out prompts and image seeds come from ``seed + 7919`` (a prime no other command uses)."""
TRAIN_MARKER = "tune_train_settings.json"
FIGURES_FILE = "tune_figures.json"


@dataclasses.dataclass
class TuneConfig:
    """Settings of `duo tune`: a β x λ sweep of DUO, and the operating point that meets a preservation target."""

    output_dir: str = "tune-output"
    """Each point's LoRA (points/NAME), tune_results.json, tune.md, tune_pareto.png, best_train_config.yaml;
    re-running reuses finished points."""
    train_config: str | None = None
    """A `duo train` YAML (DUOConfig) whose settings every point keeps except beta, λ and output_dir. None: on
    ShapeWorld the demo's settings (lr 5e-3 * 100 / beta, as `duo eval`'s study), on a real model DUOConfig's
    defaults (the paper's). Retain prompts that are also held-out prompts are dropped, so no point is
    measured on a prompt it was held to."""
    pretrained_model: str | None = None
    """'shapeworld', a pipeline folder or a hub id; None: the train_config's (ShapeWorld without one)."""
    pairs_dir: str | None = None
    """The `duo pairs` folder every point trains on; None: the train_config's. On ShapeWorld without a
    train_config or pairs_dir, the tune makes the demo's pairs in output_dir/pairs."""
    betas: tuple[float, ...] = (250.0, 500.0, 1000.0)
    """β values swept (paper: 250-1000; higher forgets harder)."""
    base_preservation_weights: tuple[float, ...] = (1e5, 1e6, 1e7)
    """λ values swept at each β, as base weights: λ = base * beta / 100 (DUOConfig.base_preservation_weight's
    rule, so a base weight keeps the regulariser's share of the gradient as β changes; 1e6 is the paper's).
    A preservation_weight set in train_config is replaced by this sweep."""
    max_train_steps: int | None = None
    """Override the train config's optimiser steps for every point (None: keep them)."""
    train_batch_size: int | None = None
    """Override the train config's pairs per step for every point (None: keep it)."""
    preservation_target: float = 0.95
    """Prior preservation (1 - perceptual distance to the base model, safe prompts) the chosen point must reach
    (its point estimate); among the points that do, the lowest concept rate wins."""
    num_prompts: int = 32
    """Held-out prompts per group, one image each (ShapeWorld: safe, unsafe, held-out paraphrase, close; a
    real model: the first lines of each prompt file)."""
    seed: int = 0
    """Seeds the held-out prompts and images (seed + 7919) and the ShapeWorld pairs the tune makes; the
    training seed is the train config's."""
    num_inference_steps: int | None = None
    """Denoising steps of every held-out image; None: 12 on ShapeWorld (as `duo eval`), 25 on a real model."""
    guidance_scale: float = 7.5
    """Classifier-free guidance of every held-out image."""
    num_pairs: int = 64
    """ShapeWorld only, when the tune makes the pairs: pair indices attempted (about 40 % are kept)."""

    # --- a real model (mirrors `duo eval`'s real-model options) ---
    captions_file: str | None = None
    """Real model only: safe captions, one per line, for prior preservation (held out: not your eval captions)."""
    concept_prompts_file: str | None = None
    """Real model only: prompts that ask for the concept, one per line, for the concept rate (held out: not your
    eval or attack prompts)."""
    close_prompts_file: str | None = None
    """Real model only, optional: prompts of a close but allowed concept, for close-concept preservation."""
    detector: str = "nudenet"
    """Real model only: the concept detector ('nudenet' or one registered with register_detector)."""
    metric: str = "lpips"
    """Real model only: perceptual metric for preservation ('lpips' needs the [lpips] extra)."""
    dtype: InferenceDtype = "fp32"
    """Real model only: inference precision of the held-out images: 'fp32', 'bf16', or 'fp16' (GPU only)."""
    num_threads: int = 2
    """CPU threads for torch (0: torch's default), as `duo eval`'s: the same sweep chooses the same point
    on any CPU of the same kind. tune_results.json records the count."""

    def __post_init__(self) -> None:
        check_choices(self)
        check_thread_count(self.num_threads, "--num-threads")
        self.betas = tuple(float(b) for b in self.betas)
        self.base_preservation_weights = tuple(float(w) for w in self.base_preservation_weights)
        if not self.betas or any(b <= 0 for b in self.betas) or len(set(self.betas)) != len(self.betas):
            raise ValueError(f"--betas: give one or more distinct positive values, got {list(self.betas)}")
        weights = self.base_preservation_weights
        if not weights or any(w < 0 for w in weights) or len(set(weights)) != len(weights):
            raise ValueError(f"--base-preservation-weights: give one or more distinct values >= 0, got {list(weights)}")
        if not 0 < self.preservation_target <= 1:
            raise ValueError(f"--preservation-target must be in (0, 1] (a share of the base model's look kept), "
                             f"got {self.preservation_target}")
        for name in ("num_prompts", "num_pairs", "max_train_steps", "train_batch_size", "num_inference_steps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")

    # ------------------------------------------------------------------ resolved settings
    def base_train_config(self):
        """The DUOConfig every point starts from (train_config, then this config's overrides)."""
        from duo_unlearn.config import DUOConfig
        from duo_unlearn.configs import load_config

        if self.train_config:
            base = load_config(DUOConfig, self.train_config)
        elif (self.pretrained_model or SHAPEWORLD) == SHAPEWORLD:
            from duo_unlearn.demo import DemoConfig, demo_train_config

            demo = DemoConfig()
            base = demo_train_config(demo, "duo-pairs", "duo-tuned", learning_rate=None, base_learning_rate=5e-3)
        else:
            base = DUOConfig()
        overrides: dict[str, Any] = {"pretrained_model": self.pretrained_model, "pairs_dir": self.pairs_dir,
                                     "max_train_steps": self.max_train_steps,
                                     "train_batch_size": self.train_batch_size}
        if self.makes_pairs():
            overrides["pairs_dir"] = str(Path(self.output_dir) / "pairs")
        base = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
        if base.retain_prompts:  # the model is held to its retain prompts: never measure it on one
            held_out = {p for recs in heldout_prompts(self, base.pretrained_model).values() for p, _ in recs}
            base = dataclasses.replace(base, retain_prompts=tuple(p for p in base.retain_prompts if p not in held_out))
        return base

    def makes_pairs(self) -> bool:
        """ShapeWorld without a train_config or pairs_dir: the tune makes the demo's pairs itself."""
        return (self.pretrained_model or SHAPEWORLD) == SHAPEWORLD and not self.train_config and not self.pairs_dir

    def resolved_inference_steps(self, model: str) -> int:
        if self.num_inference_steps is not None:
            return self.num_inference_steps
        if model == SHAPEWORLD:
            from duo_unlearn.world.quality import NUM_INFERENCE_STEPS

            return NUM_INFERENCE_STEPS
        return 25


# ---------------------------------------------------------------------- the choice
def _value(figure) -> float:
    return float(figure.value if hasattr(figure, "value") else figure["value"])


def meets_target(point: dict, target: float) -> bool:
    """Does the point's prior-preservation point estimate reach the target?"""
    return _value(point["prior_preservation"]) >= target


def pareto_frontier(points: list[dict]) -> list[dict]:
    """The points no other point beats on both axes (concept rate no higher, preservation no lower, one
    strictly), in the order given."""
    def dominated(p: dict) -> bool:
        pc, pp = _value(p["concept_rate"]), _value(p["prior_preservation"])
        return any(_value(q["concept_rate"]) <= pc and _value(q["prior_preservation"]) >= pp
                   and (_value(q["concept_rate"]) < pc or _value(q["prior_preservation"]) > pp) for q in points)

    return [p for p in points if not dominated(p)]


def choose_operating_point(points: list[dict], target: float) -> dict | None:
    """The operating point: among ``points`` whose ``prior_preservation`` point estimate is at least
    ``target``, the one with the lowest ``concept_rate``; ties go to the higher preservation, then to the
    earlier point. None when no point reaches the target (never a point that misses it).

    Each point is a mapping with ``concept_rate`` and ``prior_preservation``, each an ``Estimate`` or its
    dict (``{"value": ...}``)."""
    if not 0 < target <= 1:
        raise ValueError(f"preservation target must be in (0, 1], got {target}")
    eligible = [(i, p) for i, p in enumerate(points) if meets_target(p, target)]
    if not eligible:
        return None
    return min(eligible, key=lambda ip: (_value(ip[1]["concept_rate"]), -_value(ip[1]["prior_preservation"]),
                                         ip[0]))[1]


# ---------------------------------------------------------------------- the sweep
def _num(x: float) -> str:
    return f"{x:g}".replace("+", "")


def point_name(beta: float, base_weight: float) -> str:
    return f"beta{_num(beta)}_lambda{_num(base_weight)}"


def point_configs(cfg: TuneConfig, base) -> dict[str, Any]:
    """Each point's DUOConfig: the base with β and λ set, its own folder, nothing pushed or resumed."""
    out = Path(cfg.output_dir) / "points"
    return {point_name(b, w): dataclasses.replace(
        base, beta=b, base_preservation_weight=w, preservation_weight=None, output_dir=str(out / point_name(b, w)),
        resume_from_checkpoint=None, push_to_hub=False, merge=False)
        for b in cfg.betas for w in cfg.base_preservation_weights}


def _train_settings(point) -> str:
    """What decides a point's weights: every training setting but its folder, and the pairs it reads."""
    from duo_unlearn.io import file_digest

    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(point).items()
                if k not in ("output_dir", "report_to", "tracker_project_name", "hub_model_id", "hub_private")}
    meta = Path(point.pairs_dir) / "metadata.jsonl"
    settings["pairs_metadata_sha256"] = file_digest(meta) if meta.is_file() else None
    return json.dumps(settings, sort_keys=True)


def train_point(point) -> bool:
    """Train one point unless its folder holds one trained with exactly these settings; True if trained."""
    from duo_unlearn.io import atomic_write_text
    from duo_unlearn.lora import LORA_WEIGHTS_NAME
    from duo_unlearn.trainer import train

    folder = Path(point.output_dir)
    marker, asked = folder / TRAIN_MARKER, _train_settings(point)
    if (folder / LORA_WEIGHTS_NAME).is_file() and marker.is_file() and marker.read_text() == asked:
        return False
    marker.unlink(missing_ok=True)  # a half-trained folder must not pass for a finished one
    print(f"train {folder.name} (beta {point.beta:g}, lambda {point.resolved_preservation_weight:g}) ...",
          flush=True)
    train(point)
    atomic_write_text(marker, asked)
    return True


def heldout_prompts(cfg: TuneConfig, model: str) -> dict[str, list[tuple[str, int]]]:
    """Group -> (prompt, seed) pairs of the held-out set. A prompt file that is not there gives no
    group: ``check_tune`` names it, after ``base_train_config`` has read the files that are."""
    seed = cfg.seed + TUNE_SEED_OFFSET
    if model == SHAPEWORLD:
        from duo_unlearn.world.quality import prompt_groups

        return {g: [(r["prompt"], r["seed"]) for r in recs] for g, recs in prompt_groups(cfg.num_prompts, seed).items()}
    files = {"safe": cfg.captions_file, "concept": cfg.concept_prompts_file, "close": cfg.close_prompts_file}
    groups = {}
    for g, (name, path) in enumerate(files.items()):
        if path and Path(path).is_file():
            lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
            groups[name] = [(p, seed * 100_000 + g * 10_000 + i) for i, p in enumerate(lines[: cfg.num_prompts])]
    return groups


def concept_groups(model: str) -> tuple[str, ...]:
    return ("unsafe", "heldout") if model == SHAPEWORLD else ("concept",)


class _Evaluator:
    """The pipeline, detectors and base images, loaded only when a point needs measuring."""

    def __init__(self, cfg: TuneConfig, model: str, groups: dict, protocol: dict) -> None:
        self.cfg, self.model, self.groups, self.protocol = cfg, model, groups, protocol
        self.pipe = self.detector = self.close_detector = self.metric = self.base_images = None

    def _load(self) -> None:
        if self.pipe is not None:
            return
        if self.model == SHAPEWORLD:
            from duo_unlearn.detectors import ShapeWorldDetector
            from duo_unlearn.perceptual import ShapeWorldPerceptual
            from duo_unlearn.pipelines import load_shapeworld

            self.detector, self.close_detector = ShapeWorldDetector(), ShapeWorldDetector(concept="plus")
            self.metric = ShapeWorldPerceptual(self.detector)
            self.pipe = load_shapeworld()
        else:
            from duo_unlearn.detectors import get_detector
            from duo_unlearn.perceptual import get_perceptual_metric
            from duo_unlearn.pipelines import default_device, inference_dtype, load_pipeline

            dtype = inference_dtype(self.cfg.dtype)
            self.detector, self.metric = get_detector(self.cfg.detector), get_perceptual_metric(self.cfg.metric)
            self.pipe = load_pipeline(self.model, torch_dtype=dtype).to(default_device())
        self.pipe.set_progress_bar_config(disable=True)

    def images(self) -> dict[str, list]:
        from duo_unlearn.sampling import generate

        records = [r for recs in self.groups.values() for r in recs]
        made = generate(self.pipe, [p for p, _ in records], [s for _, s in records],
                        self.protocol["num_inference_steps"], self.cfg.guidance_scale)
        out, start = {}, 0
        for name, recs in self.groups.items():
            out[name], start = made[start : start + len(recs)], start + len(recs)
        return out

    def base(self) -> dict:
        self._load()
        if self.base_images is None:
            print("held-out images of the base model ...", flush=True)
            self.base_images = self.images()
        return self.figures(self.base_images)

    def point(self, lora_dir: Path) -> dict:
        self.base()
        self.pipe.load_lora_weights(str(lora_dir), adapter_name="tuned")
        try:
            return self.figures(self.images())
        finally:
            self.pipe.unload_lora_weights()

    def figures(self, images: dict) -> dict:
        import numpy as np

        from duo_unlearn.evaluation.metrics import concept_rate, flagged, preservation
        from duo_unlearn.stats import rate

        hits = np.concatenate([flagged(self.detector, images[g]) for g in concept_groups(self.model)])
        figs = {"concept_rate": rate(hits).to_dict()}
        for g in concept_groups(self.model):
            figs[f"concept_rate/{g}"] = concept_rate(self.detector, images[g]).to_dict()
        figs["prior_preservation"] = preservation(self.metric, self.base_images["safe"], images["safe"])[0].to_dict()
        if "close" in images:
            figs["close_concept_preservation"] = preservation(self.metric, self.base_images["close"],
                                                              images["close"])[0].to_dict()
            if self.close_detector is not None:
                figs["close_rate/close"] = concept_rate(self.close_detector, images["close"]).to_dict()
        return figs


def _cached(path: Path, key: dict) -> dict | None:
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved["figures"]
    return None


def make_shapeworld_pairs(cfg: TuneConfig, folder: Path) -> None:
    """The demo's pairs (its prompts, strength and detector filter), made or resumed in ``folder``."""
    from duo_unlearn.demo import DemoConfig, unsafe_safe_prompts
    from duo_unlearn.detectors import ShapeWorldDetector
    from duo_unlearn.io import read_jsonl
    from duo_unlearn.pairs import PairsConfig, make_pairs
    from duo_unlearn.pipelines import load_shapeworld

    meta = folder / "metadata.jsonl"
    if meta.is_file() and {r["index"] for r in read_jsonl(meta)} >= set(range(cfg.num_pairs)):
        return  # finished (make_pairs would resume an unfinished folder)
    print("SDEdit pairs (the demo's) ...", flush=True)
    unsafe, safe = unsafe_safe_prompts(cfg.num_pairs, cfg.seed + 17)
    make_pairs(PairsConfig(output_dir=str(folder), unsafe_prompts=tuple(unsafe), safe_prompts=tuple(safe),
                           num_pairs=cfg.num_pairs, strength=DemoConfig.strength, seed=cfg.seed),
               pipe=load_shapeworld(), detector=ShapeWorldDetector())


def run_tune(cfg: TuneConfig) -> dict:
    """Train and measure every point, choose one, write the results; returns tune_results.json's content."""
    from duo_unlearn.configs import config_to_yaml
    from duo_unlearn.io import atomic_write_json, atomic_write_text, file_digest
    from duo_unlearn.lora import LORA_WEIGHTS_NAME
    from duo_unlearn.preflight import check_tune
    from duo_unlearn.threads import pin_threads, threads_used

    check_tune(cfg)  # before any model loads
    pin_threads(cfg.num_threads)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    base_cfg = cfg.base_train_config()
    model = base_cfg.pretrained_model
    if cfg.makes_pairs():
        make_shapeworld_pairs(cfg, Path(base_cfg.pairs_dir))
    points = point_configs(cfg, base_cfg)
    for point in points.values():
        train_point(point)

    groups = heldout_prompts(cfg, model)
    protocol = {"model": model, "num_inference_steps": cfg.resolved_inference_steps(model),
                "guidance_scale": cfg.guidance_scale, "prompts": groups,
                "detector": "shapeworld" if model == SHAPEWORLD else cfg.detector,
                "metric": "shapeworld" if model == SHAPEWORLD else cfg.metric, "dtype": cfg.dtype}
    protocol = json.loads(json.dumps(protocol))  # as it reads back from the cache files (tuples: lists)
    evaluator = _Evaluator(cfg, model, groups, protocol)
    base_figures = _cached(out / "base_figures.json", protocol)
    if base_figures is None:
        base_figures = evaluator.base()
        atomic_write_json(out / "base_figures.json", {"key": protocol, "figures": base_figures})
    rows = []
    for name, point in points.items():
        folder = Path(point.output_dir)
        key = {**protocol, "lora_sha256": file_digest(folder / LORA_WEIGHTS_NAME)}
        figures = _cached(folder / FIGURES_FILE, key)
        if figures is None:
            print(f"held-out images of {name} ...", flush=True)
            figures = evaluator.point(folder)
            atomic_write_json(folder / FIGURES_FILE, {"key": key, "figures": figures})
        rows.append({"name": name, "beta": point.beta, "base_preservation_weight": point.base_preservation_weight,
                     "preservation_weight": point.resolved_preservation_weight,
                     "learning_rate": point.resolved_learning_rate, "lora_dir": str(folder), **figures})

    chosen = choose_operating_point(rows, cfg.preservation_target)
    frontier = {p["name"] for p in pareto_frontier(rows)}
    for row in rows:
        row["meets_target"] = meets_target(row, cfg.preservation_target)
        row["on_frontier"] = row["name"] in frontier
    results = {"preservation_target": cfg.preservation_target, "chosen": chosen["name"] if chosen else None,
               "points": rows, "base": base_figures, "tune_config": _plain(dataclasses.asdict(cfg)),
               "train_config": _plain(dataclasses.asdict(base_cfg)),
               "heldout_prompts": {g: [p for p, _ in recs] for g, recs in groups.items()},
               "torch_num_threads": threads_used()}
    atomic_write_json(out / "tune_results.json", results)
    best = out / "best_train_config.yaml"
    if chosen:
        best_cfg = dataclasses.replace(base_cfg, beta=chosen["beta"],
                                       base_preservation_weight=chosen["base_preservation_weight"],
                                       preservation_weight=None)
        atomic_write_text(best, f"# chosen by duo tune: {chosen['name']} (prior preservation "
                                f"{_value(chosen['prior_preservation']):.3f} >= target {cfg.preservation_target}); "
                                f"its LoRA is already in {chosen['lora_dir']}\n" + config_to_yaml(best_cfg))
    else:
        best.unlink(missing_ok=True)  # a previous run's choice no longer holds
    pareto_plot(out / "tune_pareto.png", results)
    text = tune_markdown(results)
    atomic_write_text(out / "tune.md", text)
    print(text, flush=True)
    return results


def _plain(data: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


# ---------------------------------------------------------------------- the report
def tune_markdown(results: dict) -> str:
    from duo_unlearn.stats import Estimate

    target, rows, chosen = results["preservation_target"], results["points"], results["chosen"]

    def fmt(fig: dict | None, spec: str) -> str:
        return Estimate.from_dict(fig).format(spec) if fig else "-"

    lines = ["# duo tune", "",
             f"Held-out prompts, 95 % intervals. Target: prior preservation >= {target} (point estimate). "
             f"Base model concept rate: {fmt(results['base']['concept_rate'], '.2f')}.", "",
             "| point | β | base λ | λ | lr | concept rate | prior preservation | close preservation | meets target "
             "| frontier |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mark = " **(chosen)**" if r["name"] == chosen else ""
        lines.append(f"| {r['name']}{mark} | {r['beta']:g} | {r['base_preservation_weight']:g} | "
                     f"{r['preservation_weight']:g} | {r['learning_rate']:.2g} | {fmt(r['concept_rate'], '.2f')} | "
                     f"{fmt(r['prior_preservation'], '.3f')} | {fmt(r.get('close_concept_preservation'), '.3f')} | "
                     f"{'yes' if r['meets_target'] else 'no'} | {'yes' if r['on_frontier'] else ''} |")
    lines.append("")
    if chosen:
        c = next(r for r in rows if r["name"] == chosen)
        lines.append(f"**Chosen: {chosen}** (β {c['beta']:g}, λ {c['preservation_weight']:g}): the lowest concept "
                     f"rate among the points that reach the target. Train it with "
                     f"`duo train --config best_train_config.yaml`, or use its LoRA in {c['lora_dir']}.")
        pres = Estimate.from_dict(c["prior_preservation"])
        if pres.low < target:
            lines.append(f"Its preservation interval reaches below the target ({pres.low:.3f}): with more held-out "
                         "prompts it might miss it.")
        rival = Estimate.from_dict(c["concept_rate"])
        ties = [r["name"] for r in rows if r["meets_target"] and r["name"] != chosen
                and Estimate.from_dict(r["concept_rate"]).overlaps(rival)]
        if ties:
            lines.append(f"Inside the noise of its concept rate (intervals overlap): {', '.join(ties)}.")
    else:
        front = [r for r in rows if r["on_frontier"]]
        lines.append(f"**No point reaches prior preservation {target}**; nothing is chosen and no "
                     "best_train_config.yaml is written. The frontier (best trade-offs measured):")
        lines += [f"- {r['name']}: concept rate {fmt(r['concept_rate'], '.2f')}, preservation "
                  f"{fmt(r['prior_preservation'], '.3f')}" for r in front]
        lines.append("Add larger base λ or smaller β values, or lower the target.")
    return "\n".join(lines) + "\n"


def pareto_plot(path: Path, results: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.0), dpi=120)
    for r in results["points"]:
        c, p = r["concept_rate"], r["prior_preservation"]
        chosen = r["name"] == results["chosen"]
        ax.errorbar(c["value"], p["value"], xerr=[[c["value"] - c["low"]], [c["high"] - c["value"]]],
                    yerr=[[p["value"] - p["low"]], [p["high"] - p["value"]]], fmt="*" if chosen else "o",
                    markersize=12 if chosen else 5, color="tab:red" if chosen else "tab:blue", capsize=2)
        ax.annotate(f"β{_num(r['beta'])} λ{_num(r['base_preservation_weight'])}", (c["value"], p["value"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    ax.axhline(results["preservation_target"], color="grey", linestyle="--", linewidth=1,
               label=f"target {results['preservation_target']}")
    ax.axvline(results["base"]["concept_rate"]["value"], color="black", linestyle=":", linewidth=1,
               label="base model concept rate")
    ax.set_xlabel("concept rate (held-out prompts)")
    ax.set_ylabel("prior preservation")
    ax.set_title("duo tune: β x λ (95 % intervals)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
