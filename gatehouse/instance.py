"""The instance folder and the embedded database: created by whoever needs them first, owner-only.

The SQLite file holds password hashes and `instance/secret_key` signs every token, so neither may be
readable by other users of the machine: the folder is 0700, the files 0600 (SQLite creates its
`-wal` and `-shm` files with the database file's mode).
"""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def private_directory(path: Path, *, tighten: bool = True) -> Path:
    """Create `path` (and missing parents) owner-only; with `tighten`, an existing one becomes 0700 too."""
    path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    if tighten and os.stat(path).st_mode & 0o777 != DIRECTORY_MODE:
        os.chmod(path, DIRECTORY_MODE)
    return path


def owner_only(path: Path) -> None:
    """Make an existing file 0600 (one an older version left readable); a missing one is skipped."""
    try:
        if os.stat(path).st_mode & 0o777 != FILE_MODE:
            os.chmod(path, FILE_MODE)
    except FileNotFoundError:
        pass


def private_file(path: Path) -> None:
    """Create `path` empty when missing, and make it (and its SQLite companions) owner-only."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        owner_only(candidate)


def prepare_sqlite(uri: str, instance_path: Path) -> None:
    """Before SQLite opens a file database: its folder exists and the file is owner-only.

    The instance folder itself is tightened to 0700; any other folder is only created when missing.
    """
    url = make_url(uri)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:" \
            or url.database.startswith("file:"):
        return
    path = Path(url.database).resolve()
    folder = path.parent
    private_directory(folder, tighten=folder == instance_path.resolve())
    private_file(path)
