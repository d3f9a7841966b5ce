"""The checkpoint file format: stamped, atomic, read with weights_only=True, defects named."""
from __future__ import annotations

import pytest
import torch

from pointformer.io.checkpoint import FORMAT, VERSION, CheckpointError, load_checkpoint, write_checkpoint


def _payload():
    return {"model": {"w": torch.arange(3.0)}, "step": 7, "epoch": 1, "config": "name: x\n"}


def test_write_then_load(tmp_path):
    path = write_checkpoint(tmp_path / "ckpt" / "a.pt", _payload())
    payload = load_checkpoint(path)
    assert payload["format"] == FORMAT and payload["version"] == VERSION and payload["step"] == 7
    assert torch.equal(payload["model"]["w"], torch.arange(3.0))
    assert [p.name for p in path.parent.iterdir()] == ["a.pt"]  # no temporary file left


def test_defects_are_checkpoint_errors_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match="missing \\['config'\\]"):
        write_checkpoint(tmp_path / "x.pt", {k: v for k, v in _payload().items() if k != "config"})
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    good = write_checkpoint(tmp_path / "good.pt", _payload())
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cut.pt.*corrupt or truncated"):
        load_checkpoint(cut)
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="foreign.pt: not a pointformer checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({**_payload(), "format": FORMAT, "version": VERSION + 1}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="version"):
        load_checkpoint(tmp_path / "new.pt")


def test_code_in_a_checkpoint_is_never_run(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({**_payload(), "format": FORMAT, "version": VERSION, "extra": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(tmp_path / "evil.pt")
