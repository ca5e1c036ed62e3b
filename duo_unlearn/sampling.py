"""Seeded, batched generation: the same (prompt, seed) gives the same image on every run,
so base and unlearned models can be compared image by image (and, under
``distributed.split_generation``, whatever the number of processes)."""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image
from tqdm.auto import tqdm


@torch.no_grad()
def generate(
    pipe,
    prompts: Sequence[str],
    seeds: Sequence[int],
    num_inference_steps: int = 25,
    guidance_scale: float = 7.5,
    negative_prompt: str | None = None,
    batch_size: int = 16,
    prompt_embeds: torch.Tensor | None = None,
    progress: bool = False,
    **pipe_kwargs,
) -> list[Image.Image]:
    """Images for ``prompts[i]`` with seed ``seeds[i]``; ``prompt_embeds`` replaces the prompts
    (attacks that work in embedding space pass them here)."""
    n = len(prompt_embeds) if prompt_embeds is not None else len(prompts)
    if len(seeds) != n:
        raise ValueError(f"{n} prompts but {len(seeds)} seeds")
    from duo_unlearn import distributed

    device = getattr(pipe, "device", torch.device("cpu"))
    starts = list(range(0, n, batch_size))
    split = distributed.generation_is_split()
    if split:  # whole batches per process: an image depends on the batch it was made in
        starts = distributed.shard(starts)
    images: list[Image.Image] = []
    for start in tqdm(starts, desc="generate", disable=not progress):
        stop = min(start + batch_size, n)
        generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds[start:stop]]
        kwargs = dict(pipe_kwargs)
        if prompt_embeds is not None:
            kwargs["prompt_embeds"] = prompt_embeds[start:stop].to(device)
            if guidance_scale > 1:
                neg = pipe.encode_prompt(negative_prompt or "", device, 1, False)[0]
                kwargs["negative_prompt_embeds"] = neg.expand(stop - start, -1, -1)
        else:
            kwargs["prompt"] = list(prompts[start:stop])
            if negative_prompt is not None:
                kwargs["negative_prompt"] = [negative_prompt] * (stop - start)
        out = pipe(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                   generator=generators, output_type="pil", **kwargs)
        images.extend(out.images)
    return distributed.gather_objects(images) if split else images
