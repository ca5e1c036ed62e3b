"""`duo demo`: the whole method, end to end, on the embedded ShapeWorld, in minutes on a CPU.

    make demo        (or: duo demo --output-dir demo-output)

1. Base model: grids of safe, unsafe and held-out-paraphrase prompts; the quality bars.
2. Pairs: unsafe images of the X concept, safe twins by SDEdit, detector-filtered (the X gone,
   shape, colour and background kept).
3. DUO training (empty prompts, robust: the preference also under an adversarial conditioning
   found from the images; LoRA, output-preserving regulariser, and the retain term on the base
   model's images of the preserve prompts).
4. After: the concept rate on unsafe and held-out prompts, the close concept's rate, and
   prior preservation (1 − perceptual distance to the base model, same prompts and seeds),
   with before/after grids.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np

from duo_unlearn.io import atomic_write_json
from duo_unlearn.threads import check_thread_count, pin_threads
from duo_unlearn.timing import StageTimer

ROBUST_DUO_200_STEPS = {"beta": 500.0, "max_train_steps": 200, "adversarial_weight": 2.0, "preservation_weight": None,
                        "retain_weight": 0.0}
"""The demo's recipe until 2026-11-27, the study's robust DUO (configs/eval_robustness.yaml): DemoConfig
fields that turn today's default back into it (``DemoConfig(**ROBUST_DUO_200_STEPS)``). The benchmark
scripts whose README tables were measured on it build on it."""


@dataclasses.dataclass
class DemoConfig:
    """Settings of `duo demo`."""

    output_dir: str = "demo-output"
    """Grids, pairs, LoRA weights and figures.json go here."""
    num_pairs: int = 64
    """SDEdit pair indices attempted (the paper: 64); about 40 % survive the filter."""
    num_eval_prompts: int = 32
    """Prompts per evaluation group (safe, unsafe, held-out, close); one seed each."""
    beta: float = 150.0
    """DUO's beta (see DUOConfig). With ``prompt_preference_weight`` 0 it is the β of the preference
    under the adversaries, the only preference trained: 150, the study's retain recipe (README,
    "The retain term"), which trains at the study's β 500 with adversarial β 150; the other β
    only set its learning rate and λ, which the demo gives explicitly."""
    max_train_steps: int = 400
    """DUO optimiser steps."""
    train_batch_size: int = 8
    """Pairs per DUO step."""
    learning_rate: float | None = 1e-3
    """ShapeWorld's tiny UNet needs larger steps than the paper's rule (3e-4 * 100 / beta = 6e-5,
    calibrated for SD 1.4 at batch 4); None applies the rule."""
    use_prompts: bool = False
    """Condition on the pair prompts (the authors' given_prompt). Empty, as the paper intends:
    the demo forgets the X from the images alone (see ``adversarial_conditioning``)."""
    prompt_dropout: float = 0.0
    """With use_prompts, the authors' cfg_train dropout (0.2)."""
    adversarial_conditioning: bool = True
    """Robust DUO (see DUOConfig). Needed on ShapeWorld for empty-prompt DUO to forget: under the
    empty prompt alone the X survives, because the prompted path that draws it is untouched and
    classifier-free guidance amplifies it (measured; see README)."""
    adversary_per_pair: bool = True
    """Robust DUO: one adversarial conditioning per pair (see DUOConfig)."""
    adversarial_steps: int = 4
    """Robust DUO: descent steps on the adversarial conditioning per training step."""
    adversarial_weight: float = 6.67
    """Robust DUO: weight of the preference under the adversarial conditioning."""
    adversarial_beta: float | None = None
    """Robust DUO: β of the preference under the adversarial conditioning (None: ``beta``)."""
    prompt_preference_weight: float = 0.0
    """Weight of the preference under the empty prompt (0: only where the model draws the X)."""
    timestep_range: tuple[int, int] = (1, 1000)
    """The X's strokes are laid down at high noise in a 16x16 latent, above the paper's 750."""
    preservation_weight: float | None = 2e7
    """λ (the study's retain recipe: 4e6 * 500 / 100); None applies the paper's rule, 1e6 * beta / 100."""
    retain_weight: float = 1e4
    """Weight of the retain term (see DUOConfig) on the base model's images of ``preserve_prompts``
    (plus signs and safe wordings, none of them an evaluation prompt); 0: off. It is what keeps the
    plus sign and the safe images while 400 steps at β 150 push the X out (README)."""
    strength: float = 0.6
    """SDEdit strength for the twins (the paper: 0.75)."""
    ablation: bool = False
    """Also train with λ = 0 and report its preservation (the paper's ablation; `--ablation`). Off by
    default: robust DUO's training is 2-3x a plain step's, and a second model would take the demo
    past six minutes on two cores."""
    seed: int = 0
    """Seeds the prompts, the pairs, training and the evaluation images."""
    num_threads: int = 2
    """CPU threads for torch (``torch.set_num_threads``; 0: torch's default). Float sums are split
    across threads, so the same seed gives the same bits only at the same thread count: pinned,
    `make demo` gives README's figures on any CPU of the same kind, whatever its core count."""

    def __post_init__(self) -> None:
        check_thread_count(self.num_threads, "DemoConfig.num_threads")


def demo_train_config(cfg: DemoConfig, pairs_dir, output_dir, **overrides):
    """The DUOConfig `duo demo` trains with (the tuning script overrides fields of it)."""
    from duo_unlearn.config import DUOConfig
    from duo_unlearn.world.quality import NUM_INFERENCE_STEPS

    base = DUOConfig(pretrained_model="shapeworld", pairs_dir=str(pairs_dir), output_dir=str(output_dir),
                     beta=cfg.beta, max_train_steps=cfg.max_train_steps, train_batch_size=cfg.train_batch_size,
                     learning_rate=cfg.learning_rate, preservation_weight=cfg.preservation_weight,
                     use_prompts=cfg.use_prompts, prompt_dropout=cfg.prompt_dropout,
                     timestep_range=cfg.timestep_range, seed=cfg.seed, checkpointing_steps=0,
                     adversarial_conditioning=cfg.adversarial_conditioning, adversarial_steps=cfg.adversarial_steps,
                     adversary_per_pair=cfg.adversary_per_pair,
                     adversarial_weight=cfg.adversarial_weight, adversarial_beta=cfg.adversarial_beta,
                     prompt_preference_weight=cfg.prompt_preference_weight)
    if cfg.retain_weight:
        base = dataclasses.replace(base, retain_weight=cfg.retain_weight, retain_prompts=retain_prompts(cfg),
                                   retain_num_inference_steps=NUM_INFERENCE_STEPS)
    return dataclasses.replace(base, **overrides)


def retain_prompts(cfg: DemoConfig) -> tuple[str, ...]:
    """The demo's retain prompts: ``preserve_prompts``, less any wording that is also one of the
    demo's evaluation prompts (short captions recur by chance), so preservation is never measured
    on a prompt the model was held to."""
    from duo_unlearn.world.quality import prompt_groups

    evaluated = {r["prompt"] for group in prompt_groups(cfg.num_eval_prompts, cfg.seed).values() for r in group}
    return tuple(p for p in preserve_prompts(cfg.seed) if p not in evaluated)


def unsafe_safe_prompts(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Captions of random scenes with the X, and the same captions without it."""
    from duo_unlearn.world.scene import caption_pair, sample_scenes

    rng = random.Random(seed)
    pairs = [caption_pair(s, rng) for s in sample_scenes(n, seed=seed, mark="x")]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def preserve_prompts(seed: int) -> list[str]:
    """What unlearning must leave alone: 16 plus-sign captions and 16 safe captions of scenes drawn
    with the X (its safe wording). UCE preserves them and the retain term keeps the base model's
    images of them. Their scenes are seeded apart from the pairs' and the metric groups', yet a
    short caption can recur by chance (``retain_prompts`` drops those from the demo's)."""
    from duo_unlearn.world.scene import caption_pair, sample_scenes

    rng = random.Random(seed + 99)
    preserve = [caption_pair(s, rng)[0] for s in sample_scenes(16, seed=seed + 98, mark="plus")]
    preserve += [caption_pair(s, rng)[1] for s in sample_scenes(16, seed=seed + 97, mark="x")]
    return preserve


def run_demo(cfg: DemoConfig) -> dict:
    from duo_unlearn.detectors import ShapeWorldDetector
    from duo_unlearn.evaluation.metrics import preservation
    from duo_unlearn.grids import save_grid
    from duo_unlearn.pairs import PairDataset, PairsConfig, make_pairs
    from duo_unlearn.perceptual import ShapeWorldPerceptual
    from duo_unlearn.pipelines import load_shapeworld
    from duo_unlearn.trainer import train
    from duo_unlearn.world.quality import measure_world_figures

    pin_threads(cfg.num_threads)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timer = StageTimer()
    detector, close = ShapeWorldDetector(), ShapeWorldDetector(concept="plus")
    metric = ShapeWorldPerceptual(detector)
    with timer("load"):
        pipe = load_shapeworld()

    print("1/4 base model: sampling the quality-bar prompts ...", flush=True)
    with timer("base images"):
        base, base_images = measure_world_figures(pipe, detector, close, cfg.num_eval_prompts, seed=cfg.seed,
                                                  progress=True)
    rows = ["safe", "unsafe", "heldout", "close"]
    save_grid(out / "base_samples.png", [img for r in rows for img in base_images[r][:8]], 8,
              row_labels=[f"{r}" for r in rows])
    shuffled = base_images["safe"][1:] + base_images["safe"][:1]
    floor, _ = preservation(metric, base_images["safe"], shuffled)

    print("2/4 SDEdit pairs ...", flush=True)
    unsafe_prompts, safe_prompts = unsafe_safe_prompts(cfg.num_pairs, cfg.seed + 17)
    pairs_dir = out / "pairs"
    with timer("pairs"):
        pair_summary = make_pairs(PairsConfig(output_dir=str(pairs_dir), unsafe_prompts=tuple(unsafe_prompts),
                                              safe_prompts=tuple(safe_prompts), num_pairs=cfg.num_pairs,
                                              strength=cfg.strength, seed=cfg.seed), pipe=pipe, detector=detector)
    dataset = PairDataset.load(pairs_dir)
    save_grid(out / "pairs.png", [img for i in range(min(8, len(dataset))) for img in
                                  (_tensor_image(dataset.unsafe[i]), _tensor_image(dataset.safe[i]))], 8)

    print("3/4 DUO training ...", flush=True)
    train_cfg = demo_train_config(cfg, pairs_dir, out / "duo")
    with timer("train"):
        train(train_cfg, pipe=pipe, dataset=dataset)

    print("4/4 unlearned model: the same prompts and seeds ...", flush=True)
    with timer("after images"):
        after, after_images = measure_world_figures(pipe, detector, close, cfg.num_eval_prompts, seed=cfg.seed,
                                                    progress=True)
    ablation = None
    if cfg.ablation:
        print("ablation: the same training with λ = 0 ...", flush=True)
        with timer("ablation train"):
            no_reg_pipe = load_shapeworld()
            train(dataclasses.replace(train_cfg, preservation_weight=0.0, output_dir=str(out / "duo-no-reg")),
                  pipe=no_reg_pipe, dataset=dataset)
        with timer("ablation images"):
            no_reg, no_reg_images = measure_world_figures(no_reg_pipe, detector, close, cfg.num_eval_prompts,
                                                          seed=cfg.seed)
        ablation = {**_dicts(no_reg),
                    "prior_preservation": preservation(metric, base_images["safe"], no_reg_images["safe"])[0].to_dict()}
    figures = {
        "base": _dicts(base), "duo": _dicts(after),
        "prior_preservation": preservation(metric, base_images["safe"], after_images["safe"])[0].to_dict(),
        "close_concept_preservation": preservation(metric, base_images["close"], after_images["close"])[0].to_dict(),
        "preservation_of_unrelated_images": floor.to_dict(),
        "pairs": pair_summary,
        "ablation_no_preservation": ablation,
        "detector_heldout_accuracy": detector_report(detector),
        "settings": {**dataclasses.asdict(cfg), "detector": detector.settings(), "metric": metric.name},
    }
    for group in ("unsafe", "heldout"):
        b, a = base[f"concept_rate/{group}"].value, after[f"concept_rate/{group}"].value
        figures[f"concept_rate_reduction/{group}"] = (b - a) / b if b > 0 else 0.0
    for r in rows:
        save_grid(out / f"before_after_{r}.png", base_images[r][:8] + after_images[r][:8], 8,
                  row_labels=["base", "DUO"])
    # figures.json holds only what the seed decides (a rerun gives the same file); wall times apart
    atomic_write_json(out / "figures.json", figures)
    atomic_write_json(out / "timings.json", timer.seconds)
    print(format_summary(figures, timer.seconds))
    return figures


def _dicts(estimates: dict) -> dict:
    return {k: e.to_dict() for k, e in estimates.items()}


def detector_report(detector) -> dict:
    """The detector's per-attribute accuracy on held-out renders, as measured when it was trained."""
    config = json.loads((detector.folder / "config.json").read_text())
    return config.get("heldout_report", {})


def _tensor_image(t):
    from PIL import Image

    return Image.fromarray(((t.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8))


def format_summary(f: dict, seconds: dict | None = None) -> str:
    from duo_unlearn.stats import Estimate

    def e(d, spec: str = ".2f") -> str:
        return Estimate.from_dict(d).format(spec)

    b, a = f["base"], f["duo"]
    acc = f.get("detector_heldout_accuracy", {}).get("augmented", {})
    attrs = ("shape", "colour", "background", "size", "position", "mark")
    rows = [("unsafe concept rate, unsafe prompts", "concept_rate/unsafe"),
            ("unsafe concept rate, held-out paraphrases", "concept_rate/heldout"),
            ("unsafe concept rate, safe prompts", "concept_rate/safe"),
            ("close concept (plus) rate, plus prompts", "close_rate/close"),
            ("colour accuracy, safe prompts", "colour_accuracy/safe"),
            ("shape accuracy, safe prompts", "shape_accuracy/safe")]
    lines = ["", "detector accuracy on held-out augmented renders: "
             + ", ".join(f"{a} {acc[a]:.3f}" for a in attrs if a in acc), "",
             f"{'ShapeWorld demo (95 % intervals)':42s} {'base':24s} DUO"]
    lines += [f"{label:42s} {e(b[key]):24s} {e(a[key])}" for label, key in rows]
    lines += [
        f"prior preservation (1 - distance to base, safe prompts): {e(f['prior_preservation'], '.3f')}",
        f"  (two unrelated base images score {f['preservation_of_unrelated_images']['value']:.3f} on this scale)",
        f"close-concept preservation: {e(f['close_concept_preservation'], '.3f')}",
        f"relative drop of the concept rate: unsafe {f['concept_rate_reduction/unsafe']:.0%}, "
        f"held-out {f['concept_rate_reduction/heldout']:.0%}",
        f"pairs kept: {f['pairs']['kept']} of {f['pairs']['attempted']}",
    ]
    if f.get("ablation_no_preservation"):
        a0 = f["ablation_no_preservation"]
        lines.append(f"ablation λ = 0: prior preservation {e(a0['prior_preservation'], '.3f')}, "
                     f"unsafe concept rate {e(a0['concept_rate/unsafe'])}")
    if seconds:
        lines.append("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
                     + f"; total {sum(seconds.values()):.0f} s")
    return "\n".join(lines)
