"""File input and output that never leaves a half-written file and names what is wrong.

Every writer goes to a temporary file in the destination folder and renames it into place
(atomic on POSIX), so a crash or a full disk leaves either the old file or none.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as err:
        tmp_path.unlink(missing_ok=True)
        if err.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on the device while writing {path}; nothing was "
                                        "written (free space and re-run: finished files are kept)") from err
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; it replaces ``path`` only when the body succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_save_image(image: Image.Image, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def atomic_save_safetensors(tensors: dict, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        canonicalize_safetensors_header(tmp)
    return Path(path)


def canonicalize_safetensors_header(path: str | Path) -> None:
    """Rewrite a safetensors file's JSON header with sorted keys, in place.

    safetensors writes ``__metadata__`` from a hash map, so a file with two or more metadata
    entries (diffusers' LoRA files have ``format`` and ``lora_adapter_metadata``) comes out
    with its keys in a different order in each process: same tensors, different bytes. Sorted,
    the same weights give the same file, which is what a reproducibility check compares.
    The tensor data and its offsets are untouched; the header is re-padded to 8 bytes."""
    import struct

    path = Path(path)
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    for value in header.values():
        if isinstance(value, dict) and "data_offsets" not in value:  # __metadata__
            for key in value:
                value[key] = _canonical_json_string(value[key])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    if text != raw[8 : 8 + length]:
        path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + length :])


def _canonical_json_string(value: str) -> str:
    """A metadata value that is itself JSON (diffusers' adapter metadata) gets sorted keys too."""
    try:
        return json.dumps(json.loads(value), sort_keys=True, indent=2)
    except (json.JSONDecodeError, TypeError):
        return value


def file_digest(path: str | Path, length: int = 16) -> str:
    """The first ``length`` hex digits of a file's sha256, read in blocks (LoRA files can be large)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def image_files(folder: str | Path) -> list[Path]:
    """The image files directly in ``folder`` (by suffix), sorted by name; the caller checks the folder exists."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_image(path: str | Path, size: int | None = None) -> Image.Image:
    """Open an RGB image, with an error that names the file when it is missing, corrupt or mis-sized."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            image = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"corrupt or unreadable image: {path} ({err})") from err
    if size is not None and image.size != (size, size):
        raise ValueError(f"image {path} is {image.size[0]}x{image.size[1]}, expected {size}x{size}")
    return image


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSON-lines file, naming the file and line of any malformed record."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing file: {path}")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from err
    return records


def to_uint8(images) -> np.ndarray:
    """PIL images, or float arrays in [0, 1], to a uint8 (n, h, w, 3) array."""
    if isinstance(images, np.ndarray):
        arr = images
    else:
        arr = np.stack([np.asarray(img.convert("RGB")) if isinstance(img, Image.Image) else np.asarray(img)
                        for img in images])
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    return arr


def to_signed_tensor(images):
    """PIL images, or a uint8 (n, h, w, 3) array, to a float (n, 3, h, w) tensor in [-1, 1]: what
    the VAE encodes and the perceptual metric compares."""
    import torch

    return torch.from_numpy(to_uint8(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1)
