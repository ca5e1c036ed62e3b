"""`duo eval`, laid out like the trainer: the settings (``config``), a pinned protocol
(``protocol``), the figures with their intervals (``metrics``, shared with `duo demo`), the
report (``report``), and two recipes that write the same results schema: the ShapeWorld study
(``study``) and a real model (``real_model``). ``run_eval`` picks the recipe.

Importing this package is cheap (no torch): the recipes are imported when they run."""

from __future__ import annotations

from duo_unlearn.configs import SHAPEWORLD
from duo_unlearn.evaluation.config import ATTACK_NAMES, EvalConfig

__all__ = ["ATTACK_NAMES", "EvalConfig", "run_eval"]


def run_eval(cfg: EvalConfig) -> dict:
    """Run (or, with ``report_only``, only re-report) the evaluation; returns the pooled results."""
    from duo_unlearn.evaluation.report import rebuild_report
    from duo_unlearn.preflight import check_eval
    from duo_unlearn.threads import pin_threads

    check_eval(cfg)  # every input, before any model loads

    if cfg.report_only:
        return rebuild_report(cfg.output_dir, cfg)
    pin_threads(cfg.num_threads)
    if cfg.pretrained_model != SHAPEWORLD:
        from duo_unlearn.evaluation.real_model import run_model_eval

        return run_model_eval(cfg)
    from duo_unlearn.evaluation.study import run_study

    return run_study(cfg)
