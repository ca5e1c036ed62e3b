"""Inference precision and weight selection for `duo pairs`, `duo attack` and `duo eval`:
fp16 refused on a CPU before anything loads, variants and revisions reach diffusers, and
SDXL's VAE runs in fp32 when its config says it overflows in fp16."""

import pytest
import torch

from duo_unlearn.cli import main
from duo_unlearn.families import encode_latents
from duo_unlearn.pipelines import SHAPEWORLD, inference_dtype, load_pipeline
from duo_unlearn.testing import tiny_sd_pipeline, tiny_sdxl_pipeline


def test_dtype_names_and_the_cpu_refusing_fp16():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert inference_dtype("fp32", cpu) is torch.float32
    assert inference_dtype("bf16", cpu) is torch.bfloat16
    assert inference_dtype("fp16", gpu) is torch.float16  # only the device object, no GPU needed
    with pytest.raises(ValueError, match="dtype='fp16' needs a GPU"):
        inference_dtype("fp16", cpu)
    with pytest.raises(ValueError, match="dtype must be one of"):
        inference_dtype("float8", cpu)


@pytest.mark.parametrize("command", ["pairs", "attack"])
def test_fp16_on_cpu_is_a_clear_error_before_anything_is_written(tmp_path, capsys, command):
    out = tmp_path / "out"
    assert main([command, "--dtype", "fp16", "--output-dir", str(out)]) == 2
    assert "dtype='fp16' needs a GPU" in capsys.readouterr().err
    assert not out.exists()


def test_a_bad_dtype_names_the_option(capsys):
    with pytest.raises(SystemExit) as exited:  # argparse checks the choices of the Literal field
        main(["pairs", "--dtype", "half"])
    assert exited.value.code == 2
    assert "--dtype: invalid choice: 'half' (choose from 'fp32', 'fp16', 'bf16')" in capsys.readouterr().err
    from duo_unlearn.pairs import PairsConfig

    with pytest.raises(ValueError, match="PairsConfig.dtype"):  # and so does the config, from YAML or Python
        PairsConfig(dtype="half")


def test_variant_selects_weight_files_and_shapeworld_has_none(tmp_path):
    original = tiny_sd_pipeline()
    original.save_pretrained(tmp_path / "model", variant="fp16")  # files named *.fp16.safetensors
    assert list((tmp_path / "model" / "unet").glob("*.fp16.safetensors"))
    loaded = load_pipeline(tmp_path / "model", variant="fp16")
    for name, value in original.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[name], value), name
    with pytest.raises(ValueError, match="shapeworld has none"):
        load_pipeline(SHAPEWORLD, revision="main")


def _record_input_dtypes(module, seen: list):
    return module.register_forward_pre_hook(lambda _, args: seen.append(args[0].dtype))


@pytest.mark.parametrize("force_upcast", [True, False])
def test_half_precision_vae_honours_force_upcast(force_upcast):
    """SDXL's pipeline decodes and ``encode_latents`` encodes in fp32 when the VAE's config
    sets force_upcast, and in fp16 when it does not (so the check below can tell)."""
    pipe = tiny_sdxl_pipeline().to(torch.float16)
    pipe.vae.register_to_config(force_upcast=force_upcast)
    expected = torch.float32 if force_upcast else torch.float16
    decoded, encoded = [], []
    hooks = [_record_input_dtypes(pipe.vae.decoder, decoded), _record_input_dtypes(pipe.vae.encoder, encoded)]
    pipe("a box", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
    mean, std = encode_latents(pipe.vae, torch.zeros(1, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    assert decoded == [expected] and encoded == [expected]
    assert pipe.vae.dtype == torch.float16  # upcast only while it runs
    assert torch.isfinite(mean).all() and torch.isfinite(std).all()
