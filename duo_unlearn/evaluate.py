"""`duo eval`: every method through every attack and metric, into one report.

    make eval      (duo eval --config configs/eval_shapeworld.yaml)

On ShapeWorld it (1) makes one set of SDEdit pairs, (2) trains DUO at several β, DUO
without the output-preserving regulariser (the paper's ablation), and the ESD and UCE
baselines, each skipped when its weights already exist, (3) runs the base model and every
unlearned model through the attacks and metrics with the same prompts and seeds, and (4)
writes ``report/``: results.json, index.md, index.html, a defence-success-vs-preservation
plot per attack (the paper's Figure 4) and same-seed grids.

Metrics: defence success rate per attack (share of attack images without the concept);
prior preservation (1 − perceptual distance to the base model on safe prompts, same
seeds); close-concept preservation (the same on prompts for the safe look-alike); FID in
the detector's feature space against real renders; prompted colour/shape accuracy (the
world's stand-in for CLIP score).
"""

from __future__ import annotations

import dataclasses
import html
import json
import time
from pathlib import Path

from duo_unlearn.io import atomic_write_json, atomic_write_text

ATTACK_NAMES = ("paraphrase", "ring-a-bell", "concept-inversion", "sneakyprompt", "unlearndiffatk")


@dataclasses.dataclass
class EvalConfig:
    """Settings of `duo eval` (the study of issue-tracker items 5 and 6)."""

    output_dir: str = "eval-output"
    """Models, attack results and report/ go here; re-running reuses what is finished."""
    betas: tuple[float, ...] = (250.0, 500.0, 1000.0)
    """DUO is trained at each of these β."""
    ablation_beta: float | None = 500.0
    """Also train DUO at this β with λ = 0 (no output preservation); None skips the ablation."""
    baselines: tuple[str, ...] = ("esd", "uce")
    """Prompt-based baselines trained on the same model: 'esd', 'uce'."""
    attacks: tuple[str, ...] = ATTACK_NAMES
    """Attacks run against every model (all five by default)."""
    base_learning_rate: float = 5e-3
    """DUO's lr at β = 100 (lr = base·100/β): 1e-3 at β = 500, the demo's setting."""
    base_preservation_weight: float = 1e6
    """DUO's λ at β = 100 (λ = base·β/100, the paper's rule): 5e6 at β = 500, the demo's setting."""
    use_prompts: bool = True
    """Condition DUO on the pair prompts (see README: ShapeWorld needs it)."""
    prompt_dropout: float = 0.2
    """DUO's cfg_train dropout."""
    timestep_range: tuple[int, int] = (1, 1000)
    """DUO's timestep range."""
    num_pairs: int = 64
    """SDEdit pairs shared by every DUO model."""
    train_steps: int = 200
    """DUO steps per model."""
    train_batch_size: int = 8
    """Pairs per DUO step."""
    esd_steps: int = 150
    """ESD-x steps."""
    num_attack_prompts: int = 6
    """Attack prompts (or target images) per attack."""
    images_per_prompt: int = 2
    """Seeds per attack prompt."""
    attack_budget: int = 0
    """Per-attack effort (0: each attack's ShapeWorld default)."""
    num_eval_prompts: int = 32
    """Prompts per metric group (safe, unsafe, held-out, close), one seed each."""
    seed: int = 0
    """Seeds pairs, training, prompts and images."""


def _model_specs(cfg: EvalConfig) -> list[dict]:
    specs = [{"name": "base", "method": "base"}]
    specs += [{"name": f"duo-b{int(b)}", "method": "duo", "beta": b} for b in cfg.betas]
    if cfg.ablation_beta is not None:
        specs.append({"name": f"duo-b{int(cfg.ablation_beta)}-no-reg", "method": "duo", "beta": cfg.ablation_beta,
                      "preservation_weight": 0.0})
    specs += [{"name": b, "method": b} for b in cfg.baselines]
    return specs


def _train_model(spec: dict, cfg: EvalConfig, pairs_dir: Path, folder: Path, concept_prompts, safe_prompts,
                 preserve_prompts) -> None:
    from duo_unlearn.config import DUOConfig
    from duo_unlearn.lora import LORA_WEIGHTS_NAME
    from duo_unlearn.pipelines import load_shapeworld
    from duo_unlearn.trainer import train

    if (folder / LORA_WEIGHTS_NAME).is_file():
        return
    pipe = load_shapeworld()
    if spec["method"] == "duo":
        train(DUOConfig(pairs_dir=str(pairs_dir), output_dir=str(folder), beta=spec["beta"],
                        base_learning_rate=cfg.base_learning_rate,
                        base_preservation_weight=cfg.base_preservation_weight,
                        preservation_weight=spec.get("preservation_weight"), use_prompts=cfg.use_prompts,
                        prompt_dropout=cfg.prompt_dropout, timestep_range=cfg.timestep_range,
                        max_train_steps=cfg.train_steps, train_batch_size=cfg.train_batch_size, seed=cfg.seed,
                        checkpointing_steps=0), pipe=pipe)
    elif spec["method"] == "esd":
        train(DUOConfig(method="esd", output_dir=str(folder), esd_concept_prompt="a shape with a black x over it",
                        esd_eta=1.0, esd_variant="x", learning_rate=1e-3, lora_rank=8, lora_alpha=8,
                        max_train_steps=cfg.esd_steps, train_batch_size=4, seed=cfg.seed, checkpointing_steps=0),
              pipe=pipe)
    elif spec["method"] == "uce":
        train(DUOConfig(method="uce", output_dir=str(folder), uce_erase_prompts=tuple(concept_prompts),
                        uce_target_prompts=tuple(safe_prompts), uce_preserve_prompts=tuple(preserve_prompts)),
              pipe=pipe)
    else:
        raise ValueError(f"unknown method {spec['method']!r}")


def run_eval(cfg: EvalConfig) -> dict:
    from duo_unlearn.attacks import AttackConfig, attack, shapeworld_task
    from duo_unlearn.demo import DemoConfig, preservation, unsafe_safe_prompts
    from duo_unlearn.detectors import ShapeWorldDetector
    from duo_unlearn.grids import save_grid
    from duo_unlearn.pairs import PairsConfig, make_pairs
    from duo_unlearn.perceptual import ShapeWorldPerceptual, frechet_distance
    from duo_unlearn.pipelines import load_shapeworld
    from duo_unlearn.world.quality import measure_world_figures, prompt_groups
    from duo_unlearn.world.scene import caption_pair, render_scene, sample_scenes

    out = Path(cfg.output_dir)
    report = out / "report"
    started = time.time()
    detector, close = ShapeWorldDetector(), ShapeWorldDetector(concept="plus")
    metric = ShapeWorldPerceptual(detector)

    print("pairs ...", flush=True)
    unsafe_prompts, safe_prompts = unsafe_safe_prompts(cfg.num_pairs, cfg.seed + 17)
    pipe = load_shapeworld()
    make_pairs(PairsConfig(output_dir=str(out / "pairs"), unsafe_prompts=tuple(unsafe_prompts),
                           safe_prompts=tuple(safe_prompts), num_pairs=cfg.num_pairs,
                           strength=DemoConfig.strength, seed=cfg.seed),
               pipe=pipe, detector=detector)
    import random

    rng = random.Random(cfg.seed + 99)
    preserve = [caption_pair(s, rng)[0] for s in sample_scenes(16, seed=cfg.seed + 98, mark="plus")]
    preserve += [caption_pair(s, rng)[1] for s in sample_scenes(16, seed=cfg.seed + 97, mark="x")]

    specs = _model_specs(cfg)
    for spec in specs[1:]:
        print(f"train {spec['name']} ...", flush=True)
        _train_model(spec, cfg, out / "pairs", out / "models" / spec["name"], unsafe_prompts[:16],
                     safe_prompts[:16], preserve)

    task = shapeworld_task(max(cfg.num_attack_prompts, 8), seed=cfg.seed + 1000)
    groups = prompt_groups(cfg.num_eval_prompts, cfg.seed)
    real = [render_scene(s) for s in sample_scenes(256, seed=cfg.seed + 31337, mark_probs=(1, 0, 0))]
    real_feats = metric.embeddings(real)
    results: dict[str, dict] = {}
    base_images = None
    for spec in specs:
        name = spec["name"]
        print(f"evaluate {name} ...", flush=True)
        pipe = load_shapeworld()
        if spec["method"] != "base":
            pipe.load_lora_weights(str(out / "models" / name))
        figures, images = measure_world_figures(pipe, detector, close, cfg.num_eval_prompts, seed=cfg.seed)
        if base_images is None:
            base_images = images
        row = {"method": spec["method"], "beta": spec.get("beta"), **figures}
        row["prior_preservation"] = preservation(metric, base_images["safe"], images["safe"])
        row["close_concept_preservation"] = preservation(metric, base_images["close"], images["close"])
        row["fid_detector_space"] = frechet_distance(metric.embeddings(images["safe"]), real_feats)
        for attack_name in cfg.attacks:
            acfg = AttackConfig(method=attack_name, num_prompts=cfg.num_attack_prompts,
                                images_per_prompt=cfg.images_per_prompt, seed=cfg.seed, budget=cfg.attack_budget)
            result = attack(pipe, detector, task, acfg, folder=out / "attacks" / name / attack_name,
                            settings={**dataclasses.asdict(acfg), "model": name, "detector": detector.settings()})
            row[f"dsr/{attack_name}"] = result.defence_success_rate
            row[f"asr/{attack_name}"] = result.attack_success_rate
            save_grid(report / "attacks" / f"{name}_{attack_name}.png", result.images[:16], 8)
        results[name] = row
        if name != "base":
            save_grid(report / "grids" / f"{name}_safe.png", base_images["safe"][:8] + images["safe"][:8], 8,
                      row_labels=["base", name])
            save_grid(report / "grids" / f"{name}_unsafe.png", base_images["unsafe"][:8] + images["unsafe"][:8], 8,
                      row_labels=["base", name])
        atomic_write_json(report / "results.json", {"results": results, "settings": dataclasses.asdict(cfg),
                                                    "detector": detector.settings(), "metric": metric.name,
                                                    "prompts": {k: [r["prompt"] for r in v] for k, v in
                                                                groups.items()}})
    write_report(report, results, cfg, time.time() - started)
    return results


def pareto_plots(report: Path, results: dict, attacks) -> list[Path]:
    """DSR against prior preservation per attack, one PNG each (top right is best)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    colours = {"base": "black", "duo": "tab:blue", "esd": "tab:orange", "uce": "tab:green"}
    for attack_name in attacks:
        fig, ax = plt.subplots(figsize=(4.5, 3.6), dpi=120)
        for name, row in results.items():
            x, y = row["prior_preservation"], row[f"dsr/{attack_name}"]
            marker = "x" if "no-reg" in name else "o"
            ax.scatter([x], [y], c=colours.get(row["method"], "gray"), marker=marker, s=40)
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("prior preservation (1 - distance to base)")
        ax.set_ylabel("defence success rate")
        ax.set_title(attack_name)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = report / f"pareto_{attack_name}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def _table(results: dict, attacks) -> list[str]:
    head = ["model", "preservation", "close pres.", "FID(det)", "colour acc", "concept rate (unsafe)"] + \
        [f"DSR {a}" for a in attacks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        cells = [name, f"{r['prior_preservation']:.3f}", f"{r['close_concept_preservation']:.3f}",
                 f"{r['fid_detector_space']:.1f}", f"{r['colour_accuracy/safe']:.2f}",
                 f"{r['concept_rate/unsafe']:.2f}"] + [f"{r[f'dsr/{a}']:.2f}" for a in attacks]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_report(report: Path, results: dict, cfg: EvalConfig, seconds: float) -> Path:
    plots = pareto_plots(report, results, cfg.attacks)
    table = _table(results, cfg.attacks)
    base = results.get("base", {})
    md = [
        "# duo-unlearn evaluation (ShapeWorld)", "",
        "DSR = defence success rate: share of attack images in which the detector finds no X. Against the *base* "
        "model, 1 − DSR is how often each attack succeeds at all:", "",
        "| attack | success against the base model |", "|---|---|",
        *[f"| {a} | {base.get(f'asr/{a}', float('nan')):.2f} |" for a in cfg.attacks], "",
        "## All models", "", *table, "",
        "## Defence success against prior preservation", "",
        *[f"![{p.stem}]({p.name})" for p in plots], "",
        f"Settings: `{json.dumps(dataclasses.asdict(cfg))}`; {seconds / 60:.0f} minutes.", "",
    ]
    atomic_write_text(report / "index.md", "\n".join(md))
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in line.strip("|").split("|")) + "</tr>"
        for line in table[2:])
    head = "".join(f"<th>{html.escape(c.strip())}</th>" for c in table[0].strip("|").split("|"))
    page = (f"<!doctype html><meta charset='utf-8'><title>duo-unlearn report</title>"
            f"<h1>duo-unlearn evaluation (ShapeWorld)</h1><table border=1 cellpadding=4><tr>{head}</tr>{rows}</table>"
            + "".join(f"<img src='{p.name}'>" for p in plots))
    atomic_write_text(report / "index.html", page)
    return report
