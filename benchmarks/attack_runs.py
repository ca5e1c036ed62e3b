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

Each run's count (images without the X, of how many) is also kept in ``--kept`` (committed,
docs/robustness/attack_runs_kept.json), so a table can include models whose runs are not on this
machine. ``--study "NAME=results.json"`` adds the model's cell of the study (its seed's
results.json, or the copy robust_frontier.py keeps) as one more instance, and ``--paired-against
NAME`` adds, for every other model, the differences from NAME on the instances both have, with a
t interval over them (the instances are shared, so the pairing removes their difficulty):

    python benchmarks/attack_runs.py --model "shared adversary=<its LoRA folder>" \
        --model "the study's robust DUO=eval-robust-output/seed-1/models/duo-b500-robust" \
        --study "the study's robust DUO=docs/robustness/variants/eval_robustness.seed-1.json" \
        --study "shared adversary=docs/robustness/variants/eval_robustness_shared_adversary.seed-1.json" \
        --seeds 1 2 3 --paired-against "the study's robust DUO" --report docs/robustness/attack_runs_variants.md
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


def run_counts(models: dict[str, str], seeds: list[int], out: Path, kept: dict) -> dict:
    """{model: {instance: {method: (defended, n)}}} of every run on disk (recorded into ``kept``)
    or, for runs not on this machine, as ``kept`` recorded them."""
    counts: dict = {}
    for name in models:
        for seed in seeds:
            for method in METHODS:
                path = run_dir(out, name, seed) / method / "result.json"
                key = f"run {seed}"
                if path.is_file():
                    r = json.loads(path.read_text())
                    found = [round(r["defence_success_rate"] * r["num_images"]), r["num_images"]]
                    kept.setdefault(name, {}).setdefault(key, {})[method] = found
                found = kept.get(name, {}).get(key, {}).get(method)
                if found is not None:
                    counts.setdefault(name, {}).setdefault(key, {})[method] = tuple(found)
    return counts


def study_counts(path: Path) -> dict:
    """{method: (defended, n)} of the robust model's attack cells in a study results.json."""
    figures = json.loads(path.read_text())["models"]["duo-b500-robust"]["figures"]
    return {m: (round(figures[f"dsr/{m}"]["value"] * figures[f"dsr/{m}"]["n"]), figures[f"dsr/{m}"]["n"])
            for m in METHODS if f"dsr/{m}" in figures}


def _instances(seeds: list[int], with_study: bool) -> list[str]:
    return (["study's instance"] if with_study else []) + [f"run {s}" for s in seeds]


def summary_rows(models: dict[str, str], seeds: list[int], out: Path, kept: dict | None = None,
                 studies: dict[str, dict] | None = None) -> list[list[str]]:
    """One row per model and attack: each instance's DSR and their mean with a t interval."""
    from duo_unlearn.evaluation.report import format_figure
    from duo_unlearn.stats import across_seeds, pooled_rate, wilson

    studies = studies or {}
    counts = run_counts(models, seeds, out, kept if kept is not None else {})
    instances = _instances(seeds, bool(studies))
    rows = [["model", "attack"] + instances + ["mean over instances [95 % t interval]"]]
    for name in models:
        for method in METHODS:
            cells = [studies.get(name, {}).get(method)] if studies else []
            cells += [counts.get(name, {}).get(f"run {s}", {}).get(method) for s in seeds]
            ests = [None if c is None else wilson(*c) for c in cells]
            done = [e for e in ests if e is not None]
            if not done:
                continue
            mean = across_seeds([e.value for e in done], at_least=pooled_rate(done)) if len(done) > 1 else done[0]
            rows.append([name, method] + [format_figure(e and e.to_dict(), ".2f") for e in ests]
                        + [f"{format_figure(mean.to_dict(), '.2f')} (n = {len(done)})"])
    return rows


def paired_rows(models: dict[str, str], seeds: list[int], out: Path, kept: dict, studies: dict[str, dict],
                reference: str) -> list[list[str]]:
    """Per model and attack: its DSR minus ``reference``'s on each instance both have, and the
    mean difference with a t interval over those instances (not clipped: it may be negative)."""
    from duo_unlearn.stats import seed_mean

    counts = run_counts(models, seeds, out, kept)
    instances = _instances(seeds, bool(studies))
    rows = [["model", "attack", f"difference from {reference} per instance", "mean [95 % t interval]"]]

    def cell(name, method, instance):
        c = studies.get(name, {}).get(method) if instance == "study's instance" else \
            counts.get(name, {}).get(instance, {}).get(method)
        return None if c is None else c[0] / c[1]

    for name in models:
        if name == reference:
            continue
        for method in METHODS:
            pairs = [(cell(name, method, i), cell(reference, method, i)) for i in instances]
            diffs = [a - b for a, b in pairs if a is not None and b is not None]
            if len(diffs) < 2:
                continue
            e = seed_mean(diffs)
            rows.append([name, method, " / ".join(f"{d:+.2f}" for d in diffs),
                         f"{e.value:+.2f} [{e.low:+.2f}, {e.high:+.2f}] (n = {len(diffs)})"])
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="'name=LoRA folder'")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--only", type=int, help="attack only the model with this index (one per process)")
    parser.add_argument("--output-dir", default="attack-runs-output")
    parser.add_argument("--report", default="docs/robustness/attack_runs.md")
    parser.add_argument("--kept", default="docs/robustness/attack_runs_kept.json",
                        help="every run's count, kept so a table can include runs not on this machine")
    parser.add_argument("--study", action="append", default=[], help="'name=study results.json': one more instance")
    parser.add_argument("--paired-against", help="a --model name: every other model's differences from it")
    args = parser.parse_args(argv)
    models = dict(m.split("=", 1) for m in args.model)
    kept_path = Path(args.kept)
    kept = json.loads(kept_path.read_text()) if kept_path.is_file() else {}
    studies = {}
    for item in args.study:
        name, path = item.split("=", 1)
        if name not in models or not Path(path).is_file():
            parser.error(f"--study {item}: needs a --model named {name!r} and an existing results.json")
        studies[name] = study_counts(Path(path))
    if args.paired_against is not None and args.paired_against not in models:
        parser.error(f"--paired-against {args.paired_against!r} is not a --model name")
    for name, lora in models.items():
        if not (Path(lora) / "pytorch_lora_weights.safetensors").is_file() and name not in kept:
            parser.error(f"--model {name}: no pytorch_lora_weights.safetensors in {lora}, and no kept runs in "
                         f"{kept_path}")
    out = Path(args.output_dir)
    if args.only is not None:
        name, lora = list(models.items())[args.only]
        if not (Path(lora) / "pytorch_lora_weights.safetensors").is_file():
            parser.error(f"--only {args.only}: no pytorch_lora_weights.safetensors in {lora} to attack")
        for seed in args.seeds:
            for method in METHODS:
                r = attack_once(lora, method, seed, run_dir(out, name, seed))
                print(f"{name} seed {seed} {method}: DSR {r['defence_success_rate']:.2f} (n={r['num_images']})",
                      flush=True)
        return 0
    from duo_unlearn.evaluation.report import markdown_table
    from duo_unlearn.io import atomic_write_text

    rows = summary_rows(models, args.seeds, out, kept, studies)
    lines = ["# White-box DSR over independent attack runs", "",
             "Made by `python benchmarks/attack_runs.py` (its docstring has the command). Each run is `duo attack` "
             f"with its own ShapeWorld task and seed ({SETTINGS['num_prompts']} prompts x "
             f"{SETTINGS['images_per_prompt']} images, {SETTINGS['budget']} steps, DDIM "
             f"{SETTINGS['num_inference_steps']} steps, guidance {SETTINGS['guidance_scale']}); the study's instance, "
             "where given, is the model's cell in the study (the same settings, the study's task). An instance's "
             "interval is Wilson over its images, the mean's a t interval over the instances, never narrower than "
             "the pooled Wilson interval.", "", "Models: " + "; ".join(f"{n}: `{p}`" for n, p in models.items()), "",
             *markdown_table(rows), ""]
    if args.paired_against is not None:
        lines += [f"Paired against {args.paired_against} (differences in DSR on the same instances; t interval "
                  "over the instances):", "",
                  *markdown_table(paired_rows(models, args.seeds, out, kept, studies, args.paired_against)), ""]
    atomic_write_text(Path(args.report), "\n".join(lines))
    atomic_write_text(kept_path, json.dumps(kept, indent=1, sort_keys=True) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
