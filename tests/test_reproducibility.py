"""Same config and seed => the same bits, in fresh processes that load the model from disk.

Nothing here seeds torch: each run is a new Python process started by `duo`, so a result
can only repeat if the library derives everything random from the config's seed."""

import json
import os
import subprocess
import sys

import pytest


def _duo(*args: str, cwd, env_extra=None) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": "random",
           **(env_extra or {})}
    done = subprocess.run([sys.executable, "-m", "duo_unlearn.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _train(root, name: str, seed: int, *extra: str) -> bytes:
    out = root / name
    _duo("train", "--pretrained-model", str(root / "model"), "--pairs-dir", str(root / "pairs"),
         "--output-dir", str(out), "--seed", str(seed), "--max-train-steps", "3", "--train-batch-size", "2",
         "--lora-rank", "4", "--lora-alpha", "4", "--learning-rate", "1e-2", "--checkpointing-steps", "0",
         "--use-prompts", "--prompt-dropout", "0.5", *extra, cwd=root)
    return (out / "pytorch_lora_weights.safetensors").read_bytes()


def test_same_seed_gives_the_same_lora_bits_in_fresh_processes(saved_model_and_pairs):
    """saved_model_and_pairs (conftest): a tiny pipeline saved like a hub checkpoint and a pair folder."""
    root = saved_model_and_pairs
    first, again = _train(root, "repro-a", seed=3), _train(root, "repro-b", seed=3)
    assert first == again
    assert _train(root, "repro-c", seed=4) != first  # the seed matters, so equality above is not vacuous


def test_same_seed_gives_the_same_lora_bits_with_the_retain_term(saved_model_and_pairs):
    """Each process draws the retain images itself, from the config's seed: they repeat too."""
    root = saved_model_and_pairs
    retain = ("--retain-prompts", "a red square", "a blue circle", "--retain-weight", "1e4",
              "--retain-num-inference-steps", "2")
    first, again = _train(root, "retain-a", 3, *retain), _train(root, "retain-b", 3, *retain)
    assert first == again
    assert _train(root, "retain-off", 3) != first  # the term changes the training, so equality is not vacuous


def _demo(root, name: str, seed: int, *extra: str, env_extra=None) -> dict:
    (root / name).mkdir()
    out = root / name / "demo-output"  # the same relative --output-dir in each run, so settings agree too
    _duo("demo", "--output-dir", "demo-output", "--seed", str(seed), "--num-pairs", "4", "--num-eval-prompts", "2",
         "--max-train-steps", "2", "--train-batch-size", "2", "--no-ablation", *extra, cwd=root / name,
         env_extra=env_extra)
    figures = json.loads((out / "figures.json").read_text())
    return {"figures": figures, "lora": (out / "duo" / "pytorch_lora_weights.safetensors").read_bytes()}


@pytest.mark.slow
def test_demo_twice_gives_identical_figures_and_weights(tmp_path):
    """Pairs, training and every evaluation image: the whole demo repeats bit for bit."""
    a, b = _demo(tmp_path, "a", 0), _demo(tmp_path, "b", 0)
    assert a["lora"] == b["lora"]
    assert a["figures"] == b["figures"]
    assert _demo(tmp_path, "c", 1)["lora"] != a["lora"]


def test_demo_pins_its_thread_count_whatever_the_environment_says(tmp_path):
    """Float sums split across threads round differently, so the demo sets its own thread count
    (DemoConfig.num_threads): a machine that would run torch on one thread gets README's bits."""
    pinned = _demo(tmp_path, "one-env-thread", 0, env_extra={"OMP_NUM_THREADS": "1"})
    assert _demo(tmp_path, "default-env", 0)["lora"] == pinned["lora"]
    # not vacuous: at another thread count the bits do differ
    assert _demo(tmp_path, "one-thread", 0, "--num-threads", "1")["lora"] != pinned["lora"]
