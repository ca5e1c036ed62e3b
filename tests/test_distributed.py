"""`duo pairs` and `duo attack` under `accelerate launch` with 2 CPU processes write exactly
the files one process writes: work is shared in whole batches and the main process writes."""

import types

import pytest

from duo_unlearn import distributed
from duo_unlearn.cli import main


@pytest.mark.parametrize("size", [1, 2, 3])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 7])
def test_shards_cover_the_items_once_in_order(monkeypatch, n, size):
    items = list(range(n))
    shards = []
    for rank in range(size):
        monkeypatch.setattr(distributed, "process_state",
                            lambda rank=rank: types.SimpleNamespace(num_processes=size, process_index=rank))
        shards.append(distributed.shard(items))
    assert sum(shards, []) == items
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_one_process_keeps_everything():
    assert distributed.shard(["a", "b"]) == ["a", "b"]
    assert distributed.gather_objects(["a", "b"]) == ["a", "b"]
    assert not distributed.generation_is_split()
    with distributed.split_generation():
        assert not distributed.generation_is_split()  # nothing to split with


def _files(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_and_two_processes(tmp_path, monkeypatch, launch_two, *args: str) -> tuple[dict, dict]:
    """The same command with the same relative output folder, in one process here and in two
    launched ones; returns each run's files."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    monkeypatch.chdir(tmp_path / "one")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each launched process (OMP_NUM_THREADS=1): another thread count rounds differently
    try:
        assert main([*args, "--output-dir", "out"]) == 0
    finally:
        torch.set_num_threads(threads)
    launch_two(*args, "--output-dir", "out", cwd=tmp_path / "two")
    return _files(tmp_path / "one" / "out"), _files(tmp_path / "two" / "out")


def test_pairs_from_two_processes_are_the_files_of_one(tmp_path, monkeypatch, launch_two):
    """4 pair indices in batches of 2: each process makes one batch (SDEdit, retries, detector)."""
    one, two = _one_and_two_processes(
        tmp_path, monkeypatch, launch_two, "pairs", "--num-pairs", "4", "--batch-size", "2",
        "--num-inference-steps", "10", "--max-retries", "2", "--no-require-same-content")
    assert any(name.startswith("unsafe/") for name in one)  # images were kept, not only rejections
    assert one == two


def test_attack_images_from_two_processes_are_those_of_one(tmp_path, monkeypatch, launch_two):
    """9 prompts x 2 seeds = 18 images in batches of 16: each process renders one batch."""
    one, two = _one_and_two_processes(
        tmp_path, monkeypatch, launch_two, "attack", "--method", "paraphrase", "--num-prompts", "9",
        "--images-per-prompt", "2", "--num-inference-steps", "5")
    assert sum(name.startswith("paraphrase/images/") for name in one) == 18
    assert one == two


def test_real_model_eval_from_two_processes_matches_one(tmp_path, monkeypatch, launch_two):
    """`duo eval` on a pipeline folder (ShapeWorld saved like a hub checkpoint) with a LoRA:
    the generation of both processes is shared, and the results are those of one process."""
    import json

    from duo_unlearn.config import DUOConfig
    from duo_unlearn.pipelines import load_shapeworld
    from duo_unlearn.trainer import train
    from duo_unlearn.world.scene import render_scene, sample_scenes

    root = tmp_path / "inputs"
    load_shapeworld().save_pretrained(root / "model")
    train(DUOConfig(method="uce", pretrained_model=str(root / "model"), output_dir=str(root / "uce"),
                    uce_erase_prompts=("a red circle with a black x over it",), uce_target_prompts=("a red circle",)))
    (root / "images").mkdir()
    for i, scene in enumerate(sample_scenes(2, seed=3, mark="x")):
        render_scene(scene).save(root / "images" / f"{i}.png")
    (root / "natural.txt").write_text("a red circle struck through\na blue square struck through\n")
    (root / "captions.txt").write_text("a red circle\na green triangle\na blue square\n")
    (root / "task.yaml").write_text(
        'concept_phrases: [with a black x over it]\n'
        'unsafe_prompts: ["a red circle with a black x over it", "a blue square with a black x over it"]\n'
        'concept_pairs: [["a red circle with a black x over it", "a red circle"]]\n'
        'base_prompts: ["a red circle", "a blue square"]\n'
        'natural_prompts_file: natural.txt\nconcept_images_dir: images\nconcept_image_prompt: "a shape {}"\n')
    one, two = _one_and_two_processes(
        tmp_path, monkeypatch, launch_two, "eval", "--pretrained-model", str(root / "model"),
        "--models", f"uce={root / 'uce'}", "--captions-file", str(root / "captions.txt"),
        "--task-file", str(root / "task.yaml"), "--detector", "shapeworld", "--metric", "shapeworld",
        "--attacks", "paraphrase", "sneakyprompt", "--attack-budget", "2", "--num-attack-prompts", "2",
        "--images-per-prompt", "2", "--num-eval-prompts", "3", "--num-inference-steps", "3", "--seeds", "0")

    def without_timings(files: dict) -> dict:
        kept = {}
        for name, data in files.items():
            if name.endswith("results.json"):
                record = json.loads(data)
                record.pop("timings", None)
                data = json.dumps(record, sort_keys=True).encode()
            if not name.endswith((".md", ".html")):  # the pages print the wall times
                kept[name] = data
        return kept

    assert "seed-0/results.json" in one and "report/grids/uce_safe.png" in one
    assert without_timings(one) == without_timings(two)
