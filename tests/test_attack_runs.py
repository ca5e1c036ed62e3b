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
