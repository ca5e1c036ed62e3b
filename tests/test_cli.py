import pytest

from duo_unlearn.cli import build_parser, main


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("pairs", "train", "attack", "eval", "demo", "world"):
        assert command in out


def test_train_help_shows_field_docs(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "DPO temperature" in out and "--beta" in out and "--lora-target-modules" in out


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    code = main(["train", "--pairs-dir", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "o"),
                 "--pretrained-model", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "is not a diffusers pipeline folder" in err
    assert not (tmp_path / "o").exists()


def test_flags_override_yaml(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("beta: 250\n")
    args = build_parser().parse_args(["train", "--config", str(cfg), "--max-train-steps", "7", "--no-use-prompts"])
    from duo_unlearn.cli import _config
    from duo_unlearn.config import DUOConfig

    c = _config(args, DUOConfig)
    assert c.beta == 250 and c.max_train_steps == 7 and c.use_prompts is False


def test_world_render(tmp_path, capsys):
    assert main(["world", "render", "--num", "4", "--output", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").is_file()
    assert len(capsys.readouterr().out.splitlines()) == 5
