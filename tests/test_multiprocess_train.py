"""`duo train` as two processes (gloo on CPU, as on two GPUs): the same samples as one process
with the doubled batch, the launcher's precision honoured, and an exact resume.

Each 2-process run starts fresh Python processes that load the tiny pipeline from disk, so
nothing here depends on the test process's RNG."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from duo_unlearn.config import DUOConfig
from duo_unlearn.lora import LORA_WEIGHTS_NAME
from duo_unlearn.trainer import saved_inversion_pool, train

COMMON = dict(lora_rank=4, lora_alpha=4, learning_rate=1e-2, use_prompts=True, prompt_dropout=0.5)


def _flags(root, out, **kw) -> list[str]:
    settings = {"pretrained_model": str(root / "model"), "pairs_dir": str(root / "pairs"), "output_dir": str(out),
                **COMMON, **kw}
    flags = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        flags += [flag] if value is True else [flag, str(value)]
    return flags


def _max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_two_processes_train_on_the_samples_of_one_process_with_the_doubled_batch(saved_model_and_pairs, tmp_path,
                                                                                  launch_two):
    """2 processes x batch 2 draw the rows of 1 process x batch 4 (one generator, same seed,
    each rank keeps its slice) and DDP averages the two halves' mean gradients, which is the
    mean over 4: the LoRA agrees up to float summation order, not bit for bit. Logged metrics
    are averaged over the processes, so they are the global batch's too."""
    root = saved_model_and_pairs
    launch_two("train", *_flags(root, tmp_path / "two", max_train_steps=3, train_batch_size=2,
                                checkpointing_steps=0), cwd=tmp_path)
    two = load_file(tmp_path / "two" / LORA_WEIGHTS_NAME)

    def one_process(batch: int) -> dict:
        out = tmp_path / f"one-{batch}"
        train(DUOConfig(pretrained_model=str(root / "model"), pairs_dir=str(root / "pairs"), output_dir=str(out),
                        max_train_steps=3, train_batch_size=batch, checkpointing_steps=0, **COMMON))
        return load_file(out / LORA_WEIGHTS_NAME)

    same_global_batch, rank0_only = one_process(4), one_process(2)
    scale = max(w.abs().max().item() for w in two.values())
    assert _max_abs_diff(two, same_global_batch) <= 1e-4 * scale
    # logged metrics are means over the global batch, not rank 0's half
    logged = {name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
              for name in ("two", "one-4", "one-2")}
    for key in ("loss", "duo_loss", "mse/safe", "ref_mse/unsafe"):
        assert [m[key] for m in logged["two"]] == pytest.approx([m[key] for m in logged["one-4"]], rel=1e-4)
    assert [m["mse/safe"] for m in logged["two"]] != pytest.approx([m["mse/safe"] for m in logged["one-2"]],
                                                                   rel=1e-4)
    # not vacuous: training on rank 0's half alone lands far away
    assert _max_abs_diff(two, rank0_only) > 100 * max(_max_abs_diff(two, same_global_batch), 1e-7)


def test_bf16_launch_is_recorded_and_a_killed_run_resumes_exactly(saved_model_and_pairs, tmp_path, launch_two):
    """`accelerate launch --mixed_precision bf16` with no precision in the config trains in bf16
    and says so in duo_config.yaml; warm-up counts optimiser steps, not processes x steps.

    The "killed" run: checkpoint-2 of the uninterrupted run is copied into a fresh output
    folder, which is exactly what a run killed after writing it leaves (a checkpoint is written
    atomically and never touched again), and the 2-process resume from it must end with the
    uninterrupted run's LoRA bytes."""
    root = saved_model_and_pairs
    kw = dict(max_train_steps=4, train_batch_size=2, checkpointing_steps=2, checkpoints_total_limit=4,
              lr_warmup_steps=4)
    launch_two("train", *_flags(root, tmp_path / "full", **kw), cwd=tmp_path, mixed_precision="bf16")
    full = tmp_path / "full"
    assert "mixed_precision: bf16" in (full / "duo_config.yaml").read_text().splitlines()
    lrs = [json.loads(line)["lr"] for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([1e-2 * s / 4 for s in (1, 2, 3, 4)])  # once per optimiser step

    checkpoint = full / "checkpoint-2"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert (state["num_processes"], state["mixed_precision"]) == (2, "bf16")
    rng = load_file(checkpoint / "trainer_state.safetensors")
    assert {"rng.generator.0", "rng.generator.1", "rng.torch.0", "rng.torch.1"} <= rng.keys()
    assert not torch.equal(rng["rng.torch.0"], rng["rng.torch.1"])  # each rank's own global RNG

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(checkpoint, resumed / checkpoint.name)
    launch_two("train", *_flags(root, resumed, resume_from_checkpoint="latest", **kw), cwd=tmp_path,
               mixed_precision="bf16")
    assert (resumed / LORA_WEIGHTS_NAME).read_bytes() == (full / LORA_WEIGHTS_NAME).read_bytes()
    assert [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()] == [3, 4]


@pytest.mark.parametrize("recipe", [{}, dict(inversion_pool_contrast=100.0, inversion_pool_tokens=2,
                                             inversion_pool_init_word="black crossed")],
                         ids=["concept-inversion", "adaptive"])
def test_two_processes_invert_the_pool_as_one_process_with_the_doubled_batch(saved_model_and_pairs, tmp_path,
                                                                              launch_two, recipe):
    """Robust DUO's inversion pool on 2 processes: each rank inverts on its rows of the global
    batch and the gradients are summed, so both hold the pool of 1 process x batch 4 (up to
    float summation order), and so does the LoRA trained under it; rank 0's rows alone differ.
    With the adaptive recipe each rank's contrast objective is weighted by its share of the batch."""
    root = saved_model_and_pairs
    robust = dict(adversarial_conditioning=True, adversary_per_pair=True, inversion_pool_every=2,
                  inversion_pool_steps=4, inversion_pool_size=2, max_train_steps=3, checkpointing_steps=2, **recipe)
    launch_two("train", *_flags(root, tmp_path / "two", train_batch_size=2, **robust), cwd=tmp_path)

    def one_process(batch: int) -> tuple[dict, torch.Tensor]:
        out = tmp_path / f"one-{batch}"
        train(DUOConfig(pretrained_model=str(root / "model"), pairs_dir=str(root / "pairs"), output_dir=str(out),
                        train_batch_size=batch, **robust, **COMMON))
        return load_file(out / LORA_WEIGHTS_NAME), _pool(out)

    def _pool(out) -> torch.Tensor:
        return torch.stack(saved_inversion_pool(load_file(out / "checkpoint-2" / "trainer_state.safetensors")))

    two, two_pool = load_file(tmp_path / "two" / LORA_WEIGHTS_NAME), _pool(tmp_path / "two")
    (same, same_pool), (_, rank0_pool) = one_process(4), one_process(2)
    torch.testing.assert_close(two_pool, same_pool, rtol=1e-4, atol=1e-5)
    scale = max(w.abs().max().item() for w in two.values())
    assert _max_abs_diff(two, same) <= 1e-4 * scale
    assert (two_pool - rank0_pool).abs().max() > 100 * max((two_pool - same_pool).abs().max().item(), 1e-7)
