"""Do the study's preserve prompts leak into its preservation figures?

    python benchmarks/preserve_overlap.py docs/robustness/seeds/seed-*.json docs/robustness/variants/*.json

UCE is given each seed's preserve prompts (``duo_unlearn.demo.preserve_prompts``) and the retain
term holds the base model's images of them. Their scenes are seeded apart from the metric groups',
but short captions recur by chance: on seeds 1 and 2 a few wordings are also metric prompts (with
other image seeds). For every model of every results file this prints the preservation over all
64 prompts of a group and over those whose wording is not a preserve prompt, each with its
bootstrap interval, so the leak can be read off.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from duo_unlearn.demo import preserve_prompts
from duo_unlearn.stats import bootstrap_mean

GROUPS = {"prior_preservation": "safe", "close_concept_preservation": "close"}


def overlap_rows(results: dict) -> list[dict]:
    """One row per model and preservation figure with a preserve prompt among its metric prompts."""
    held = set(preserve_prompts(results["seed"]))
    rows = []
    for name, model in results["models"].items():
        if name == "base":  # the reference itself: 1 whatever the prompts
            continue
        for key, group in GROUPS.items():
            values = model.get("samples", {}).get(key)
            prompts = results["prompts"][group]
            shared = [i for i, p in enumerate(prompts) if p in held]
            if not values or not shared:
                continue
            rest = [v for i, v in enumerate(values) if i not in shared]
            rows.append({"seed": results["seed"], "model": name, "figure": key,
                         "shared_prompts": [prompts[i] for i in shared],
                         "all": bootstrap_mean(values), "without_shared": bootstrap_mean(rest),
                         "n": len(values), "n_without": len(rest)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.json files of `duo eval` seeds")
    args = parser.parse_args()
    for path in args.results:
        for r in overlap_rows(json.loads(path.read_text())):
            a, w = r["all"], r["without_shared"]
            print(f"{path.name} seed {r['seed']} {r['model']} {r['figure']}: "
                  f"{a.value:.3f} [{a.low:.3f}, {a.high:.3f}] (n = {r['n']}) -> without {len(r['shared_prompts'])} "
                  f"shared wording(s) {w.value:.3f} [{w.low:.3f}, {w.high:.3f}] (n = {r['n_without']}); "
                  f"shared: {', '.join(r['shared_prompts'])}")


if __name__ == "__main__":
    main()
