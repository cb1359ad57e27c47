"""bridge.datafiles: the one atomic write (files and folders) and the cached TOML reader."""

import os

import pytest

from bridge import datafiles
from bridge.datafiles import AtomicFile, atomic_dir, atomic_write, read_toml


def test_atomic_write_writes_text_and_bytes_and_replaces_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write(path, "café\n")
    assert path.read_bytes() == "café\n".encode()
    atomic_write(path, "café\n", encoding="latin-1", fsync=False)
    assert path.read_bytes() == b"caf\xe9\n"
    atomic_write(str(path), b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert os.listdir(tmp_path) == ["out.txt"]  # no temporary file left


def test_atomic_file_appears_whole_when_the_block_ends_and_not_at_all_when_it_raises(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    with AtomicFile(path) as file:
        file.write("café\r\n")  # written as given: no newline translation
        file.write("2\n")
        assert path.read_text() == "old\n"  # the old file stands until the end
        assert len(os.listdir(tmp_path)) == 2
    assert path.read_bytes() == "café\r\n2\n".encode()
    with pytest.raises(KeyboardInterrupt), AtomicFile(path) as file:
        file.write("half a run\n")
        raise KeyboardInterrupt
    assert path.read_bytes() == "café\r\n2\n".encode() and os.listdir(tmp_path) == ["out.jsonl"]
    with pytest.raises(FileNotFoundError, match=f"folder {tmp_path / 'missing'} does not exist"):
        AtomicFile(tmp_path / "missing" / "out.jsonl")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    path.write_text("old\n")

    def crash(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(datafiles.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, "new\n")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["out.txt"]


def test_a_missing_folder_is_a_clear_error_and_is_not_created(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        atomic_write(tmp_path / "missing" / "out.txt", "x")
    assert error.value.strerror == f"folder {tmp_path / 'missing'} does not exist"
    assert not (tmp_path / "missing").exists()


def test_temporary_names_are_hidden_unique_and_end_in_tmp(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(source, target):
        seen.append(os.path.basename(source))
        real_replace(source, target)

    monkeypatch.setattr(datafiles.os, "replace", spy)
    atomic_write(tmp_path / "a.txt", "1")
    atomic_write(tmp_path / "a.txt", "2")
    assert len(set(seen)) == 2
    assert all(name.startswith(f".a.txt.{os.getpid()}-") and name.endswith(".tmp") for name in seen)


def test_atomic_dir_puts_a_whole_folder_in_place_of_the_old_one(tmp_path):
    final = tmp_path / "bridge"

    def write(folder):
        (folder / "sub").mkdir()
        (folder / "sub" / "weights.bin").write_bytes(b"w")
        (folder / "bridge.json").write_text("{}")

    assert atomic_dir(final, write) == final
    assert sorted(p.relative_to(final).as_posix() for p in final.rglob("*")) == ["bridge.json", "sub",
                                                                               "sub/weights.bin"]
    atomic_dir(str(final), lambda folder: (folder / "new.txt").write_text("new"), fsync=False)
    assert [p.name for p in final.iterdir()] == ["new.txt"]  # the old folder is gone whole
    assert os.listdir(tmp_path) == ["bridge"]


def test_atomic_dir_keeps_the_old_folder_when_writing_fails_and_clears_stale_temporaries(tmp_path):
    final = tmp_path / "bridge"
    final.mkdir()
    (final / "old.txt").write_text("old")
    stale = tmp_path / ".bridge.123-abc.tmp"  # left by a killed writer
    stale.mkdir()

    def write(folder):
        (folder / "half.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_dir(final, write)
    assert [p.name for p in final.iterdir()] == ["old.txt"]
    assert os.listdir(tmp_path) == ["bridge"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_dir(tmp_path / "missing" / "bridge", write)


def test_read_toml_caches_the_parsed_file_and_sees_an_edit(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PROMPT_BRIDGE_NO_CACHE", raising=False)
    path = tmp_path / "data.toml"
    path.write_text('a = 1\n[t]\nb = ["x"]\n')
    assert read_toml(path) == {"a": 1, "t": {"b": ["x"]}}
    cached = list((tmp_path / "cache" / "prompt-bridge").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".marshal"  # written whole: no temporary left
    assert read_toml(path) == {"a": 1, "t": {"b": ["x"]}}  # from the cache
    path.write_text("a = 22\n")
    assert read_toml(path) == {"a": 22}


def test_atomic_dir_merge_keeps_what_the_folder_held_and_moves_the_new_files_in(tmp_path):
    final = tmp_path / "out"
    (final / "sub").mkdir(parents=True)
    (final / "mine.txt").write_text("mine")
    (final / "sub" / "a.txt").write_text("old a")

    def write(folder):
        (folder / "sub").mkdir()
        (folder / "sub" / "a.txt").write_text("new a")
        (folder / "new" / "deep").mkdir(parents=True)
        (folder / "new" / "deep" / "b.txt").write_text("b")

    atomic_dir(final, write, merge=True, fsync=False)

    assert sorted(p.relative_to(final).as_posix() for p in final.rglob("*") if p.is_file()) == [
        "mine.txt", "new/deep/b.txt", "sub/a.txt"]
    assert (final / "sub" / "a.txt").read_text() == "new a" and os.listdir(tmp_path) == ["out"]


def test_stale_temporaries_go_only_when_their_writer_is_gone(tmp_path):
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    names = {f".r.md.{gone.pid}-aa.tmp": False, f".r.md.{os.getpid()}-bb.tmp": True, ".r.md.x-cc.tmp": True,
             f".other.md.{gone.pid}-dd.tmp": True, f".r.md.{10**30}-ee.tmp": False}
    for name in names:
        (tmp_path / name).write_text("half")

    datafiles.remove_stale_temporaries(tmp_path / "r.md")

    assert sorted(os.listdir(tmp_path)) == sorted(name for name, kept in names.items() if kept)


def test_file_set_knows_a_file_by_any_path(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "hard.txt").hardlink_to(tmp_path / "a.txt")
    (tmp_path / "link.txt").symlink_to(tmp_path / "a.txt")
    files = datafiles.FileSet([tmp_path / "a.txt", tmp_path / "missing.txt"])

    for path in ("a.txt", "hard.txt", "link.txt", "missing.txt", "sub/../a.txt"):
        assert files.holds(tmp_path / path), path
    assert not files.holds(tmp_path / "b.txt")
