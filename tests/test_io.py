import errno

import pytest
from PIL import Image

from duo_unlearn.io import atomic_path, atomic_write_text, load_image, read_jsonl


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_full_disk_is_named_and_leaves_nothing(tmp_path):
    target = tmp_path / "weights.safetensors"
    with pytest.raises(OSError, match="no space left.*weights.safetensors") as info:
        with atomic_path(target):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_load_image_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match="corrupt.*bad.png"):
        load_image(tmp_path / "bad.png")
    Image.new("RGB", (10, 12)).save(tmp_path / "ok.png")
    with pytest.raises(ValueError, match="ok.png is 10x12, expected 64x64"):
        load_image(tmp_path / "ok.png", 64)


def test_read_jsonl_names_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n\n{oops\n')
    with pytest.raises(ValueError, match="m.jsonl:3"):
        read_jsonl(path)


def test_safetensors_bytes_do_not_depend_on_metadata_order(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from duo_unlearn.io import canonicalize_safetensors_header

    tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(5)}
    save_file(tensors, str(tmp_path / "x.safetensors"), metadata={"format": "pt", "z": '{"k": 1, "a": [2]}'})
    save_file(tensors, str(tmp_path / "y.safetensors"), metadata={"z": '{"a": [2], "k": 1}', "format": "pt"})
    for name in ("x", "y"):
        canonicalize_safetensors_header(tmp_path / f"{name}.safetensors")
    assert (tmp_path / "x.safetensors").read_bytes() == (tmp_path / "y.safetensors").read_bytes()
    loaded = load_file(tmp_path / "x.safetensors")
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
