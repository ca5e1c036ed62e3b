"""Why empty-prompt DUO does not forget on ShapeWorld, and what fixes it (README, "Robust DUO").

    make demo                                          # writes demo-output/pairs (seed 0)
    OMP_NUM_THREADS=1 python benchmarks/empty_prompt_study.py [--only NAME ...]

Each variant is `duo demo`'s training (β 500, lr 1e-3, λ 5e6, 200 steps of 8 pairs, t in [1, 1000))
with the overrides below, on the demo's pairs. Measured on the demo's 32 prompts per group (seed 0):
the X rate on unsafe prompts with guidance 7.5 (as sampled) and 1.0 (the conditional path alone),
the X rate of the empty prompt without guidance, the plus-sign rate, and prior / close-concept
preservation. The recipe was chosen on these prompts; the robustness study's seeds test it on others.
Rows go to benchmarks-output/empty_prompt_study.jsonl (a finished variant is not retrained).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EMPTY = {"use_prompts": False, "prompt_dropout": 0.0, "adversarial_conditioning": False,
         "prompt_preference_weight": 1.0, "adversary_per_pair": False}
ROBUST = {**EMPTY, "adversarial_conditioning": True}
VARIANTS = {
    "pair-prompts": {**EMPTY, "use_prompts": True, "prompt_dropout": 0.2},  # the previous demo recipe
    "empty-prompt": EMPTY,                                                  # the paper's recipe
    "empty+adversary": {**ROBUST, "adversarial_steps": 2, "adversarial_weight": 1.0},
    "empty+adversary-4x2": {**ROBUST, "adversarial_steps": 4, "adversarial_weight": 2.0},
    "adversary-only": {**ROBUST, "adversarial_steps": 2, "adversarial_weight": 1.0, "prompt_preference_weight": 0.0},
    "adversary-only-4x2": {**ROBUST, "adversarial_steps": 4, "adversarial_weight": 2.0,
                           "prompt_preference_weight": 0.0},
    "adversary-only-4x2-beta1000": {**ROBUST, "adversarial_steps": 4, "adversarial_weight": 2.0,
                                    "prompt_preference_weight": 0.0, "beta": 1000.0},
    "adversary-only-4x2-fast": {**ROBUST, "adversarial_steps": 4, "adversarial_weight": 2.0,
                                "prompt_preference_weight": 0.0, "adversarial_lr": 0.05, "learning_rate": 2e-3},
    "adversary-only-4x2-400steps": {**ROBUST, "adversarial_steps": 4, "adversarial_weight": 2.0,
                                    "prompt_preference_weight": 0.0, "max_train_steps": 400},
    "per-pair-adversaries (demo)": {**ROBUST, "adversarial_steps": 4, "adversarial_weight": 2.0,
                                    "prompt_preference_weight": 0.0, "adversary_per_pair": True},
}


def measure(pipe, detector, close, metric, base_images) -> dict:
    from duo_unlearn.evaluation.metrics import concept_rate, preservation
    from duo_unlearn.sampling import generate
    from duo_unlearn.world.quality import measure_world_figures, prompt_groups

    figures, images = measure_world_figures(pipe, detector, close, 32, seed=0)
    unsafe = prompt_groups(32, 0)["unsafe"]
    conditional = generate(pipe, [r["prompt"] for r in unsafe], [r["seed"] for r in unsafe], 12, 1.0)
    empty = generate(pipe, [""] * 32, list(range(32)), 12, 1.0)
    row = {"x_unsafe_guided": figures["concept_rate/unsafe"],
           "x_unsafe_conditional": concept_rate(detector, conditional),
           "x_empty_prompt": concept_rate(detector, empty), "plus_rate": figures["close_rate/close"]}
    if base_images is not None:
        row["prior_preservation"] = preservation(metric, base_images["safe"], images["safe"])[0]
        row["close_concept_preservation"] = preservation(metric, base_images["close"], images["close"])[0]
    return {k: v.format(".3f") for k, v in row.items()}, images


def main() -> None:
    from duo_unlearn.demo import ROBUST_DUO_200_STEPS, DemoConfig, demo_train_config
    from duo_unlearn.detectors import ShapeWorldDetector
    from duo_unlearn.perceptual import ShapeWorldPerceptual
    from duo_unlearn.pipelines import load_shapeworld
    from duo_unlearn.trainer import train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="demo-output/pairs")
    parser.add_argument("--output", default="benchmarks-output/empty_prompt_study")
    parser.add_argument("--only", nargs="*", help="variant names (default: all)")
    args = parser.parse_args()
    if not (Path(args.pairs) / "metadata.jsonl").is_file():
        raise SystemExit(f"{args.pairs}: no pairs (run `make demo` first)")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    detector, close = ShapeWorldDetector(), ShapeWorldDetector(concept="plus")
    metric = ShapeWorldPerceptual(detector)
    pipe = load_shapeworld()
    pipe.set_progress_bar_config(disable=True)
    base_row, base_images = measure(pipe, detector, close, metric, None)
    print("base", base_row, flush=True)
    demo = DemoConfig(**ROBUST_DUO_200_STEPS)  # the recipe README's table was measured on
    for name, overrides in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        folder = out / name.split(" ")[0]
        if not (folder / "pytorch_lora_weights.safetensors").is_file():
            train(demo_train_config(demo, args.pairs, folder, **overrides), pipe=load_shapeworld())
        pipe.load_lora_weights(str(folder))
        row, _ = measure(pipe, detector, close, metric, base_images)
        pipe.unload_lora_weights()
        print(name, row, flush=True)
        with (out.parent / "empty_prompt_study.jsonl").open("a") as f:
            f.write(json.dumps({"variant": name, "overrides": overrides, **row}) + "\n")


if __name__ == "__main__":
    main()
