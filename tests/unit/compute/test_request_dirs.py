"""Request directories on a real file system: private, never followed out of, removed without following
what a function planted in them."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest

from fnplane.compute.worker.progress import ProgressWatch, extra_files
from fnplane.compute.worker.request_dirs import RequestDirError, RequestRoot


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_directories_are_private_and_only_plain_names_are_accepted(tmp_path: Path) -> None:
    root = RequestRoot(str(tmp_path / "requests"))
    rid = str(uuid.uuid4())
    dirs = root.create(rid)
    try:
        assert _mode(root.path) == _mode(f"{root.path}/{rid}") == 0o700
        assert _mode(dirs.output_path) == _mode(dirs.asset_path) == 0o700
        for bad in ("../escape", "..", "a/b", "", ".hidden"):
            with pytest.raises(RequestDirError):
                root.create(bad)
            with pytest.raises(RequestDirError):
                dirs.create_asset(bad)
    finally:
        dirs.close()
        root.remove(rid)
    assert not (tmp_path / "escape").exists()
    assert os.listdir(root.path) == []


def test_planted_links_and_fifos_are_never_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text('{"progress": 99, "partialResponse": "the secret"}')
    outside = tmp_path / "outside"
    outside.mkdir()
    root = RequestRoot(str(tmp_path / "requests"))
    rid = str(uuid.uuid4())
    dirs = root.create(rid)
    output = Path(dirs.output_path)
    (output / "result.bin").write_bytes(b"ok")
    (output / "leak").symlink_to(secret)
    (output / "progress").symlink_to(secret)
    os.mkfifo(output / "fifo")
    asset = str(uuid.uuid4())
    (Path(dirs.asset_path) / asset).symlink_to(outside / "written-through")
    try:
        assert extra_files(dirs) == ["result.bin"]
        assert dirs.open_output("leak") is None and dirs.open_output("fifo") is None
        assert ProgressWatch(dirs).poll() is False  # a linked progress file is not read
        with pytest.raises(FileExistsError):  # an asset never goes through a planted name
            dirs.create_asset(asset)
    finally:
        dirs.close()
    # the whole request directory replaced by a link to a directory outside: removing it removes the
    # link, never what it points to
    (outside / "keep").write_text("keep")
    os.rename(f"{root.path}/{rid}", tmp_path / "moved")
    os.symlink(outside, f"{root.path}/{rid}")
    root.remove(rid)
    assert (outside / "keep").read_text() == "keep" and not (outside / "written-through").exists()
    assert os.listdir(root.path) == []


def test_shared_request_dirs_are_open_to_the_function_s_own_user(tmp_path: Path) -> None:
    """A container runs its image's user: its request directories are 0777 and assets 0644 (the root
    lies in the agent's private state dir); by default they stay 0700 / 0600."""
    for shared, dir_mode, file_mode in ((True, 0o777, 0o644), (False, 0o700, 0o600)):
        root = RequestRoot(str(tmp_path / f"root-{shared}"), shared=shared)
        request = root.create(str(uuid.uuid4()))
        with request.create_asset(str(uuid.uuid4())) as asset:
            asset.write(b"x")
        assert stat.S_IMODE(os.stat(root.path).st_mode) == dir_mode
        assert stat.S_IMODE(os.stat(request.output_path).st_mode) == dir_mode
        assert stat.S_IMODE(os.stat(request.asset_path).st_mode) == dir_mode
        [name] = os.listdir(request.asset_path)
        assert stat.S_IMODE(os.stat(os.path.join(request.asset_path, name)).st_mode) == file_mode
        request.close()
        root.close()
