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
    assert main([*args, "--output-dir", "out"]) == 0
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
