"""The model card says how to load the LoRA, and --push-to-hub uploads the right folder
(tested offline: the hub calls are replaced and what they would send is checked)."""

import json

import huggingface_hub
import pytest
from huggingface_hub import ModelCard, RepoUrl

from duo_unlearn.config import DUOConfig
from duo_unlearn.hub import UPLOAD_IGNORE_PATTERNS, model_card
from duo_unlearn.testing import random_pair_dataset, tiny_sd_pipeline
from duo_unlearn.trainer import train


def test_card_for_the_embedded_model(tmp_path):
    (tmp_path / "train_summary.json").write_text(json.dumps({"steps": 7, "learning_rate": 0.001}))
    (tmp_path / "eval_summary.json").write_text(json.dumps({"defence_success_rate": {"ring-a-bell": 0.875}}))
    text = model_card(DUOConfig(beta=250.0), tmp_path)
    card = ModelCard(text)
    assert card.data.base_model is None  # 'shapeworld' is not a hub model
    assert card.data.library_name == "diffusers"
    assert {"lora", "concept-unlearning", "duo", "shapeworld"} <= set(card.data.tags)
    assert "embedded ShapeWorld pipeline" in text and 'load_pipeline("shapeworld")' in text
    assert "adapter_weights=[1.0]" in text and ", weights=" not in text
    assert "| beta | 250 |" in text
    assert "| steps | 7 |" in text and "| defence_success_rate/ring-a-bell | 0.875 |" in text


def test_card_for_a_hub_model(tmp_path):
    card = ModelCard(model_card(DUOConfig(pretrained_model="CompVis/stable-diffusion-v1-4", method="esd"),
                                tmp_path, repo_id="me/esd-nudity"))
    assert card.data.base_model == "CompVis/stable-diffusion-v1-4"
    assert 'DiffusionPipeline.from_pretrained("CompVis/stable-diffusion-v1-4")' in card.text
    assert 'load_lora_weights("me/esd-nudity"' in card.text and "ESD-x" in card.text


def test_push_to_hub_uploads_the_output_folder_without_checkpoints(tmp_path, monkeypatch):
    calls = {}

    def create_repo(self, repo_id, private=False, exist_ok=False, repo_type=None, **kw):
        calls["create"] = {"repo_id": repo_id, "private": private, "exist_ok": exist_ok}
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, repo_id, folder_path, ignore_patterns=None, **kw):
        from pathlib import Path

        calls["upload"] = {"repo_id": repo_id, "folder_path": folder_path, "ignore_patterns": ignore_patterns,
                           "files": sorted(p.name for p in Path(folder_path).iterdir()),
                           "card": (Path(folder_path) / "README.md").read_text()}

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")  # preflight asks for a login
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    out = tmp_path / "duo-out"
    train(DUOConfig(output_dir=str(out), max_train_steps=2, train_batch_size=2, lora_rank=4, lora_alpha=4,
                    checkpointing_steps=1, checkpoints_total_limit=None, push_to_hub=True,
                    hub_model_id="me/duo-test", hub_private=True),
          pipe=tiny_sd_pipeline(), dataset=random_pair_dataset())

    assert calls["create"] == {"repo_id": "me/duo-test", "private": True, "exist_ok": True}
    upload = calls["upload"]
    assert upload["repo_id"] == "me/duo-test" and upload["folder_path"] == str(out)
    assert upload["ignore_patterns"] == UPLOAD_IGNORE_PATTERNS and "checkpoint-*" in upload["ignore_patterns"]
    assert (out / "checkpoint-1").is_dir()  # present locally, left out by the ignore patterns
    for name in ("pytorch_lora_weights.safetensors", "adapter_config.json", "adapter_model.safetensors",
                 "README.md", "duo_config.yaml", "train_summary.json"):
        assert name in upload["files"]
    assert 'load_lora_weights("me/duo-test"' in upload["card"]


def test_push_without_token_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(ValueError, match="no Hugging Face token"):
        train(DUOConfig(output_dir=str(tmp_path / "o"), push_to_hub=True), pipe=tiny_sd_pipeline(),
              dataset=random_pair_dataset())
    assert not (tmp_path / "o").exists()
