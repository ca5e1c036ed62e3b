import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def world_pipe():
    from duo_unlearn.pipelines import load_shapeworld

    return load_shapeworld()


@pytest.fixture(scope="session")
def world_detector():
    from duo_unlearn.detectors import ShapeWorldDetector

    return ShapeWorldDetector()



@pytest.fixture(scope="session")
def saved_model_and_pairs(tmp_path_factory):
    """A tiny SD pipeline saved like a hub checkpoint (root/model), and a pair folder of random
    images (root/pairs): what a fresh `duo` process or `accelerate launch` loads from disk."""
    import json

    import numpy as np
    from PIL import Image

    from duo_unlearn.testing import tiny_sd_pipeline

    root = tmp_path_factory.mktemp("saved")
    tiny_sd_pipeline().save_pretrained(root / "model")
    pairs = root / "pairs"
    (pairs / "unsafe").mkdir(parents=True)
    (pairs / "safe").mkdir()
    g = np.random.default_rng(0)
    records = []
    for i in range(4):
        for side in ("unsafe", "safe"):
            Image.fromarray(g.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(pairs / side / f"{i:05d}.png")
        records.append({"index": i, "kept": True, "unsafe_prompt": "a box with a cross", "safe_prompt": "a box",
                        "unsafe_image": f"unsafe/{i:05d}.png", "safe_image": f"safe/{i:05d}.png"})
    (pairs / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def launch_two_processes(*args: str, cwd, mixed_precision: str = "no") -> None:
    """`duo ARGS` as 2 CPU processes under `accelerate launch` (gloo), as on 2 GPUs.

    accelerate 1.x's ``--cpu`` launches *one* process (several need mpirun), so this uses
    the torchrun path (``--multi_gpu``) with ``ACCELERATE_USE_CPU=1``, which makes each process
    a CPU rank of a gloo group. A free port keeps concurrent test runs apart."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": "random"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", mixed_precision, "--dynamo_backend", "no",
           "--main_process_port", str(port), "-m", "duo_unlearn.cli", *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="session")
def launch_two():
    return launch_two_processes
