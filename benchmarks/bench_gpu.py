"""DUO on real-size architectures: step time against a plain LoRA step, pairs/s and peak GPU
memory for fp16/bf16 with gradient checkpointing on and off, and generation images/s.

    make bench-gpu     (python benchmarks/bench_gpu.py --output bench-output/gpu.md)
    python benchmarks/bench_gpu.py --families sd15,flux --precisions bf16
    python benchmarks/bench_gpu.py --allow-cpu --tiny --steps 1    (smoke test, test-sized models)

No hub: the SD1.5, SDXL, SD3-medium and FLUX.1-dev pipelines are built with random weights
from their published configs (written out below); time and memory do not depend on the
weights. Every tokenizer is MiniLM's (shipped offline): its ids fall inside every text
encoder's vocabulary, and the sequence lengths are the real ones. Each (family, precision,
checkpointing) trains in its own process, so its peak memory is its own and accelerate's
precision is set once per process; a configuration that runs out of memory is reported as OOM,
one whose random weights overflow (fp16) as a non-finite loss.

The DUO step is the trainer's own (``UnlearningTrainer.step``); the plain LoRA step is
``bench_step.plain_lora_step`` on the same trainer, inputs and optimiser. Robust DUO (the
demo's adversarial training: one adversarial conditioning per pair, 4 adversary steps, the
preference under it) is the trainer's step with those settings, timed in a process of its own
(its persistent adversary is part of the trainer), so it has its own peak memory.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from queue import Empty

import torch

FAMILIES = ("sd15", "sdxl", "sd3", "flux")
PRECISIONS = {"fp32": "no", "fp16": "fp16", "bf16": "bf16"}  # our names -> DUOConfig.mixed_precision
DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
GEN_BATCH = 8
GEN_PROMPT = "a photo of a red fox in the snow"

# --- published architectures (diffusers/transformers config values) -------------------------
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
CLIP_BIGG = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                 num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280)
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              relative_attention_num_buckets=32, feed_forward_proj="gated-gelu")
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
              layers_per_block=2)
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10),
                 attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
SD3_MEDIUM = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24,
                  attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
                  caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=192)
FLUX_DEV = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                guidance_embeds=True, axes_dims_rope=(16, 56, 56))
SCALED_LINEAR = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    """Build the big models directly in their dtype: FLUX in fp32 would need 48 GB first."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _tokenizer(max_length: int):
    from transformers import AutoTokenizer

    from duo_unlearn.world.model import text_encoder_path

    return AutoTokenizer.from_pretrained(text_encoder_path(), model_max_length=max_length)


def _clip(config: dict, with_projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(CLIPTextConfig(**config, bos_token_id=101, eos_token_id=102, pad_token_id=0)).eval()


def _t5():
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(**T5_XXL, pad_token_id=0)).eval()


def _scheduler(family: str):
    import diffusers as d

    if family == "sd15":
        return d.PNDMScheduler(**SCALED_LINEAR, skip_prk_steps=True, set_alpha_to_one=False)
    if family == "sdxl":
        return d.EulerDiscreteScheduler(**SCALED_LINEAR, timestep_spacing="leading")
    if family == "sd3":
        return d.FlowMatchEulerDiscreteScheduler(shift=3.0)
    return d.FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                             base_image_seq_len=256, max_image_seq_len=4096)


def build_pipeline(family: str, tiny: bool, device: str, dtype: torch.dtype):
    """A pipeline of ``family`` with random weights, on ``device`` in ``dtype``."""
    if tiny:
        from duo_unlearn import testing

        build = {"sd15": testing.tiny_sd_pipeline, "sdxl": testing.tiny_sdxl_pipeline,
                 "sd3": testing.tiny_sd3_pipeline, "flux": testing.tiny_flux_pipeline}[family]
        pipe = build()
        return pipe if (device, dtype) == ("cpu", torch.float32) else pipe.to(device, dtype)
    import diffusers as d

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")
    scheduler = _scheduler(family)  # outside the context below: schedules stay fp32 on the CPU
    torch.manual_seed(0)
    with torch.device(device), _default_dtype(dtype):
        if family == "sd15":
            pipe = d.StableDiffusionPipeline(
                vae=d.AutoencoderKL(**SD_VAE, sample_size=512, scaling_factor=0.18215),
                text_encoder=_clip(CLIP_L, False), tokenizer=_tokenizer(77),
                unet=d.UNet2DConditionModel(**SD15_UNET),
                scheduler=scheduler,
                safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        elif family == "sdxl":
            pipe = d.StableDiffusionXLPipeline(
                vae=d.AutoencoderKL(**SD_VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True),
                text_encoder=_clip(CLIP_L, False), text_encoder_2=_clip(CLIP_BIGG, True),
                tokenizer=_tokenizer(77), tokenizer_2=_tokenizer(77), unet=d.UNet2DConditionModel(**SDXL_UNET),
                scheduler=scheduler)
        elif family == "sd3":
            vae = dict(SD_VAE, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)
            pipe = d.StableDiffusion3Pipeline(
                vae=d.AutoencoderKL(**vae, sample_size=1024, scaling_factor=1.5305, shift_factor=0.0609),
                text_encoder=_clip(CLIP_L, True), text_encoder_2=_clip(CLIP_BIGG, True), text_encoder_3=_t5(),
                tokenizer=_tokenizer(77), tokenizer_2=_tokenizer(77), tokenizer_3=_tokenizer(256),
                transformer=d.SD3Transformer2DModel(**SD3_MEDIUM), scheduler=scheduler)
        else:
            vae = dict(SD_VAE, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)
            pipe = d.FluxPipeline(
                vae=d.AutoencoderKL(**vae, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159),
                text_encoder=_clip(CLIP_L, False), text_encoder_2=_t5(),
                tokenizer=_tokenizer(77), tokenizer_2=_tokenizer(512),
                transformer=d.FluxTransformer2DModel(**FLUX_DEV), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def _reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _timed(step, n: int, device: str) -> list[float]:
    times = []
    for _ in range(n):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _train(job: dict, queue) -> None:
    """One (family, precision, checkpointing): warm up, then time plain LoRA and DUO steps, or
    with ``job["robust"]`` the robust DUO step alone."""
    from bench_step import demo_robust_settings, plain_lora_step

    from duo_unlearn.config import DUOConfig
    from duo_unlearn.pipelines import native_resolution
    from duo_unlearn.testing import random_pair_dataset
    from duo_unlearn.trainer import UnlearningTrainer

    device = job["device"]
    try:
        pipe = build_pipeline(job["family"], job["tiny"], device, DTYPES[job["precision"]])
        if pipe.vae.dtype != torch.float32:
            pipe.vae.to(torch.float32)  # as in training: the VAE encodes the pairs once, in fp32
        size = native_resolution(pipe)
        with tempfile.TemporaryDirectory() as out:
            cfg = DUOConfig(output_dir=out, train_batch_size=job["batch"], max_train_steps=10**6, resolution=size,
                            checkpointing_steps=0, mixed_precision=job["precision"],
                            gradient_checkpointing=job["checkpointing"],
                            **(demo_robust_settings() if job.get("robust") else {}))
            trainer = UnlearningTrainer(cfg, pipe=pipe, dataset=random_pair_dataset(max(job["batch"], 4), size))
            result = {"resolution": size}
            steps = ((("robust", trainer.step),) if job.get("robust")
                     else (("plain", lambda: plain_lora_step(trainer)), ("duo", trainer.step)))
            for name, step in steps:
                _timed(step, job["warmup"], device)
                _reset_peak(device)
                result[name] = statistics.median(_timed(step, job["steps"], device))
                result[f"{name}_peak"] = _peak_gib(device)
        queue.put(result)
    except torch.cuda.OutOfMemoryError:
        queue.put({"error": "OOM"})
    except FloatingPointError:  # the trainer's guard: random weights can overflow in fp16
        queue.put({"error": "non-finite loss"})
    except Exception:  # reported in the table and on stderr, and the run exits non-zero
        queue.put({"error": traceback.format_exc()})


def _generate(job: dict, queue) -> None:
    """Images/s at batch 8 with the pipeline's default guidance, all components in the dtype."""
    from duo_unlearn.pipelines import native_resolution

    device = job["device"]
    try:
        pipe = build_pipeline(job["family"], job["tiny"], device, DTYPES[job["precision"]])
        size = native_resolution(pipe)
        kwargs = dict(prompt=[GEN_PROMPT] * GEN_BATCH, height=size, width=size, output_type="pil")
        if job["family"] == "flux":  # FluxPipeline pads T5 to 512 unless told the tokenizer's length
            kwargs["max_sequence_length"] = min(pipe.tokenizer_2.model_max_length, 512)
        with torch.no_grad():
            pipe(num_inference_steps=1, **kwargs)  # warm-up: kernels, allocator
            _reset_peak(device)
            seconds = _timed(lambda: pipe(num_inference_steps=job["gen_steps"], **kwargs), 1, device)[0]
        queue.put({"seconds": seconds, "peak": _peak_gib(device), "resolution": size})
    except torch.cuda.OutOfMemoryError:
        queue.put({"error": "OOM"})
    except Exception:
        queue.put({"error": traceback.format_exc()})


def _in_own_process(target, job: dict) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(job, queue))
    proc.start()
    proc.join()
    try:
        return queue.get(timeout=10)
    except Empty:
        return {"error": f"process exited with code {proc.exitcode} and no result"}


def _cell(value, fmt: str) -> str:
    return "n/a (CPU)" if value is None else format(value, fmt)


EXPECTED_ERRORS = ("OOM", "non-finite loss")  # results about the configuration, not failures of the script


def _error(result: dict) -> str | None:
    """None, an expected error, or a short note for a failure whose traceback goes to stderr."""
    error = result.get("error")
    if error and error not in EXPECTED_ERRORS:
        print(error, file=sys.stderr)
        return "failed (traceback on stderr)"
    return error


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, from {','.join(FAMILIES)}")
    parser.add_argument("--precisions", default=None,
                        help="comma-separated, from fp32,fp16,bf16 (default fp16,bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--checkpointing", default="off,on", help="gradient checkpointing: off, on or off,on")
    parser.add_argument("--batch", type=int, default=2, help="pairs per step")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    parser.add_argument("--gen-steps", type=int, default=20, help="inference steps per generated batch")
    parser.add_argument("--robust", action=argparse.BooleanOptionalAction, default=True,
                        help="also time robust DUO (the demo's adversarial training), in its own process")
    parser.add_argument("--tiny", action="store_true", help="test-sized pipelines instead of the real sizes")
    parser.add_argument("--allow-cpu", action="store_true", help="with --tiny: run on the CPU (a smoke test)")
    parser.add_argument("--output", default="bench-output/gpu.md")
    args = parser.parse_args(argv)

    if torch.cuda.is_available():
        device, device_name = "cuda", torch.cuda.get_device_name()
    elif args.allow_cpu and args.tiny:
        device, device_name = "cpu", f"CPU ({torch.get_num_threads()} threads)"
    else:
        print("bench-gpu: no CUDA device here, nothing measured (a CPU smoke test: --allow-cpu --tiny)")
        return 0
    families = [f for f in args.families.split(",") if f]
    unknown = set(families) - set(FAMILIES)
    if unknown:
        parser.error(f"unknown families {sorted(unknown)}; choose from {','.join(FAMILIES)}")
    precisions = (args.precisions or ("fp16,bf16" if device == "cuda" else "fp32")).split(",")
    if set(precisions) - set(PRECISIONS):
        parser.error(f"unknown precisions {sorted(set(precisions) - set(PRECISIONS))}; choose from fp32,fp16,bf16")
    checkpointing = [{"off": False, "on": True}[c] for c in args.checkpointing.split(",")]

    train_rows, gen_rows, failed = [], [], False
    for family in families:
        for precision in precisions:
            base = dict(family=family, precision=PRECISIONS[precision], tiny=args.tiny, device=device)
            for ckpt in checkpointing:
                job = dict(base, checkpointing=ckpt, batch=args.batch, steps=args.steps, warmup=args.warmup)
                r = _in_own_process(_train, job)
                error = _error(r)
                failed |= bool(error) and error not in EXPECTED_ERRORS
                robust = _in_own_process(_train, dict(job, robust=True)) if args.robust and not error else {}
                robust_error = _error(robust) if robust else "not run (--no-robust)"  # unused when error
                failed |= bool(robust) and bool(robust_error) and robust_error not in EXPECTED_ERRORS
                head = f"| {family} | {precision} | {'on' if ckpt else 'off'} | {args.batch} |"
                if error:
                    train_rows.append(head + f" {error} |" * 10)
                else:
                    cells = [r["resolution"], f"{r['plain']:.4g}", f"{r['duo']:.4g}", f"{r['duo'] / r['plain']:.2f}",
                             f"{args.batch / r['duo']:.3g}", _cell(r["plain_peak"], ".1f"), _cell(r["duo_peak"], ".1f")]
                    cells += [robust_error] * 3 if robust_error else [
                        f"{robust['robust']:.4g}", f"{robust['robust'] / r['duo']:.2f}",
                        _cell(robust["robust_peak"], ".1f")]
                    train_rows.append(head + "".join(f" {c} |" for c in cells))
                print(train_rows[-1], flush=True)
            r = _in_own_process(_generate, dict(base, gen_steps=args.gen_steps))
            error = _error(r)
            failed |= bool(error) and error not in EXPECTED_ERRORS
            head = f"| {family} | {precision} | {GEN_BATCH} | {args.gen_steps} |"
            if error:
                gen_rows.append(head + f" {error} |" * 4)
            else:
                gen_rows.append(head + f" {r['resolution']} | {r['seconds']:.4g} | {GEN_BATCH / r['seconds']:.3g} |"
                                f" {_cell(r['peak'], '.1f')} |")
            print(gen_rows[-1], flush=True)

    import diffusers

    size = "test-sized (--tiny)" if args.tiny else "real-size"
    text = "\n".join([
        f"# DUO on {size} architectures, random weights: {device_name}",
        "",
        f"torch {torch.__version__}, diffusers {diffusers.__version__}; median of {args.steps} timed steps after "
        f"{args.warmup} warm-up steps per variant, each configuration in its own process.",
        "",
        "## Training step (DUO vs plain LoRA)",
        "",
        "| family | precision | gradient checkpointing | pairs/step | resolution | plain LoRA step (s) "
        "| DUO step (s) | DUO / plain | pairs/s | peak GiB (plain) | peak GiB (DUO) | robust DUO step (s) "
        "| robust / DUO | peak GiB (robust) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *train_rows,
        "",
        "- plain LoRA: the ordinary diffusion loss on the same unsafe, safe and zero latents (one forward, "
        "one backward); DUO adds one no-grad reference forward, so its floor is 4/3.",
        "- pairs/s = pairs per step / DUO step. Peak: torch.cuda.max_memory_allocated during the timed steps "
        "(frozen weights, text encoders, LoRA optimiser state included).",
        "- robust DUO: the demo's adversarial training (one adversarial conditioning per pair, 4 adversary "
        "steps of a forward and backward on the unsafe rows, the preference under it), in its own process.",
        "",
        f"## Generation (batch {GEN_BATCH}, the pipeline's default guidance)",
        "",
        "| family | precision | batch | steps | resolution | s/batch | images/s | peak GiB |",
        "|---|---|---|---|---|---|---|---|",
        *gen_rows,
        "",
    ])
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
