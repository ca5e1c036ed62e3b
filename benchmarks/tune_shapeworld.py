"""Sweep DUO settings on ShapeWorld: concept rate against prior preservation, one table.

    python benchmarks/tune_shapeworld.py --grid '[{"preservation_weight": 1e6}, {"strength": 0.75}]'

Each grid entry overrides the demo's settings (any DemoConfig or DUOConfig field, plus
``require_same_content`` for the pairs). Base-model images and pair datasets are made once
and shared across entries with the same pair settings; every entry trains from the base
model and is measured on the demo's prompts and seeds. The README's tuning tables come
from this script.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

PAIR_FIELDS = ("strength", "require_same_content", "num_pairs")


def main(argv=None) -> int:
    from duo_unlearn.demo import ROBUST_DUO_200_STEPS, DemoConfig, demo_train_config, unsafe_safe_prompts
    from duo_unlearn.detectors import ShapeWorldDetector
    from duo_unlearn.evaluation.metrics import preservation
    from duo_unlearn.pairs import PairDataset, PairsConfig, make_pairs
    from duo_unlearn.perceptual import ShapeWorldPerceptual
    from duo_unlearn.pipelines import load_shapeworld
    from duo_unlearn.trainer import train
    from duo_unlearn.world.quality import measure_world_figures

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", required=True, help="JSON list of override dicts")
    parser.add_argument("--output-dir", default="tune-output")
    args = parser.parse_args(argv)
    grid = json.loads(args.grid)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    demo = DemoConfig(**ROBUST_DUO_200_STEPS)  # the recipe README's tables were measured on
    detector, close = ShapeWorldDetector(), ShapeWorldDetector(concept="plus")
    metric = ShapeWorldPerceptual(detector)
    base, base_images = measure_world_figures(load_shapeworld(), detector, close, demo.num_eval_prompts, seed=demo.seed)
    results_path = out / "results.jsonl"
    for entry in grid:
        started = time.time()
        pair_settings = {"strength": demo.strength, "require_same_content": True, "num_pairs": demo.num_pairs}
        pair_settings.update({k: entry[k] for k in PAIR_FIELDS if k in entry})
        pairs_dir = out / "pairs-{strength}-{require_same_content}-{num_pairs}".format(**pair_settings)
        unsafe, safe = unsafe_safe_prompts(pair_settings["num_pairs"], demo.seed + 17)
        pipe = load_shapeworld()
        summary = make_pairs(PairsConfig(output_dir=str(pairs_dir), unsafe_prompts=tuple(unsafe),
                                         safe_prompts=tuple(safe), seed=demo.seed, **pair_settings),
                             pipe=pipe, detector=detector)
        overrides = {k: v for k, v in entry.items() if k not in PAIR_FIELDS}  # any DUOConfig field
        if "timestep_range" in overrides:
            overrides["timestep_range"] = tuple(overrides["timestep_range"])
        cfg = demo_train_config(demo, pairs_dir, out / f"run-{len(list(out.glob('run-*')))}", **overrides)
        train(cfg, pipe=pipe, dataset=PairDataset.load(pairs_dir))
        after, after_images = measure_world_figures(pipe, detector, close, demo.num_eval_prompts, seed=demo.seed)
        row = {"entry": entry, "pairs_kept": summary["kept"],
               "unsafe_rate": after["concept_rate/unsafe"].to_dict(),
               "base_unsafe_rate": base["concept_rate/unsafe"].to_dict(),
               "heldout_rate": after["concept_rate/heldout"].to_dict(),
               "preservation": preservation(metric, base_images["safe"], after_images["safe"])[0].to_dict(),
               "close_preservation": preservation(metric, base_images["close"], after_images["close"])[0].to_dict(),
               "close_rate": after["close_rate/close"].to_dict(),
               "colour_accuracy_unsafe": after["colour_accuracy/unsafe"].to_dict(),
               "seconds": round(time.time() - started)}
        print(json.dumps(row), flush=True)
        with results_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
