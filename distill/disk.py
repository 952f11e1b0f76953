"""On-disk caches: names versioned by the files they were made from, removal of outdated versions, a
check that an array on disk is whole, and atomic JSON writes."""
from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)`, then rename tmp to `path`: a reader never sees half a file, a crash or a full disk
    never replaces a finished one, and concurrent writers (DDP ranks, parallel runs sharing a cache) never
    share a temporary file (its name holds the process id)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def reserved_npy(path: Path, shape: Sequence[int], dtype) -> np.memmap:
    """A new .npy array at `path`, memory-mapped for writing, with all its disk blocks reserved now. A
    mapping's writes land on disk later, and a full disk then kills the process with SIGBUS; reserving
    first turns that into an ENOSPC OSError here (one line from `distill.entry.run`) and no file left."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))
    try:
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, array.offset + array.nbytes)
    except OSError as err:
        del array
        Path(path).unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror, str(path)) from err
    return array


@contextmanager
def locked(path: Path):
    """An exclusive lock on the file `path` (created if missing) while the block runs: one builder per cache,
    across runs and DDP ranks, the others waiting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=str) + "\n"))


def cache_name(kind: str, files: Sequence[Path], digest=None) -> str:
    """`<kind>-<what>-<version>`: `cache_path`'s name, computed from the files alone (no disk is touched)."""
    what, version = digest or hashlib.sha256(), hashlib.sha256()
    real_dir = functools.cache(os.path.realpath)  # a folder's links resolved once, not once per file
    for f in files:
        st = os.lstat(f)
        if stat.S_ISLNK(st.st_mode):  # a file that is itself a link (a split made of links): its target's
            path, st = os.path.realpath(f), os.stat(f)
        else:
            head, tail = os.path.split(os.path.abspath(f))
            path = os.path.join(real_dir(head), tail)
        what.update(f"{path}\n".encode())
        version.update(f"{st.st_size}|{st.st_mtime_ns}\n".encode())
    return f"{kind}-{what.hexdigest()[:12]}-{version.hexdigest()[:12]}"


def cache_path(root: str | Path, kind: str, files: Sequence[Path], digest=None, suffix: str = "") -> Path:
    """`root/<kind>-<what>-<version><suffix>` for a cache made from `files`: <what> hashes their real paths
    (symlinks followed: two clones whose ../shared links to one data folder share its caches) after
    whatever `digest` already holds (everything else the cache depends on), <version> their sizes and
    mtimes, so a changed, moved or re-copied file changes the name.

    While no cache of this name exists, those of the same <what> and another <version> are deleted: they
    were made from files that have changed since, and no run can hit them again (re-copying a data folder
    used to leave gigabytes behind). A run that still has one open keeps reading it: unlinking removes the
    name, not the file."""
    current = cache_name(kind, files, digest)
    stem = current[: current.rindex("-") + 1]
    path = Path(root) / f"{current}{suffix}"
    if not path.exists():
        for stale in Path(root).glob(f"{stem}*"):
            if not stale.name.startswith(current):
                log.info("removing %s: made from files that have changed since", stale)
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)  # (DDP ranks may race to it)
                else:
                    stale.unlink(missing_ok=True)
    return path


def npy_damage(path: Path, shape: Sequence[int] | None = None, dtype=None, rows: int | None = None) -> str | None:
    """Why the .npy array at `path` cannot be read as a finished cache (None: it is whole): an unreadable
    header, a shape, dtype or row count other than expected, or a file size that disagrees with its header
    (cut short by a full disk or a crash, or grown). A damaged cache is rebuilt, never read as garbage."""
    try:
        array = np.load(path, mmap_mode="r")  # (a file shorter than its header says fails to map)
    except (OSError, ValueError, EOFError) as err:
        return f"unreadable: {err}"
    if shape is not None and tuple(array.shape) != tuple(shape):
        return f"shape {tuple(array.shape)}, expected {tuple(shape)}"
    if rows is not None and array.shape[0] != rows:
        return f"{array.shape[0]} rows, expected {rows}"
    if dtype is not None and array.dtype != np.dtype(dtype):
        return f"dtype {array.dtype}, expected {np.dtype(dtype)}"
    if os.path.getsize(path) != array.offset + array.nbytes:
        return f"{os.path.getsize(path)} bytes, expected {array.offset + array.nbytes}"
    return None
