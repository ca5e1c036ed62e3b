"""A trained LoRA folder loads with PEFT alone, not only with diffusers."""

import json

import torch

from duo_unlearn.lora import ADAPTER_CONFIG_NAME, ADAPTER_STATE_NAME, add_lora, save_lora
from duo_unlearn.testing import tiny_sd_pipeline


def _inputs(pipe):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 8, generator=g)
    emb = torch.randn(2, 77, pipe.text_encoder.config.hidden_size, generator=g)
    return x, torch.tensor([10, 500]), emb


def test_adapter_folder_loads_with_peft_model_from_pretrained(tmp_path):
    from peft import LoraConfig, PeftModel

    pipe = tiny_sd_pipeline(seed=0)
    add_lora(pipe.unet, rank=4, alpha=8, target_modules=["to_q", "to_v"], seed=0)
    g = torch.Generator().manual_seed(2)
    for name, param in pipe.unet.named_parameters():  # a trained-looking adapter: B is no longer zero
        if "lora_B" in name:
            param.data = torch.randn(param.shape, generator=g)
    save_lora(pipe, pipe.unet, "unet", tmp_path)

    config = json.loads((tmp_path / ADAPTER_CONFIG_NAME).read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8 and config["target_modules"] == ["to_q", "to_v"]
    assert LoraConfig.from_pretrained(str(tmp_path)).r == 4
    assert (tmp_path / ADAPTER_STATE_NAME).is_file()

    fresh = tiny_sd_pipeline(seed=0).unet  # the same base weights, no adapter
    x, t, emb = _inputs(pipe)
    with torch.no_grad():
        base = fresh(x, t, emb).sample
        loaded = PeftModel.from_pretrained(fresh, str(tmp_path))
        trained = pipe.unet(x, t, emb).sample
        restored = loaded(x, t, emb).sample
    assert not torch.allclose(base, trained, atol=1e-4)  # the adapter matters ...
    torch.testing.assert_close(restored, trained)  # ... and PEFT restores it exactly
