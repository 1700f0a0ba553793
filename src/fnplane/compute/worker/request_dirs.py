"""Each request's directories on the worker: `<root>/<requestId>/assets` (NVCF-ASSET-DIR, the input
assets) and `<root>/<requestId>/output` (NVCF-LARGE-OUTPUT-DIR: the `progress` file and extra result
files), private (0700; open to every user when the function runs as another user, a container's: the root
lies in the agent's 0700 state dir and only that instance's container mounts it) and never followed
out of.

The root is the instance's request directory (`<state>/requests/<instance>`, made by the backend; the
function's sandbox binds it read-write at the same path, so the header paths are valid inside). The
function may write there, so it may also plant a symlink, a FIFO or a rename. The worker therefore
never resolves a name it did not check: the root is opened once (O_DIRECTORY | O_NOFOLLOW), every later
open is relative to a directory descriptor and uses O_NOFOLLOW, a file is used only when fstat says it
is a regular file, and a request's directory is removed with `shutil.rmtree(dir_fd=...)`, which does
not follow symlinks. Request ids are checked (UUIDs) before a path is built from one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from io import BufferedWriter
from typing import BinaryIO

OUTPUT = "output"
ASSETS = "assets"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO never blocks us
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# one path component, no dots: a request id (UUID) or an asset id (UUID)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class RequestDirError(OSError):
    """A name that is not a plain path component, or a planted file where the worker creates one."""


def _component(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise RequestDirError(f"{name!r} is not a plain file name")
    return name


class RequestDir:
    """The open directories of one request; `close()` when the request ends."""

    def __init__(self, fd: int, output_path: str, asset_path: str, shared: bool = False) -> None:
        self._fd = fd
        self.output_path = output_path
        self.asset_path = asset_path
        self._shared = shared
        self.output_fd = _make_dir(OUTPUT, fd, shared)
        self.asset_fd = _make_dir(ASSETS, fd, shared)

    def create_asset(self, asset_id: str) -> BufferedWriter:
        """A new file for an asset (never an existing name, never through a link)."""
        fd = os.open(_component(asset_id), _CREATE_FLAGS, 0o600, dir_fd=self.asset_fd)
        if self._shared:
            os.fchmod(fd, 0o644)
        return os.fdopen(fd, "wb")

    def output_files(self, skip: str) -> list[str]:
        """The regular files the function left in its output dir (no links, FIFOs or directories)."""
        try:
            with os.scandir(self.output_fd) as entries:
                return sorted(e.name for e in entries if e.name != skip and e.is_file(follow_symlinks=False))
        except OSError:
            return []

    def open_output(self, name: str) -> BinaryIO | None:
        """An output file for reading, or None when it is not (or no longer) a regular file."""
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=self.output_fd)
        except OSError:  # a link (ELOOP), gone, ...
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    def output_mtime_ns(self, name: str) -> int | None:
        """When a regular output file last changed (never through a link)."""
        try:
            st = os.stat(name, dir_fd=self.output_fd, follow_symlinks=False)
        except OSError:
            return None
        return st.st_mtime_ns if stat.S_ISREG(st.st_mode) else None

    def close(self) -> None:
        for fd in (self.output_fd, self.asset_fd, self._fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class RequestRoot:
    """The instance's request directory, opened once; `create()` / `remove()` one request's."""

    def __init__(self, path: str, *, shared: bool = False) -> None:
        # no root given (a worker run by hand): a private temporary one, removed by close()
        self._temporary = not path
        if not path:
            path = tempfile.mkdtemp(prefix="fnplane-requests-")
        os.makedirs(path, mode=0o700, exist_ok=True)
        self.path = path.rstrip("/")
        self._shared = shared
        self._fd = os.open(self.path, _DIR_FLAGS)
        os.fchmod(self._fd, _dir_mode(shared))

    def output_path(self, request_id: str) -> str:
        return f"{self.path}/{request_id}/{OUTPUT}"

    def asset_path(self, request_id: str) -> str:
        return f"{self.path}/{request_id}/{ASSETS}"

    def create(self, request_id: str) -> RequestDir:
        """The request's directories, new (what an earlier delivery left is removed first)."""
        name = _component(request_id)
        self.remove(name)
        fd = _make_dir(name, self._fd, self._shared)
        try:
            return RequestDir(fd, self.output_path(name), self.asset_path(name), self._shared)
        except BaseException:
            os.close(fd)
            raise

    def remove(self, request_id: str) -> None:
        """Remove the request's directory and whatever is in it; a link there is removed, not followed."""
        name = _component(request_id)
        try:
            shutil.rmtree(name, dir_fd=self._fd)
        except FileNotFoundError:
            return
        except NotADirectoryError:
            os.unlink(name, dir_fd=self._fd)
        except OSError:
            # rmtree refuses a symlink ("Cannot call rmtree on a symbolic link")
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                if stat.S_ISLNK(os.stat(name, dir_fd=self._fd, follow_symlinks=False).st_mode):
                    os.unlink(name, dir_fd=self._fd)
                    return
            raise

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
        if self._temporary:
            shutil.rmtree(self.path, ignore_errors=True)


def _dir_mode(shared: bool) -> int:
    return 0o777 if shared else 0o700


def _make_dir(name: str, parent_fd: int, shared: bool = False) -> int:
    os.mkdir(name, 0o700, dir_fd=parent_fd)
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    if shared:
        os.fchmod(fd, 0o777)  # set after creation: the umask never narrows it
    return fd
