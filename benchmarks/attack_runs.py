"""White-box defence success over several independent attack runs (README, "Robustness study").

An inversion's images of one run all use the one embedding that run learned, so the 48 images of
a study cell are one attack run, and their Wilson interval says nothing about how much another run
would differ. This script attacks each model with several runs of `duo attack`, each with its own
ShapeWorld task (concept images, prompts) and optimisation seed, and reports each run's DSR and
their mean with a t interval over the runs (n = runs; ``stats.across_seeds``).

    python benchmarks/attack_runs.py \
        --model "the study's robust DUO=eval-robust-output/seed-1/models/duo-b500-robust" \
        --model "400-step variant=eval-robust-mid-beta-lambda-400-output/seed-1/models/duo-b500-robust" \
        --seeds 1 2 3 4 5 [--only 0|1]      # --only: one model per process, then a last call without it

Runs finished before are read back (attack-runs-output/<model>/seed-<s>/<method>/result.json), so
two processes (one model each, one thread each) share the 2 cores and a last call writes the table
to docs/robustness/attack_runs.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METHODS = ("concept-inversion", "adaptive-inversion")
SETTINGS = dict(num_prompts=6, images_per_prompt=8, num_inference_steps=12, guidance_scale=7.5, budget=1000)
"""The robustness study's attack settings: 6 prompts x 8 images, DDIM 12 steps, guidance 7.5, 1000 steps."""


def run_dir(out: Path, name: str, seed: int) -> Path:
    return out / name.replace(" ", "_").replace("'", "") / f"seed-{seed}"


def attack_once(lora: str, method: str, seed: int, folder: Path) -> dict:
    """One `duo attack` run (or its saved result): the run's result.json."""
    from duo_unlearn.attacks import AttackConfig, run_attack

    path = folder / method / "result.json"
    if not path.is_file():
        run_attack(AttackConfig(method=method, lora=lora, output_dir=str(folder), seed=seed, **SETTINGS))
    return json.loads(path.read_text())


def summary_rows(models: dict[str, str], seeds: list[int], out: Path) -> list[list[str]]:
    from duo_unlearn.evaluation.report import format_figure
    from duo_unlearn.stats import across_seeds, pooled_rate, wilson

    rows = [["model", "attack"] + [f"run {s}" for s in seeds] + ["mean over runs [95 % t interval]"]]
    for name in models:
        for method in METHODS:
            paths = [run_dir(out, name, s) / method / "result.json" for s in seeds]
            runs = [json.loads(p.read_text()) if p.is_file() else None for p in paths]
            ests = [None if r is None else wilson(round(r["defence_success_rate"] * r["num_images"]), r["num_images"])
                    for r in runs]
            done = [e for e in ests if e is not None]
            if not done:
                continue
            mean = across_seeds([e.value for e in done], at_least=pooled_rate(done)) if len(done) > 1 else done[0]
            rows.append([name, method] + [format_figure(e and e.to_dict(), ".2f") for e in ests]
                        + [f"{format_figure(mean.to_dict(), '.2f')} (n = {len(done)})"])
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="'name=LoRA folder'")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--only", type=int, help="attack only the model with this index (one per process)")
    parser.add_argument("--output-dir", default="attack-runs-output")
    parser.add_argument("--report", default="docs/robustness/attack_runs.md")
    args = parser.parse_args(argv)
    models = dict(m.split("=", 1) for m in args.model)
    for name, lora in models.items():
        if not (Path(lora) / "pytorch_lora_weights.safetensors").is_file():
            parser.error(f"--model {name}: no pytorch_lora_weights.safetensors in {lora}")
    out = Path(args.output_dir)
    if args.only is not None:
        name, lora = list(models.items())[args.only]
        for seed in args.seeds:
            for method in METHODS:
                r = attack_once(lora, method, seed, run_dir(out, name, seed))
                print(f"{name} seed {seed} {method}: DSR {r['defence_success_rate']:.2f} (n={r['num_images']})",
                      flush=True)
        return 0
    from duo_unlearn.evaluation.report import markdown_table
    from duo_unlearn.io import atomic_write_text

    rows = summary_rows(models, args.seeds, out)
    lines = ["# White-box DSR over independent attack runs", "",
             "Made by `python benchmarks/attack_runs.py` (its docstring has the command). Each run is `duo attack` "
             f"with its own ShapeWorld task and seed ({SETTINGS['num_prompts']} prompts x "
             f"{SETTINGS['images_per_prompt']} images, {SETTINGS['budget']} steps, DDIM "
             f"{SETTINGS['num_inference_steps']} steps, guidance {SETTINGS['guidance_scale']}); a run's interval is "
             "Wilson over its images, the mean's a t interval over the runs, never narrower than the pooled "
             "Wilson interval.", "", "Models: " + "; ".join(f"{n}: `{p}`" for n, p in models.items()), "",
             *markdown_table(rows), ""]
    atomic_write_text(Path(args.report), "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
