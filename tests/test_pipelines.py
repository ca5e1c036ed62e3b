import numpy as np
import pytest
import torch

from duo_unlearn.pipelines import load_pipeline


def test_folder_that_is_not_a_pipeline_is_a_clear_error(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(ValueError, match=f"{tmp_path} is not a diffusers pipeline folder"):
        load_pipeline(tmp_path)
    (tmp_path / "pytorch_lora_weights.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="LoRA weights"):
        load_pipeline(tmp_path)
    file = tmp_path / "model.ckpt"
    file.write_bytes(b"")
    with pytest.raises(ValueError, match="is a file"):
        load_pipeline(file)
    (tmp_path / "model_index.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_pipeline(tmp_path)


def test_tiny_pipeline_round_trips_through_a_folder(tmp_path):
    from duo_unlearn.sampling import generate
    from duo_unlearn.testing import tiny_sd_pipeline

    pipe = tiny_sd_pipeline()
    pipe.save_pretrained(tmp_path / "p")
    again = load_pipeline(tmp_path / "p")
    again.set_progress_bar_config(disable=True)
    a = generate(pipe, ["a prompt"], [3], num_inference_steps=2)
    b = generate(again, ["a prompt"], [3], num_inference_steps=2)
    assert torch.equal(torch.tensor(list(a[0].getdata())), torch.tensor(list(b[0].getdata())))


def test_shapeworld_is_a_standard_pipeline_and_round_trips(tmp_path, world_pipe):
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    from duo_unlearn.sampling import generate

    assert isinstance(world_pipe, StableDiffusionPipeline)
    images = generate(world_pipe, ["a red circle", "a blue square"], [0, 1], num_inference_steps=10)
    assert [im.size for im in images] == [(64, 64), (64, 64)]
    world_pipe.save_pretrained(tmp_path / "world")
    again = StableDiffusionPipeline.from_pretrained(tmp_path / "world")
    again.set_progress_bar_config(disable=True)
    reloaded = np.asarray(generate(again, ["a red circle"], [0], num_inference_steps=10)[0], dtype=int)
    assert np.abs(reloaded - np.asarray(images[0], dtype=int)).max() <= 2  # float noise only
    img2img = StableDiffusionImg2ImgPipeline(**again.components)
    out = img2img(prompt="a red circle", image=images[0], strength=0.5, num_inference_steps=10,
                  generator=torch.Generator().manual_seed(0)).images[0]
    assert out.size == (64, 64)
