"""docs/notebook_example.py runs top to bottom on ShapeWorld and leaves what it says it makes."""

import json
import runpy
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "notebook_example.py"


def test_notebook_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(EXAMPLE), run_name="__main__")
    work = tmp_path / "duo-notebook"
    assert namespace["pairs"]["kept"] >= 1
    for name in ("pytorch_lora_weights.safetensors", "adapter_config.json", "README.md"):
        assert (work / "duo" / name).is_file()
    assert [json.loads(line)["step"] for line in (work / "duo" / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    result = json.loads((work / "attack" / "paraphrase" / "result.json").read_text())
    assert result["num_images"] == 2 and result["settings"]["lora"] == str(Path("duo-notebook") / "duo")
    assert (work / "green_triangle.png").is_file()
