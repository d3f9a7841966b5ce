"""The one atomic writer: complete file or previous content, never a partial file or a stray temp file."""
from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from pointformer.io.atomic import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_writes_create_parents_and_replace_content(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    assert atomic_write_text(target, "first\n") == target
    atomic_write_text(target, "second\n")
    assert target.read_text() == "second\n"
    atomic_write_bytes(tmp_path / "x.bin", b"\x00\x01")
    assert (tmp_path / "x.bin").read_bytes() == b"\x00\x01"
    atomic_write_json(tmp_path / "x.json", {"a": [1, 2], "nan": float("nan")})
    text = (tmp_path / "x.json").read_text()
    assert text.endswith("\n") and json.loads(text)["a"] == [1, 2]
    atomic_write(tmp_path / "arr.npz", lambda f: np.savez(f, v=np.arange(3)))
    assert np.load(tmp_path / "arr.npz")["v"].tolist() == [0, 1, 2]
    assert _leftovers(tmp_path) == [] and _leftovers(target.parent) == []


def test_a_failing_write_keeps_the_previous_file_and_removes_the_temp_file(tmp_path):
    target = tmp_path / "keep.txt"
    atomic_write_text(target, "good\n")

    def explode(f):
        f.write(b"half a fi")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, explode)
    assert target.read_text() == "good\n"
    assert _leftovers(tmp_path) == []
    with pytest.raises(TypeError):  # not serialisable: raised before the file is touched
        atomic_write_json(target, {"x": object()})
    assert target.read_text() == "good\n" and _leftovers(tmp_path) == []


def test_the_data_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    atomic_write_text(tmp_path / "f.txt", "x")
    assert calls[:2] == ["fsync", "replace"]  # the file's data, then the rename (then, where possible, the folder)


def test_files_get_the_usual_permissions_not_mkstemps_0600(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = atomic_write_text(tmp_path / "shared.txt", "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
