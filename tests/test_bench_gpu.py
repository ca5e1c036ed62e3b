"""make bench-gpu: a one-line skip without CUDA, every column of both tables on a tiny CPU
run, and real-size configs that are the published architectures."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def _table(text: str, heading: str) -> tuple[list[str], list[list[str]]]:
    """(header cells, data rows) of the first Markdown table after ``heading``."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip("|").split("|")])
    return table[0], table[2:]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the path of a machine without CUDA")
def test_without_cuda_it_says_so_and_exits_cleanly(tmp_path):
    out = tmp_path / "gpu.md"
    proc = _run("--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().count("\n") == 0 and "no CUDA" in proc.stdout
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU smoke test")
def test_tiny_cpu_run_writes_both_tables_with_every_column(tmp_path):
    out = tmp_path / "gpu.md"
    proc = _run("--allow-cpu", "--tiny", "--families", "flux", "--checkpointing", "on", "--batch", "2",
                "--steps", "1", "--warmup", "0", "--gen-steps", "1", "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "CPU" in text.splitlines()[0]

    header, rows = _table(text, "## Training step")
    assert header == ["family", "precision", "gradient checkpointing", "pairs/step", "resolution",
                      "plain LoRA step (s)", "DUO step (s)", "DUO / plain", "pairs/s", "peak GiB (plain)",
                      "peak GiB (DUO)", "robust DUO step (s)", "robust / DUO", "peak GiB (robust)"]
    assert len(rows) == 1 and len(rows[0]) == len(header)
    row = dict(zip(header, rows[0]))
    assert row["family"] == "flux" and row["precision"] == "fp32" and row["gradient checkpointing"] == "on"
    plain, duo = float(row["plain LoRA step (s)"]), float(row["DUO step (s)"])
    assert plain > 0 and duo > 0
    # times to 4 significant digits, rates to 3, the ratio to 2 decimals
    assert float(row["DUO / plain"]) == pytest.approx(duo / plain, abs=0.01)
    assert float(row["pairs/s"]) == pytest.approx(2 / duo, rel=0.01)
    assert row["peak GiB (plain)"] == row["peak GiB (DUO)"] == row["peak GiB (robust)"] == "n/a (CPU)"
    robust = float(row["robust DUO step (s)"])
    assert robust > 0 and float(row["robust / DUO"]) == pytest.approx(robust / duo, abs=0.01)

    header, rows = _table(text, "## Generation")
    assert header == ["family", "precision", "batch", "steps", "resolution", "s/batch", "images/s", "peak GiB"]
    assert len(rows) == 1 and len(rows[0]) == len(header)
    row = dict(zip(header, rows[0]))
    assert row["batch"] == "8" and row["steps"] == "1" and row["resolution"] == "32"
    assert float(row["images/s"]) == pytest.approx(8 / float(row["s/batch"]), rel=0.01)


def test_real_size_configs_are_the_published_architectures():
    """Built on the meta device (no memory, no time): the denoisers and T5 have the published sizes."""
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def billions(module):
        return sum(p.numel() for p in module.parameters()) / 1e9

    published = {"sd15": 0.86, "sdxl": 2.6, "sd3": 2.0, "flux": 11.9}  # model cards: UNet / MMDiT parameters
    for family, size in published.items():
        pipe = bench.build_pipeline(family, tiny=False, device="meta", dtype=torch.bfloat16)
        denoiser = getattr(pipe, "unet", None) or pipe.transformer
        assert billions(denoiser) == pytest.approx(size, rel=0.03), family
        assert next(denoiser.parameters()).dtype == torch.bfloat16
        assert pipe.scheduler.config.num_train_timesteps == 1000
        if family in ("sd3", "flux"):
            t5 = pipe.text_encoder_3 if family == "sd3" else pipe.text_encoder_2
            assert billions(t5) == pytest.approx(4.76, rel=0.02)  # T5-v1.1-XXL encoder
    assert pipe.transformer.config.guidance_embeds  # FLUX.1-dev is guidance-distilled
