"""Every user error is reported before any model loads, in one line, with nothing written."""

import dataclasses
import json
import logging
import re

import pytest

from duo_unlearn import preflight
from duo_unlearn.attacks.base import AttackConfig
from duo_unlearn.cli import main
from duo_unlearn.config import DUOConfig
from duo_unlearn.configs import field_docs
from duo_unlearn.evaluation import EvalConfig
from duo_unlearn.pairs import PairsConfig


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any attempt to load a pipeline or a detector fails the test: the error must come first."""
    import duo_unlearn.detectors as detectors
    import duo_unlearn.pipelines as pipelines

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input error was reported")

    for module, name in ((pipelines, "load_pipeline"), (pipelines, "load_shapeworld"),
                         (detectors, "get_detector")):
        monkeypatch.setattr(module, name, refuse)


def _missing(monkeypatch, *modules):
    """Pretend these optional packages are not installed."""
    real = preflight.importlib.util.find_spec
    monkeypatch.setattr(preflight.importlib.util, "find_spec", lambda name, *a: None if name in modules
                        else real(name, *a))


def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def _pair_folder(tmp_path, records, files=()):
    folder = tmp_path / "pairs"
    folder.mkdir()
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    for f in files:
        (folder / f).parent.mkdir(parents=True, exist_ok=True)
        (folder / f).write_bytes(b"")
    return folder


def _real_model(tmp_path):
    folder = tmp_path / "sd"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    return folder


# ------------------------------------------------------------------ duo train
def _empty_folder(tmp_path):
    (tmp_path / "pairs").mkdir()
    return tmp_path / "pairs"


@pytest.mark.parametrize("make, match", [
    (lambda t: t / "nope", r"--pairs-dir: pair folder .*nope not found"),
    (_empty_folder, "no metadata.jsonl"),
    (lambda t: _pair_folder(t, [{"index": 0, "kept": False}]), "lists no kept pairs"),
    (lambda t: _pair_folder(t, [{"index": 0, "unsafe_image": "unsafe/0.png", "safe_image": "safe/0.png"}],
                            ["unsafe/0.png"]), r"safe_image .*safe/0.png is missing"),
], ids=["missing", "no-metadata", "none-kept", "image-missing"])
def test_train_pair_folder_errors_come_first(tmp_path, capsys, no_model_loads, make, match):
    out = tmp_path / "out"
    err = _cli_error(capsys, ["train", "--pairs-dir", str(make(tmp_path)), "--output-dir", str(out)])
    assert re.search(match, err), err
    assert not out.exists()


def test_train_library_entry_point_checks_first(tmp_path, no_model_loads):
    from duo_unlearn.trainer import train

    with pytest.raises(ValueError, match="--pairs-dir"):
        train(DUOConfig(pairs_dir=str(tmp_path / "nope"), output_dir=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_train_resume_and_tracker_errors(tmp_path, capsys, no_model_loads, monkeypatch):
    args = ["train", "--method", "esd", "--output-dir", str(tmp_path / "out")]
    assert "has no checkpoint-N folder" in _cli_error(capsys, args + ["--resume-from-checkpoint", "latest"])
    assert "not a checkpoint folder" in _cli_error(capsys, args + ["--resume-from-checkpoint", str(tmp_path)])
    assert "unknown tracker 'tensorbored'" in _cli_error(capsys, args + ["--report-to", "tensorbored"])
    _missing(monkeypatch, "tensorboard")
    assert "pip install tensorboard" in _cli_error(capsys, args + ["--report-to", "tensorboard"])
    assert not (tmp_path / "out").exists()


def test_model_source_errors(tmp_path, capsys, no_model_loads):
    (tmp_path / "file.txt").write_text("x")
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "pytorch_lora_weights.safetensors").write_bytes(b"")
    for source, match in [(str(tmp_path / "missing"), "not found"), ("./missing", "not found"),
                          (str(tmp_path / "file.txt"), "is a file"), ("not a hub id!", "neither a folder nor"),
                          (str(lora), "holds LoRA weights")]:
        err = _cli_error(capsys, ["train", "--method", "esd", "--pretrained-model", source])
        assert "--pretrained-model" in err and match in err, err


def test_push_to_hub_needs_a_token_and_a_valid_id(tmp_path, capsys, no_model_loads, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    args = ["train", "--method", "esd", "--output-dir", str(tmp_path / "o"), "--push-to-hub"]
    assert "no Hugging Face token" in _cli_error(capsys, args)
    assert "--hub-model-id" in _cli_error(capsys, args + ["--hub-model-id", "a/b/c"])


# ------------------------------------------------------------------ duo pairs
def test_pairs_errors_come_first(tmp_path, capsys, no_model_loads, monkeypatch):
    out = tmp_path / "out"
    base = ["pairs", "--output-dir", str(out)]
    assert "--unsafe-images-dir: folder" in _cli_error(capsys, base + ["--unsafe-images-dir", str(tmp_path / "x")])
    (tmp_path / "empty").mkdir()
    assert "fewer than 1 images" in _cli_error(capsys, base + ["--unsafe-images-dir", str(tmp_path / "empty")])
    assert "unknown detector 'nudenett'" in _cli_error(capsys, base + ["--detector", "nudenett"])
    _missing(monkeypatch, "nudenet")
    assert 'pip install "duo-unlearn[nudenet]"' in _cli_error(capsys, base + ["--detector", "nudenet"])
    from duo_unlearn.pairs import make_pairs

    with pytest.raises(preflight.MissingExtraError, match="nudenet"):
        make_pairs(PairsConfig(output_dir=str(out), detector="nudenet"))
    assert not out.exists()


# ------------------------------------------------------------------ duo attack
def test_attack_errors_come_first(tmp_path, capsys, no_model_loads):
    out = tmp_path / "out"
    base = ["attack", "--output-dir", str(out)]
    assert "--lora: " in _cli_error(capsys, base + ["--lora", str(tmp_path)])
    real = str(_real_model(tmp_path))
    assert "--task-file: required" in _cli_error(capsys, base + ["--pretrained-model", real])
    assert "task file" in _cli_error(capsys, base + ["--task-file", str(tmp_path / "task.yaml")])
    (tmp_path / "task.yaml").write_text("concept_phrases: [x]\n")
    assert "unsafe_prompts" in _cli_error(capsys, base + ["--task-file", str(tmp_path / "task.yaml")])
    from test_model_eval import TASK, _task_dir

    without_twins = _task_dir(tmp_path / "t", TASK.replace("safe_twins_dir: twins\n", ""))
    err = _cli_error(capsys, base + ["--pretrained-model", real, "--task-file", str(without_twins),
                                     "--method", "adaptive-inversion", "--detector", "shapeworld"])
    assert "adaptive-inversion needs safe_twins_dir" in err
    assert "--num-tokens" in _cli_error(capsys, base + ["--num-tokens", "-1"])
    from duo_unlearn.attacks import run_attack

    with pytest.raises(ValueError, match="--task-file"):
        run_attack(AttackConfig(pretrained_model=real, output_dir=str(out)))
    assert not out.exists()


# ------------------------------------------------------------------ duo eval
def test_eval_on_shapeworld_refuses_real_model_options(tmp_path, capsys, no_model_loads, monkeypatch):
    import duo_unlearn.evaluation as evaluation

    monkeypatch.setattr(evaluation, "run_eval", lambda cfg: pytest.fail("the study started"))
    err = _cli_error(capsys, ["eval", "--output-dir", str(tmp_path / "o"), "--models", "a=b",
                              "--captions-file", "c.txt", "--clip-model", "openai/clip"])
    assert "--models, --captions-file, --clip-model: only for a real model" in err
    assert not (tmp_path / "o").exists()


def test_eval_refuses_bad_study_settings_before_anything_runs(tmp_path, capsys, no_model_loads, monkeypatch):
    """The study builds DUOConfig and AttackConfig only when it trains or attacks, minutes in:
    their settings are checked when `duo eval` starts."""
    import duo_unlearn.evaluation as evaluation

    monkeypatch.setattr(evaluation, "run_eval", lambda cfg: pytest.fail("the study started"))
    base = ["eval", "--output-dir", str(tmp_path / "o")]
    for option, value in [("--adversarial-steps", "0"), ("--train-steps", "0"), ("--adversarial-weight", "-1"),
                          ("--robust-betas", "-5"), ("--sneakyprompt-confirm-seeds", "-1")]:
        assert option.lstrip("-").replace("-", "_") in _cli_error(capsys, base + [option, value])
    err = _cli_error(capsys, base + ["--adversary-init", "unsafe_prompt", "--no-adversary-per-pair"])
    assert "adversary_per_pair" in err
    err = _cli_error(capsys, base + ["--negative-guidance-target", "unsafe_prompt"])
    assert "negative_guidance_target" in err and "adversarial_objective" in err
    assert not (tmp_path / "o").exists()


def test_eval_real_model_errors(tmp_path, capsys, no_model_loads, monkeypatch):
    real = str(_real_model(tmp_path))
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "pytorch_lora_weights.safetensors").write_bytes(b"")
    base = ["eval", "--pretrained-model", real, "--output-dir", str(tmp_path / "o")]
    assert "give at least one" in _cli_error(capsys, base)
    assert "'name=folder'" in _cli_error(capsys, base + ["--models", str(lora)])
    assert "--models a: " in _cli_error(capsys, base + ["--models", f"a={tmp_path}"])
    assert "reserved" in _cli_error(capsys, base + ["--models", f"base={lora}"])
    with_model = base + ["--models", f"duo={lora}"]
    assert "--captions-file" in _cli_error(capsys, with_model)
    (tmp_path / "captions.txt").write_text("a dog\n")
    with_captions = with_model + ["--captions-file", str(tmp_path / "captions.txt")]
    assert "--task-file: required" in _cli_error(capsys, with_captions)

    monkeypatch.setattr(preflight, "check_task_file", lambda path, option="--task-file", needs_twins=False: None)
    _missing(monkeypatch, "lpips", "nudenet")
    err = _cli_error(capsys, with_captions + ["--task-file", "t.yaml", "--detector", "shapeworld"])
    assert 'pip install "duo-unlearn[lpips]"' in err and "--metric lpips" in err
    assert 'duo-unlearn[nudenet]' in _cli_error(capsys, with_captions + ["--task-file", "t.yaml"])
    assert "needs --clip-model" in _cli_error(capsys, with_captions + [
        "--task-file", "t.yaml", "--detector", "shapeworld", "--metric", "shapeworld",
        "--reference-images-dir", str(tmp_path)])
    assert not (tmp_path / "o").exists()


def test_real_model_only_list_matches_the_field_docs():
    docs = field_docs(EvalConfig)
    documented = {name for name, doc in docs.items() if doc.startswith("Real model only")}
    assert documented == set(preflight.EVAL_REAL_MODEL_ONLY) & set(docs)


# ------------------------------------------------------------------ ignored settings
def test_every_ignored_setting_warns_once(caplog):
    caplog.set_level(logging.WARNING, logger="duo_unlearn.preflight")
    cfg = DUOConfig(method="esd", pairs_dir="elsewhere", esd_eta=2.0, uce_lambda=0.1, hub_private=True)
    preflight.check_train(cfg, load_model=False)
    text = caplog.text
    assert "--pairs-dir is ignored with --method esd" in text
    assert "--uce-lambda is ignored with --method esd" in text
    assert "--hub-private is ignored without --push-to-hub" in text
    assert "--esd-eta" not in text  # ESD reads it
    caplog.clear()
    preflight.check_train(cfg, load_model=False)  # the entry point checking again prints nothing new
    assert caplog.text == ""

    preflight.check_train(DUOConfig(method="uce", beta=250.0, max_train_steps=3), load_model=False)
    assert "--beta is ignored with --method uce" in caplog.text
    assert "--max-train-steps is ignored with --method uce" in caplog.text


def test_duo_warns_about_esd_settings(tmp_path, caplog):
    folder = _pair_folder(tmp_path, [{"index": 0, "unsafe_image": "u.png", "safe_image": "s.png"}],
                          ["u.png", "s.png"])
    caplog.set_level(logging.WARNING, logger="duo_unlearn.preflight")
    preflight.check_train(DUOConfig(pairs_dir=str(folder), esd_variant="u", validation_prompts=("a",)))
    assert "--esd-variant is ignored with --method duo" in caplog.text
    assert "--validation-prompts is ignored without --validation-steps" in caplog.text


def test_defaults_warn_about_nothing(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="duo_unlearn.preflight")
    for method in ("esd", "uce"):
        preflight.check_train(DUOConfig(method=method), load_model=False)
    assert caplog.text == ""
    assert preflight.changed_fields(dataclasses.replace(DUOConfig(), beta=250.0)) == ["beta"]
