"""benchmarks/attack_runs.py: each run's DSR, and the mean over runs with a t interval (n = runs)."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "attack_runs.py"


def _module():
    spec = importlib.util.spec_from_file_location("attack_runs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_table_gives_each_run_and_their_mean_with_a_t_interval(tmp_path):
    runs = _module()
    for seed, held in ((1, 24), (2, 30), (3, 36)):  # DSR 0.500, 0.625, 0.750 of 48 images
        folder = runs.run_dir(tmp_path, "robust", seed) / "concept-inversion"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps({"defence_success_rate": held / 48, "num_images": 48}))
    rows = runs.summary_rows({"robust": "unused"}, [1, 2, 3, 4], tmp_path)
    assert len(rows) == 2  # the adaptive inversion has no runs: no row
    row = rows[1]
    assert row[:2] == ["robust", "concept-inversion"] and row[2].startswith("0.50 [0.36, 0.64]")
    assert row[5] == "n/a"  # run 4 missing, in its own column
    # mean 0.625, sd 0.125, t(0.975, 2) = 4.3027: half-width 4.3027 * 0.125 / sqrt(3) = 0.3105
    assert row[6] == "0.62 [0.31, 0.94] (n = 3)"


def test_a_model_folder_without_weights_is_refused_before_any_attack(tmp_path):
    with pytest.raises(SystemExit):
        _module().main(["--model", f"m={tmp_path}", "--output-dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def _write_run(runs, out, name, seed, method, defended, n=48):
    folder = runs.run_dir(out, name, seed) / method
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"defence_success_rate": defended / n, "num_images": n}))


def test_the_study_instance_and_kept_runs_join_the_table_and_the_pairing(tmp_path):
    """A model's study cell is one more instance; runs not on this machine come from the kept
    counts; the paired table gives each instance's difference and their mean with a t interval."""
    runs = _module()
    out = tmp_path / "runs"
    for seed, defended in ((1, 12), (2, 24)):  # the variant's runs, on disk
        _write_run(runs, out, "variant", seed, "concept-inversion", defended)
    kept = {"reference": {"run 1": {"concept-inversion": [6, 48]}, "run 2": {"concept-inversion": [12, 48]}}}
    studies = {"variant": {"concept-inversion": (36, 48)}, "reference": {"concept-inversion": (24, 48)}}
    models = {"variant": "unused", "reference": "unused"}
    rows = runs.summary_rows(models, [1, 2], out, kept, studies)
    assert rows[0][2:5] == ["study's instance", "run 1", "run 2"]
    assert [r[:2] for r in rows[1:]] == [["variant", "concept-inversion"], ["reference", "concept-inversion"]]
    assert rows[1][2].startswith("0.75 ") and rows[1][3].startswith("0.25 ") and rows[2][3].startswith("0.12 ")
    assert rows[1][5].endswith("(n = 3)") and rows[1][5].startswith("0.50 ")
    # the runs found on disk were recorded for the next machine
    assert kept["variant"] == {"run 1": {"concept-inversion": [12, 48]}, "run 2": {"concept-inversion": [24, 48]}}
    paired = runs.paired_rows(models, [1, 2], out, kept, studies, "reference")
    assert len(paired) == 2
    # differences 0.75 − 0.5, 0.25 − 0.125, 0.5 − 0.25: mean 0.2083, sd 0.0722, t(0.975, 2) = 4.3027
    assert paired[1][:3] == ["variant", "concept-inversion", "+0.25 / +0.12 / +0.25"]
    assert paired[1][3] == "+0.21 [+0.03, +0.39] (n = 3)"


def test_a_kept_model_needs_no_weights_but_an_unknown_study_model_is_refused(tmp_path):
    runs = _module()
    kept = tmp_path / "kept.json"
    kept.write_text(json.dumps({"old": {"run 1": {"concept-inversion": [24, 48]}}}))
    report = tmp_path / "report.md"
    assert runs.main(["--model", f"old={tmp_path / 'gone'}", "--seeds", "1", "--kept", str(kept),
                      "--report", str(report), "--output-dir", str(tmp_path / "out")]) == 0
    assert "| old | concept-inversion | 0.50 [0.36, 0.64] |" in report.read_text()
    with pytest.raises(SystemExit):
        runs.main(["--model", f"old={tmp_path / 'gone'}", "--study", f"other={kept}", "--kept", str(kept),
                   "--report", str(report)])


def test_preserve_overlap_drops_exactly_the_metric_prompts_worded_as_preserve_prompts():
    """benchmarks/preserve_overlap.py: preservation without the metric prompts that share a wording
    with the seed's preserve prompts (seed 2: "a green triangle" is both)."""
    from duo_unlearn.demo import preserve_prompts

    spec = importlib.util.spec_from_file_location("preserve_overlap", SCRIPT.parent / "preserve_overlap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shared = preserve_prompts(2)[20]
    safe = ["a red circle", shared, "a blue square", "a grey star"]
    assert not (set(safe) - {shared}) & set(preserve_prompts(2))
    results = {"seed": 2, "prompts": {"safe": safe, "close": ["a red circle with a plus sign"]},
               "models": {"base": {"samples": {"prior_preservation": [1.0] * 4}},
                          "uce": {"samples": {"prior_preservation": [0.9, 0.1, 0.8, 0.7],
                                              "close_concept_preservation": [0.5]}}}}
    (row,) = module.overlap_rows(results)  # the base model and the close group (no shared wording) give none
    assert (row["model"], row["figure"], row["shared_prompts"]) == ("uce", "prior_preservation", [shared])
    assert row["all"].value == pytest.approx(0.625) and row["without_shared"].value == pytest.approx(0.8)
    assert (row["n"], row["n_without"]) == (4, 3)
