"""Budget curves in the report: seeds pooled by summing counts, as the final figures are."""

import pytest

from duo_unlearn.evaluation.report import curve_table, pool_curves
from duo_unlearn.stats import wilson


def _seed(points):
    return {"models": {"duo": {"curves": {"concept-inversion": points}}, "base": {}}}


def test_curves_pool_counts_over_seeds():
    seeds = [_seed([{"budget": 50, "n": 48, "successes": 0}, {"budget": 1000, "n": 48, "successes": 12}]),
             _seed([{"budget": 50, "n": 48, "successes": 6}, {"budget": 1000, "n": 48, "successes": 30}])]
    pooled = pool_curves(seeds)
    points = pooled["duo"]["concept-inversion"]
    assert [p["budget"] for p in points] == [50, 1000]
    # DSR = images without the concept: (48 + 42) / 96 at 50 steps, (36 + 18) / 96 at 1000
    assert points[0]["dsr"]["value"] == pytest.approx(90 / 96)
    assert points[1]["dsr"]["value"] == pytest.approx(54 / 96)
    assert points[1]["dsr"]["low"] == pytest.approx(wilson(54, 96).low)
    assert "base" not in pooled
    rows = curve_table({"curves": pooled})
    assert rows[1][:2] == ["duo", "concept-inversion"] and "1000: 0.56" in rows[1][2] and "(n=96)" in rows[1][2]


def test_targets_table_names_what_each_model_misses():
    from duo_unlearn.evaluation.report import targets_table

    def est(k, n):
        return wilson(k, n).to_dict()

    pooled = {"attacks": ["paraphrase", "concept-inversion", "embedding-probe"], "models": {
        "base": {"figures": {"asr/concept-inversion": est(140, 144), "asr/paraphrase": est(10, 144)}},
        "good": {"figures": {"dsr/paraphrase": est(144, 144), "dsr/concept-inversion": est(140, 144),
                             "dsr/embedding-probe": est(0, 144), "prior_preservation": {"value": 0.96},
                             "close_concept_preservation": {"value": 0.95}}},
        "weak": {"figures": {"dsr/paraphrase": est(144, 144), "dsr/concept-inversion": est(125, 144),
                             "dsr/embedding-probe": est(144, 144), "prior_preservation": {"value": 0.94},
                             "close_concept_preservation": {"value": 0.95}}},
    }}
    # "good"'s two seeds: 72 / 72 and 68 / 72 under the inversion (pooled 140 / 144 = 0.97, Wilson low 0.93);
    # across the seeds: mean 0.972, sd 0.039, t(0.975, 1) = 12.71, so the t interval's low is ~0.62
    pooled["per_seed"] = {"0": {"good": {"dsr/paraphrase": est(72, 72), "dsr/concept-inversion": est(72, 72)}},
                          "1": {"good": {"dsr/paraphrase": est(72, 72), "dsr/concept-inversion": est(68, 72)}}}
    rows = {r[0]: r for r in targets_table(pooled)[1:]}
    # the probe is a diagnostic: "good" meets the DSR target although the probe beats it...
    assert rows["good"][1:5] == ["yes", "no: concept-inversion", "yes", "yes"]
    # ...by the pooled interval; the across-seed interval is too wide to say so
    # 125 / 144 = 0.87 < 0.9; the paraphrase control against the base model is not an attack to strengthen
    assert rows["weak"][1:4] == ["no: concept-inversion", "n/a (one seed)", "no"] and rows["weak"][5] == "none"


def test_pool_puts_base_first_whatever_order_a_resumed_seed_wrote():
    from duo_unlearn.evaluation.report import pool

    def row(k):
        return {"method": "duo", "figures": {"concept_rate/unsafe": wilson(k, 64).to_dict()}}

    fresh = {"models": {"base": row(60), "duo": row(2), "esd": row(5)}}
    resumed = {"models": {"duo": row(3), "esd": row(4), "base": row(61)}}
    pooled = pool([resumed, fresh])
    assert list(pooled) == ["base", "duo", "esd"]
    curve = [{"budget": 50, "n": 48, "successes": 1}]
    for r in (fresh, resumed):
        for m in r["models"].values():
            m["curves"] = {"concept-inversion": curve}
    assert list(pool_curves([resumed, fresh])) == ["base", "duo", "esd"]
    assert pooled["base"]["figures"]["concept_rate/unsafe"]["value"] == pytest.approx(121 / 128)
