"""instance/ and the embedded database are created by whatever needs them first, owner-only."""
from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from gatehouse import create_app
from gatehouse.config import load_config
from gatehouse.extensions import db
from tests.conftest import BASE_CONFIG
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "a-secret-given-by-the-operator-0123456789"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_without_secret_key_the_instance_folder_database_and_secret_are_owner_only(tmp_path):
    instance = tmp_path / "instance"
    load_config({}, instance)
    assert mode(instance) == 0o700
    assert mode(instance / "secret_key") == 0o600
    assert mode(instance / "gatehouse.db") == 0o600


def test_with_secret_key_the_instance_folder_is_still_created_for_the_database(tmp_path):
    instance = tmp_path / "instance"
    config = load_config({"SECRET_KEY": SECRET}, instance)
    assert config["SECRET_KEY"] == SECRET
    assert mode(instance) == 0o700 and mode(instance / "gatehouse.db") == 0o600
    assert not (instance / "secret_key").exists()


def test_files_an_older_version_left_readable_are_tightened(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    os.chmod(instance, 0o755)
    for name in ("secret_key", "gatehouse.db", "gatehouse.db-wal", "gatehouse.db-shm"):
        (instance / name).write_text("x\n" if name == "secret_key" else "")
        os.chmod(instance / name, 0o644)
    load_config({}, instance)
    assert mode(instance) == 0o700
    for name in ("secret_key", "gatehouse.db", "gatehouse.db-wal", "gatehouse.db-shm"):
        assert mode(instance / name) == 0o600, name


def test_the_write_ahead_log_files_sqlite_creates_are_owner_only(tmp_path):
    path = tmp_path / "data" / "gatehouse.db"  # a folder that does not exist yet
    app = create_app({**BASE_CONFIG, "DATABASE_URL": f"sqlite:///{path}"})
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE probe (x INTEGER)"))
            conn.execute(text("INSERT INTO probe VALUES (1)"))
        assert Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
        for suffix in ("", "-wal", "-shm"):
            assert mode(Path(f"{path}{suffix}")) == 0o600, suffix
        db.engine.dispose()
    assert mode(path.parent) == 0o700


def _fresh_clone(target: Path) -> Path:
    """The files a clone of this tree would have (as they are now) in a new folder, with the shared virtualenv."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    os.symlink((ROOT / ".venv").resolve(), target / ".venv")
    return target


@pytest.mark.slow
def test_a_fresh_clone_with_secret_key_migrates_and_starts_with_make_run(tmp_path):
    clone = _fresh_clone(tmp_path / "clone")
    assert not (clone / "instance").exists()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SECRET_KEY": SECRET, "LOG_LEVEL": "WARNING"}
    upgrade = subprocess.run([str(clone / ".venv/bin/flask"), "--app", "wsgi", "db", "upgrade"], cwd=clone, env=env,
                             capture_output=True, text=True, timeout=120)
    assert upgrade.returncode == 0, upgrade.stderr[-2000:]
    assert mode(clone / "instance") == 0o700 and mode(clone / "instance/gatehouse.db") == 0o600
    assert not (clone / "instance/secret_key").exists()  # the given SECRET_KEY is the one used

    port = free_port()
    log = open(tmp_path / "make-run.log", "w")
    # -o: the shared virtualenv is installed, and its argon2 build made, already; make must not redo
    # either for the copied files (newer than its stamps only because they were just copied).
    process = subprocess.Popen(["make", "-o", ".venv/.installed", "-o", ".venv/.argon2-native", "run"], cwd=clone,
                               env={**env, "PORT": str(port), "WEB_CONCURRENCY": "1"},
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code
            except requests.RequestException:
                time.sleep(0.2)
                continue
            if status == 200:
                break
        assert status == 200, (tmp_path / "make-run.log").read_text()[-2000:]
        register = requests.post(f"http://127.0.0.1:{port}/auth/register", timeout=10,
                                 json={"email": "fresh@example.com", "password": "correct horse battery staple"})
        assert register.status_code == 201, register.text
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
    for suffix in ("", "-wal", "-shm"):
        path = clone / f"instance/gatehouse.db{suffix}"
        if path.exists():
            assert mode(path) == 0o600, suffix
