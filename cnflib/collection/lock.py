"""One run at a time per output folder: an exclusive lock on ``<folder>/.lock``.

The runner and the sweep hold it while they write into a folder, so a second run on the same folder
stops at once with a message naming the holder instead of deleting the first one's points or
merging its metrics. The lock is the operating system's (``flock``): it is released when the holder
exits, even when it is killed, so it never goes stale.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator, Union

LOCK_NAME = ".lock"


class FolderLocked(RuntimeError):
    """Another process holds the output folder's lock."""


@contextlib.contextmanager
def folder_lock(folder: Union[str, Path]) -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if missing) for the ``with`` block; yields the folder.

    Raises FolderLocked naming the holder (pid, host, command, start time) if another process has it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_NAME, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise FolderLocked(f"the output folder {folder} is in use by {holder}: wait for that run to finish, "
                           "or give this one another output folder (--out / --output)") from None
    try:
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv) or 'python'}, since {started})")
        handle.flush()
        yield folder
    finally:
        handle.truncate(0)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
