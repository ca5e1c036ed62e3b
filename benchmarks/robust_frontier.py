"""What was tried to make robust DUO hold against the white-box attacks (README, "Robustness study").

    OMP_NUM_THREADS=1 duo eval --config configs/eval_robustness.yaml --run-seeds 1
    OMP_NUM_THREADS=1 duo eval --config configs/eval_robustness_<variant>.yaml --run-seeds 1   # each variant
    python benchmarks/robust_frontier.py [--seed 1]   # seed 1: frontier.md; seed N: frontier_seed-N.md

Each variant config trains robust DUO on the study's pairs of one seed (the same pairs, prompts and
attack seeds: a paired comparison) with one setting changed, and measures it under the two attacks
the study's robust DUO fails (and, where the config asks, the conditioning-space probe). This
script puts the robust model of every finished config in one table (rates with their n and Wilson
interval, preservation with its bootstrap interval), writes it to docs/robustness/frontier.md and
copies each config's results to docs/robustness/variants/.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

VARIANTS = {
    "configs/eval_robustness.yaml": "the study's robust DUO (4 adversary steps, adversarial β 500, weight 2)",
    "configs/eval_robustness_strong_adversary.yaml": "16 adversary steps per training step",
    "configs/eval_robustness_prompt_adversary.yaml": "adversaries start at their pair's unsafe prompt",
    "configs/eval_robustness_mid_adversarial_beta.yaml": "adversarial β 150, weight 6.67",
    "configs/eval_robustness_low_adversarial_beta.yaml": "adversarial β 50, weight 20",
    "configs/eval_robustness_mid_adversarial_beta_high_lambda.yaml": "adversarial β 150, weight 6.67, λ 2e7 (4×)",
    "configs/eval_robustness_mid_adversarial_beta_high_lambda_400_steps.yaml":
        "adversarial β 150, weight 6.67, λ 2e7 (4×), 400 training steps",
    "configs/eval_robustness_negative_guidance.yaml": "negative guidance (ESD's target, η 1) under the adversary, "
                                                      "reversing the adversary's own pull, weight 500, instead of "
                                                      "the preference",
    "configs/eval_robustness_negative_guidance_prompt.yaml": "negative guidance reversing the pair's unsafe "
                                                             "prompt's pull (AdvUnlearn's target), weight 100",
    "configs/eval_robustness_token_adversary.yaml": "the study's robust DUO with token-space adversaries "
                                                    "(4 learned input tokens per pair, through the text encoder)",
    "configs/eval_robustness_token_adversary_400_steps.yaml": "adversarial β 150, weight 6.67, λ 2e7 (4×), 400 "
                                                              "training steps, token-space adversaries",
    "configs/eval_robustness_twin_term.yaml": "the study's robust DUO plus the twin term under each adversary "
                                              "(weight 10)",
    "configs/eval_robustness_feed_forward_lora.yaml": "the study's robust DUO with its LoRA on the feed-forward "
                                                      "layers too",
    "configs/eval_robustness_shared_adversary.yaml": "the study's robust DUO plus one adversary shared by all "
                                                     "pairs (the probe's and Concept Inversion's shape)",
    "configs/eval_robustness_retain_400_steps.yaml": "adversarial β 150, weight 6.67, λ 2e7 (4×), 400 training "
                                                     "steps, retain term on the preserve prompts' images, weight 1e5",
    "configs/eval_robustness_retain_1e4_400_steps.yaml": "the same, retain weight 1e4",
    "configs/eval_robustness_retain_1e4_400_steps_full_suite.yaml": "the same (retain 1e4), the study's whole "
                                                                    "attack suite",
    "configs/eval_robustness_retain_low_adversarial_beta_400_steps.yaml": "adversarial β 50, weight 20, λ 2e7 (4×), "
                                                                          "400 training steps, retain weight 1e4",
    "configs/eval_robustness_retain.yaml": "the study's robust DUO plus the retain term at 1e4, the study's whole "
                                           "attack suite",
    "configs/eval_robustness_token_adversary_full_suite.yaml": "token-space adversaries (as above), the study's "
                                                               "whole attack suite",
    "configs/eval_robustness_retain_3e3.yaml": "the study's robust DUO (the demo's recipe) plus the retain term at "
                                               "3e3",
    "configs/eval_robustness_retain_1e3.yaml": "the same, retain weight 1e3",
    "configs/eval_robustness_retain_3e4_low_adversarial_beta_400_steps.yaml": "adversarial β 50, weight 20, λ 2e7 "
                                                                              "(4×), 400 training steps, retain "
                                                                              "weight 3e4",
    "configs/eval_robustness_retain_1e4_800_steps.yaml": "the retain recipe (the demo's default since 2026-11-27: "
                                                         "adversarial β 150, weight 6.67, λ 2e7, retain 1e4) at 800 "
                                                         "training steps",
    "configs/eval_robustness_retain_3e4_low_adversarial_beta_800_steps.yaml": "adversarial β 50, weight 20, λ 2e7, "
                                                                              "retain weight 3e4, 800 training steps",
    "configs/eval_robustness_inversion_pool.yaml": "the retain recipe plus the inversion pool: every 25 steps a "
                                                   "fresh 200-step Concept Inversion against the current model, the "
                                                   "preference also under the last 8 inversions' tokens",
    "configs/eval_robustness_inversion_pool_deep.yaml": "the same, every 50 steps a 500-step inversion",
    "configs/eval_robustness_inversion_pool_deep_full_suite.yaml": "the same (500-step pool), the study's whole "
                                                                   "attack suite",
    "configs/eval_robustness_inversion_pool_adaptive.yaml": "the retain recipe plus the pool with the adaptive "
                                                            "inversion's recipe: every 100 steps a fresh 1000-step "
                                                            "inversion of 4 tokens from the concept's words with the "
                                                            "twin contrast, the last 4 kept",
    "configs/eval_robustness_inversion_pool_adaptive_full_suite.yaml": "the retain recipe plus the pool with the "
                                                                       "adaptive inversion's recipe (every 100 "
                                                                       "steps a 1000-step inversion of 4 tokens "
                                                                       "from the concept's words with the twin "
                                                                       "contrast, the last 4 kept), the study's "
                                                                       "whole attack suite",
    "configs/eval_robustness_inversion_pool_adaptive_192.yaml": "the same (adaptive-recipe pool) on 192 candidate "
                                                                "pairs instead of 64 (about 3x the kept pairs)",
    "configs/eval_robustness_inversion_pool_adaptive_192_full_suite.yaml": "the same (adaptive-recipe pool, 192 "
                                                                           "candidate pairs), the study's whole "
                                                                           "attack suite",
    "configs/eval_robustness_inversion_pool_mixed.yaml": "the pool alternating the two recipes (every 100 steps a "
                                                         "1000-step adaptive inversion or a 500-step Concept "
                                                         "Inversion, the last 4 kept), 192 candidate pairs",
}
STUDY_CONFIG = "configs/eval_robustness.yaml"
COLUMNS = [("concept_rate/unsafe", "X, unsafe prompts", ".2f"), ("close_rate/close", "plus rate", ".2f"),
           ("prior_preservation", "preservation", ".3f"), ("close_concept_preservation", "close pres.", ".3f"),
           ("dsr/paraphrase", "DSR paraphrase", ".2f"), ("dsr/concept-inversion", "DSR Concept Inversion", ".2f"),
           ("dsr/adaptive-inversion", "DSR adaptive inversion", ".2f"),
           ("dsr/embedding-probe", "DSR probe (diagnostic; not every variant ran it)", ".2f"),
           ("dsr/ring-a-bell", "DSR Ring-A-Bell (where run)", ".2f"), ("dsr/sneakyprompt", "DSR SneakyPrompt", ".2f"),
           ("dsr/unlearndiffatk", "DSR UnlearnDiffAtk", ".2f")]
MODEL = "duo-b500-robust"
CURVES = [("concept-inversion", "Concept Inversion DSR at 50 / 200 / 500 / 1000 steps (n = 48 each)"),
          ("adaptive-inversion", "adaptive inversion DSR at 50 / 200 / 500 / 1000 steps (n = 48 each)")]


def curve_cell(points: list[dict] | None) -> str:
    """A budget curve as DSRs, cheapest budget first ('n/a' where the run kept none)."""
    if not points:
        return "n/a"
    return " / ".join(f"{1 - p['successes'] / p['n']:.2f}" for p in sorted(points, key=lambda p: p["budget"]))


def frontier_rows(seed: int, out: Path = Path("docs/robustness")) -> tuple[list[list[str]], dict[str, Path]]:
    """The table's rows (header first) and, per config, its seed's results file: the run's own, or
    where the run is not on this machine, the copy an earlier run of this script kept in ``out``."""
    from duo_unlearn.configs import load_config
    from duo_unlearn.evaluation.config import EvalConfig
    from duo_unlearn.evaluation.report import format_figure
    from duo_unlearn.evaluation.study import study_protocol

    rows = [["robust DUO variant (config)", "n attack images"] + [label for _, label, _ in COLUMNS]
            + [label for _, label in CURVES]]
    found = {}
    for config, label in VARIANTS.items():
        cfg = load_config(EvalConfig, config)
        path = Path(cfg.output_dir) / f"seed-{seed}" / "results.json"
        kept = out / "variants" / f"{Path(config).stem}.seed-{seed}.json"
        if path.is_file() and json.loads(path.read_text()).get("protocol_hash") != study_protocol(cfg).digest():
            path = kept  # another config sharing the output folder measured it last (e.g. a full-suite twin)
        if not path.is_file() and kept.is_file():
            path = kept
        study = out / "seeds" / f"seed-{seed}.json"  # the committed robustness study, for its own config
        if not path.is_file() and config == STUDY_CONFIG and study.is_file():
            path = study
        if not path.is_file() or MODEL not in json.loads(path.read_text())["models"]:
            print(f"{config}: no {MODEL} in {path} yet; run `duo eval --config {config} --run-seeds {seed}`")
            continue
        model = json.loads(path.read_text())["models"][MODEL]
        figures, curves = model["figures"], model.get("curves", {})
        n = figures.get("dsr/concept-inversion", {}).get("n", "n/a")
        rows.append([f"{label} (`{Path(config).name}`)", str(n)]
                    + [format_figure(figures.get(k), f) for k, _, f in COLUMNS]
                    + [curve_cell(curves.get(attack)) for attack, _ in CURVES])
        found[config] = path
    return rows, found


def main() -> None:
    from duo_unlearn.evaluation.report import markdown_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="docs/robustness")
    args = parser.parse_args()
    out = Path(args.out)
    rows, found = frontier_rows(args.seed, out)
    (out / "variants").mkdir(parents=True, exist_ok=True)
    for config, path in found.items():
        kept = out / "variants" / f"{Path(config).stem}.seed-{args.seed}.json"
        if out.resolve() not in path.resolve().parents:  # a run's own results: keep a copy beside the table
            shutil.copyfile(path, kept)
    text = "\n".join([f"# Robust DUO against the white-box attacks: what was tried (seed {args.seed})", "",
                      f"Only the variants measured on this seed are listed (`--run-seeds {args.seed}`).", "",
                      "Each row trains robust DUO on the same pairs with one change; the same prompts, seeds and "
                      "attack seeds measure it. Rates: value [95 % Wilson interval]; preservation: bootstrap "
                      "over 64 prompts. Made by `python benchmarks/robust_frontier.py`. Each inversion cell is "
                      "one attack run (its images share one learned embedding), so its interval says nothing "
                      "of another run: `benchmarks/attack_runs.py` measures that (attack_runs.md).", "",
                      "Every row but the 800-step and inversion-pool ones was trained before 2026-11-27's "
                      "trainer change (row "
                      "groups of weight 0 left out of the batch): the same config trains other bits today, "
                      "another instance of the same recipe. `docs/robustness/retain-recipe/` is the retain "
                      "recipe re-run after the change; README compares the two instances.", "",
                      *markdown_table(rows), ""])
    (out / ("frontier.md" if args.seed == 1 else f"frontier_seed-{args.seed}.md")).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
