"""What the trainer takes from accelerate and gives back on resume, in one process: the
launcher's precision, a second trainer with another precision, the fp16 scaler state and
this process's random state."""

import json

import pytest
import torch

from duo_unlearn.config import DUOConfig
from duo_unlearn.testing import random_pair_dataset, tiny_sd_pipeline
from duo_unlearn.trainer import UnlearningTrainer


def _config(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), max_train_steps=2, train_batch_size=2, lora_rank=4, lora_alpha=4,
                learning_rate=1e-2, checkpointing_steps=0)
    return DUOConfig(**{**base, **kw})


def _trainer(cfg):
    return UnlearningTrainer(cfg, pipe=tiny_sd_pipeline(), dataset=random_pair_dataset())


def test_two_trainers_with_different_precisions_in_one_process(tmp_path):
    """A notebook trains fp32, then bf16: accelerate's process-wide state would refuse the second."""
    first = _trainer(_config(tmp_path / "a", mixed_precision="no"))
    assert first.pipe.unet.dtype == torch.float32
    second = _trainer(_config(tmp_path / "b", mixed_precision="bf16"))
    assert second.accelerator.mixed_precision == "bf16"
    assert second.pipe.unet.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in second.lora_params)  # trained in fp32
    second.train()
    third = _trainer(_config(tmp_path / "c", mixed_precision="no"))
    assert third.accelerator.mixed_precision == "no"


def test_launcher_precision_is_used_unless_the_config_sets_one(tmp_path, monkeypatch):
    # what `accelerate launch --mixed_precision bf16` puts in each process's environment
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    trainer = _trainer(_config(tmp_path / "launcher"))
    assert trainer.accelerator.mixed_precision == "bf16"
    trainer.train()
    assert "mixed_precision: bf16" in (tmp_path / "launcher" / "out" / "duo_config.yaml").read_text().splitlines()

    explicit = _trainer(_config(tmp_path / "explicit", mixed_precision="no"))
    assert explicit.accelerator.mixed_precision == "no"


def test_scaler_state_survives_a_checkpoint(tmp_path):
    """On a GPU, fp16 gives accelerate a GradScaler; on the CPU it has none, so one is attached
    here: its scale and growth tracker must come back on resume (stored as JSON)."""
    cfg = _config(tmp_path, checkpoints_total_limit=None)
    trainer = _trainer(cfg)
    trainer.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    trainer.accelerator.scaler.scale(torch.ones(()))  # materialise the scale, then change it as an overflow would
    trainer.accelerator.scaler.update(new_scale=512.0)
    trainer.step()
    folder = trainer.save_checkpoint()
    saved = json.loads((folder / "trainer_state.json").read_text())["grad_scaler"]
    assert saved["scale"] == 512.0

    resumed = _trainer(_config(tmp_path, resume_from_checkpoint=str(folder)))
    resumed.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    resumed.load_checkpoint(resumed.resume_folder)
    assert resumed.accelerator.scaler.get_scale() == 512.0
    assert resumed.accelerator.scaler.state_dict() == trainer.accelerator.scaler.state_dict()


def test_resume_restores_this_processes_random_state(tmp_path):
    trainer = _trainer(_config(tmp_path))
    trainer.step()
    trainer.save_checkpoint()
    expected_global, expected_generator = torch.get_rng_state(), trainer.generator.get_state()
    torch.rand(5)  # move both on, as later steps would
    trainer.generator.manual_seed(123)

    resumed = _trainer(_config(tmp_path, resume_from_checkpoint="latest"))
    resumed.load_checkpoint(resumed.resume_folder)
    assert torch.equal(torch.get_rng_state(), expected_global)
    assert torch.equal(resumed.generator.get_state(), expected_generator)
    assert resumed.global_step == 1


def test_resume_with_another_process_count_fails_before_loading_a_model(tmp_path):
    trainer = _trainer(_config(tmp_path))
    trainer.step()
    folder = trainer.save_checkpoint()
    state_file = folder / "trainer_state.json"
    state_file.write_text(json.dumps({**json.loads(state_file.read_text()), "num_processes": 2}))
    cfg = _config(tmp_path, resume_from_checkpoint="latest", pretrained_model=str(tmp_path / "no-such-model"))
    with pytest.raises(ValueError, match=r"checkpoint-1 was saved by 2 process\(es\) but this run has 1"):
        UnlearningTrainer(cfg)
