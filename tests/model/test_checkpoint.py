"""Safe loading, eqv2's own checkpoint format and atomic writes (eqv2.model.checkpoint)."""

from __future__ import annotations

import builtins
import fractions
import os
import pickle
import re
from pathlib import Path

import pytest
import torch

import eqv2
from eqv2.model.checkpoint import (
    FORMAT_NAME,
    FORMAT_VERSION,
    CheckpointError,
    CorruptCheckpointError,
    UnsafeCheckpointError,
    atomic_save,
    load_checkpoint,
    safe_load,
    save_checkpoint,
)
from eqv2.model.config import EquiformerV2Config

SMALL = {
    "num_layers": 2,
    "sphere_channels": 32,
    "lmax_list": [4],
    "mmax_list": [2],
    "max_radius": 6.0,
    "norm_type": "layer_norm_sh",
}


class _SystemCall:
    """Unpickling this runs a shell command (the classic malicious checkpoint)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _ExecCall:
    """Unpickling this runs Python code through the builtin exec."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (builtins.exec, (self.code,))


def _state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "sphere_embedding.weight": torch.randn(90, 32, generator=g),
        "blocks.0.ga.alpha_dot": torch.randn(2, 16, generator=g),
        "energy_block.so3_linear_1.bias": torch.randn(64, generator=g, dtype=torch.float64),
    }


# -- safe_load ------------------------------------------------------------------------------------


def test_safe_load_reads_tensors_and_plain_values(tmp_path: Path) -> None:
    obj = {"a": torch.arange(5), "b": [1, 2.5, "x", None, True], "c": {"d": torch.ones(2, 2)}}
    torch.save(obj, tmp_path / "ok.pt")
    out = safe_load(tmp_path / "ok.pt")
    assert torch.equal(out["a"], obj["a"]) and out["b"] == obj["b"]
    assert torch.equal(out["c"]["d"], obj["c"]["d"])


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch_save_os_system", "raw_pickle_exec"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    if how == "torch_save_os_system":
        torch.save({"state_dict": {}, "payload": _SystemCall(f"touch {marker}")}, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump({"payload": _ExecCall(f"open({str(marker)!r}, 'w').close()")}, handle)

    with pytest.raises(UnsafeCheckpointError) as info:
        safe_load(path)
    assert not marker.exists(), "loading the file executed its payload"
    message = str(info.value)
    assert str(path) in message
    assert "trust_pickle=True" in message and "re-save" in message
    assert isinstance(info.value, ValueError)
    if how == "torch_save_os_system":
        assert "system" in message  # names the refused global (posix.system / nt.system)
        assert any("system" in g for g in info.value.rejected)


def test_trust_pickle_loads_harmless_non_tensor_objects(tmp_path: Path) -> None:
    path = tmp_path / "fraction.pt"
    torch.save({"ratio": fractions.Fraction(1, 3), "w": torch.ones(3)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"fractions\.Fraction"):
        safe_load(path)
    out = safe_load(path, trust_pickle=True)
    assert out["ratio"] == fractions.Fraction(1, 3)


def test_missing_and_directory_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        safe_load(tmp_path / "nope.pt")
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        safe_load(tmp_path)


@pytest.mark.parametrize("kind", ["truncated", "empty", "text", "garbage"])
def test_corrupt_files_give_clear_errors(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.pt"
    if kind == "truncated":
        torch.save({"w": torch.randn(1000)}, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("energy: -1.0\nforces: []\n")
    else:
        path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CorruptCheckpointError) as info:
        safe_load(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, CheckpointError)


def _flip_a_bit_in_tensor_data(path: Path, member_suffix: str = "data/0") -> None:
    """Flip one bit in the middle of a stored tensor's bytes (the zip entry's CRC then fails)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(member_suffix))
    raw = bytearray(path.read_bytes())
    name_len = int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.compress_size // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def test_flipped_bit_in_tensor_data_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    save_checkpoint(path, state_dict=_state_dict(), config=SMALL)
    load_checkpoint(path)  # intact: loads
    _flip_a_bit_in_tensor_data(path)
    loaded = safe_load(path, verify=False)  # what torch.load alone does: loads changed weights
    assert isinstance(loaded, dict)
    with pytest.raises(CorruptCheckpointError, match=r"do not match their CRC-32 checksum") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "data/0" in str(info.value)
    with pytest.raises(CorruptCheckpointError, match="CRC-32"):
        eqv2.load_model(path)


def test_git_lfs_pointer_is_named(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_text(
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
        "size 126475437\n"
    )
    with pytest.raises(CorruptCheckpointError, match="is a Git LFS pointer .*git lfs pull"):
        load_checkpoint(path)


# -- eqv2 checkpoints -----------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    sd = _state_dict()
    refs = torch.linspace(-1, 1, 119)
    norms = {"energy": {"mean": -0.75, "std": 2.5}, "forces": {"mean": 0.0, "std": 2.5}}
    extra = {"epoch": 3, "metrics": {"mae": 0.1}, "ema": [torch.ones(2)], "note": None}
    path = save_checkpoint(
        tmp_path / "sub" / "model.pt",
        state_dict=sd,
        config=SMALL,
        normalizers=norms,
        element_references=refs,
        extra=extra,
    )
    assert path == tmp_path / "sub" / "model.pt"
    raw = torch.load(path, weights_only=True)  # plain types + tensors only
    assert raw["format"] == FORMAT_NAME and raw["format_version"] == FORMAT_VERSION
    assert raw["eqv2_version"] == eqv2.__version__

    ckpt = load_checkpoint(path)
    assert ckpt["config"] == SMALL
    assert list(ckpt["state_dict"]) == list(sd)
    for key, value in sd.items():
        assert ckpt["state_dict"][key].dtype == value.dtype
        assert torch.equal(ckpt["state_dict"][key], value)
    assert ckpt["normalizers"] == norms
    assert torch.equal(ckpt["element_references"], refs)
    assert ckpt["extra"]["metrics"] == {"mae": 0.1} and torch.equal(
        ckpt["extra"]["ema"][0], torch.ones(2)
    )
    assert EquiformerV2Config.from_dict(ckpt["config"]).sphere_channels == 32


def test_save_accepts_config_object_and_optional_parts(tmp_path: Path) -> None:
    cfg = EquiformerV2Config.from_dict(SMALL)
    path = save_checkpoint(tmp_path / "m.pt", state_dict=_state_dict(), config=cfg)
    ckpt = load_checkpoint(path)
    assert EquiformerV2Config.from_dict(ckpt["config"]) == cfg
    assert ckpt["normalizers"] is None and ckpt["element_references"] is None
    assert ckpt["extra"] == {}


def test_saved_views_do_not_drag_their_whole_storage(tmp_path: Path) -> None:
    big = torch.zeros(1_000_000)
    path = save_checkpoint(
        tmp_path / "m.pt", state_dict={"blocks.0.ga.alpha_dot": big[:32].view(2, 16)}, config=SMALL
    )
    assert path.stat().st_size < 100_000


def test_save_rejects_non_plain_values_and_unknown_config_keys(tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "m.pt"
    with pytest.raises(TypeError, match=r"extra\['metrics'\]\['mae'\].*numpy"):
        save_checkpoint(
            path, state_dict=_state_dict(), config=SMALL, extra={"metrics": {"mae": np.float64(1)}}
        )
    with pytest.raises(ValueError, match="sphere_chanels"):
        save_checkpoint(path, state_dict=_state_dict(), config={**SMALL, "sphere_chanels": 8})
    assert not path.exists() and list(tmp_path.iterdir()) == []


def _write_raw(path: Path, **overrides) -> Path:
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "eqv2_version": "0.1.0",
        "config": dict(SMALL),
        "state_dict": _state_dict(),
        "normalizers": None,
        "element_references": None,
        "extra": {},
    }
    payload.update(overrides)
    torch.save({k: v for k, v in payload.items() if v is not ...}, path)
    return path


def test_load_rejects_newer_format_version(tmp_path: Path) -> None:
    path = _write_raw(tmp_path / "new.pt", format_version=FORMAT_VERSION + 1, eqv2_version="9.0")
    with pytest.raises(CheckpointError, match=r"version 2.*Upgrade eqv2") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_load_rejects_wrong_files(tmp_path: Path) -> None:
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(2)}, plain)
    with pytest.raises(CheckpointError, match="not an eqv2 checkpoint"):
        load_checkpoint(plain)
    fairchem_like = tmp_path / "fc.pt"
    torch.save({"state_dict": {"module.x": torch.ones(1)}, "config": {"model": "x"}}, fairchem_like)
    with pytest.raises(CheckpointError, match="read_fairchem_checkpoint"):
        load_checkpoint(fairchem_like)
    with pytest.raises(CheckpointError, match="missing entries"):
        load_checkpoint(_write_raw(tmp_path / "partial.pt", extra=...))
    with pytest.raises(CheckpointError, match="format_version"):
        load_checkpoint(_write_raw(tmp_path / "badver.pt", format_version="1"))


def test_load_names_unknown_config_key(tmp_path: Path) -> None:
    path = _write_raw(tmp_path / "m.pt", config={**SMALL, "num_layer": 3})
    with pytest.raises(CheckpointError, match="'num_layer'") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "num_layers" in str(info.value)


# -- atomic writes --------------------------------------------------------------------------------


def test_failed_save_keeps_previous_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(tmp_path / "model.pt", state_dict=_state_dict(), config=SMALL)
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial garbage")  # simulate a crash halfway through writing
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, state_dict={"x": torch.zeros(3)}, config=SMALL, extra={"epoch": 99})
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    assert list(load_checkpoint(path)["state_dict"]) == list(_state_dict())


def test_atomic_save_interrupt_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(obj, f, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"a": 1}, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


def test_a_crashed_save_leaves_a_temporary_the_next_save_removes(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys
    import time

    path = tmp_path / "checkpoint.pt"
    # a save killed (-9) halfway: its named temporary stays behind
    code = (
        "import os, torch, sys; from eqv2.model import checkpoint as c\n"
        "def dying(obj, f, *a, **k): f.write(b'x' * 4096); f.flush(); os._exit(9)\n"
        "torch.save = dying\n"
        f"c.atomic_save({{'w': torch.zeros(3)}}, {str(path)!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False, timeout=120,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    (crashed,) = [p for p in tmp_path.iterdir() if p.name.startswith(".checkpoint.pt.")]
    assert crashed.stat().st_size == 4096 and not path.exists()
    host = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname().split(".")[0])
    keep = [
        tmp_path / ".checkpoint.pt.abcd1234.tmp",  # untagged (older eqv2), recent: maybe live
        tmp_path / f".checkpoint.pt.abcd1234.eqv2-{host}-{os.getpid()}.tmp",  # a live writer
        tmp_path / ".checkpoint.pt.abcd1234.eqv2-otherhost-1.tmp",  # cannot tell: kept
        tmp_path / ".checkpoint.pt.notes.tmp",  # not an eqv2 name
        tmp_path / ".other.pt.abcd1234.tmp",  # another target
    ]
    old_untagged = tmp_path / ".checkpoint.pt.zzzz9999.tmp"
    for p in [*keep, old_untagged]:
        p.write_bytes(b"data")
    past = time.time() - 3600
    os.utime(old_untagged, (past, past))
    os.utime(keep[-1], (past, past))
    atomic_save({"w": torch.ones(2)}, path)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["checkpoint.pt", *(p.name for p in keep)])
    assert safe_load(path)["w"].tolist() == [1.0, 1.0]


def test_load_model_reads_an_eqv2_file_once_and_takes_it_as_a_dict(tmp_path, monkeypatch):
    from eqv2.model import EquiformerV2, Potential, loading
    from tests.tiny import tiny

    torch.manual_seed(0)
    potential = Potential(EquiformerV2(EquiformerV2Config.from_dict(tiny())))
    path = eqv2.save_model(potential, tmp_path / "m.pt")
    reads = []
    real = loading.safe_load
    monkeypatch.setattr(loading, "safe_load", lambda *a, **k: reads.append(a) or real(*a, **k))
    from_file = eqv2.load_model(path)
    assert len(reads) == 1
    from_dict = eqv2.load_model(real(path))
    for (name, a), b in zip(
        from_file.state_dict().items(), from_dict.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
