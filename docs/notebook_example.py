# %% [markdown]
# # duo-unlearn in a notebook
#
# Make the embedded ShapeWorld model forget its unsafe concept (a black X drawn over a shape),
# then red-team the result, all from Python. Tiny settings so it runs in a minute on a CPU;
# the defaults (64 pairs, 1000 steps) are the paper's. Each cell is a notebook cell
# (`# %%`, the percent format Jupyter and VS Code open as a notebook; `jupytext --to ipynb`
# converts it). `tests/test_notebook_example.py` runs this file.

# %%
from pathlib import Path

from duo_unlearn import AttackConfig, DUOConfig, PairsConfig, attack, load_pipeline, make_pairs, train

work = Path("duo-notebook")

# %% [markdown]
# ## 1. Paired data
# An unsafe image per prompt and its safe SDEdit twin; the detector keeps a pair only when the
# twin lost the X and kept everything else.

# %%
pairs = make_pairs(PairsConfig(
    output_dir=str(work / "pairs"),
    unsafe_prompts=("a red circle with a black x over it", "a blue square with a black x over it"),
    safe_prompts=("a red circle", "a blue square"),
    num_pairs=6, batch_size=6, num_inference_steps=10, strength=0.6,
))
print(pairs)  # {'attempted': 6, 'kept': ..., ...}

# %% [markdown]
# ## 2. Unlearning with DUO
# Two steps here; the exported folder loads with `pipe.load_lora_weights`, or with PEFT
# (`adapter_config.json` sits beside the weights).

# %%
lora_dir = train(DUOConfig(
    pairs_dir=str(work / "pairs"), output_dir=str(work / "duo"),
    beta=500.0, learning_rate=1e-3, use_prompts=True, timestep_range=(1, 1000),
    max_train_steps=2, train_batch_size=2, lora_rank=4, lora_alpha=4, checkpointing_steps=0,
))
print(sorted(p.name for p in lora_dir.iterdir()))

# %% [markdown]
# ## 3. Red-teaming the unlearned model
# The same interface as `duo attack`: two held-out paraphrases of the concept, one image each.

# %%
result = attack(AttackConfig(method="paraphrase", lora=str(lora_dir), output_dir=str(work / "attack"),
                             num_prompts=2, images_per_prompt=1, num_inference_steps=10))
print(f"defence success rate {result.defence_success_rate:.2f} over {len(result.images)} images")

# %% [markdown]
# ## 4. Using the LoRA with diffusers directly

# %%
pipe = load_pipeline("shapeworld")
pipe.load_lora_weights(str(lora_dir), adapter_name="duo")
pipe.set_adapters(["duo"], adapter_weights=[1.0])
image = pipe("a green triangle", num_inference_steps=10).images[0]
image.save(work / "green_triangle.png")
