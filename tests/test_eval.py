"""`duo eval` end to end on ShapeWorld with minimal settings: models, attacks, report files."""

import json


def test_eval_writes_a_complete_report(tmp_path):
    from duo_unlearn.evaluate import EvalConfig, run_eval

    cfg = EvalConfig(output_dir=str(tmp_path), betas=(500.0,), ablation_beta=None, baselines=("uce", "esd"),
                     attacks=("paraphrase", "ring-a-bell"), num_pairs=6, train_steps=4, esd_steps=2,
                     num_attack_prompts=2, images_per_prompt=1, attack_budget=2, num_eval_prompts=4)
    results = run_eval(cfg)
    assert set(results) == {"base", "duo-b500", "uce", "esd"}
    report = tmp_path / "report"
    for name in ("results.json", "index.md", "index.html", "pareto_paraphrase.png", "pareto_ring-a-bell.png"):
        assert (report / name).is_file(), name
    saved = json.loads((report / "results.json").read_text())["results"]
    for row in saved.values():
        assert 0 <= row["dsr/paraphrase"] <= 1 and 0 <= row["prior_preservation"] <= 1
    assert saved["base"]["prior_preservation"] == 1.0  # the base model against itself
    assert "success against the base model" in (report / "index.md").read_text()
    md = (report / "index.md").read_text()
    for linked in ("grids/duo-b500_safe.png", "attacks/uce_ring-a-bell.png"):
        assert linked in md and (report / linked).is_file(), linked
    assert "control" in md  # the paraphrase row is marked as a control, not an attack

    (report / "index.md").unlink()
    (report / "index.html").unlink()
    rebuilt = run_eval(EvalConfig(output_dir=str(tmp_path), report_only=True))
    assert rebuilt == saved and (report / "index.html").is_file()
    assert (report / "index.md").read_text().split("Settings:")[0] == md.split("Settings:")[0]


def test_report_only_without_results_names_the_missing_file(tmp_path):
    import pytest

    from duo_unlearn.evaluate import EvalConfig, run_eval

    with pytest.raises(FileNotFoundError, match="results.json"):
        run_eval(EvalConfig(output_dir=str(tmp_path), report_only=True))
