"""A throw-away PostgreSQL server for the tests: initdb in a temporary folder, started on a free local port with
trust authentication, stopped and removed afterwards. Under root it runs as the ``postgres`` user (PostgreSQL
refuses root). Skips the test, with its reason, where the server programs are not installed."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager

import pytest


def _program(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server():
    """Yields the URL of a running server's ``postgres`` database (user ``mmhal``, no password)."""
    initdb, pg_ctl = _program("initdb"), _program("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed (Debian: apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is not installed (pip install 'mmhal[postgres]')")
    as_user: list[str] = []
    folder = tempfile.mkdtemp(prefix="mmhal-pg-")
    if os.geteuid() == 0:  # PostgreSQL will not run as root
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder, ignore_errors=True)
            pytest.skip("running as root, and there is no 'postgres' user to run the server as")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(folder, "data"), _free_port()
    try:
        subprocess.run([*as_user, initdb, "-D", data, "-A", "trust", "-U", "mmhal"], check=True,
                       capture_output=True, timeout=120)
        subprocess.run([*as_user, pg_ctl, "-D", data, "-w", "-l", os.path.join(folder, "log"), "-o",
                        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"], check=True,
                       capture_output=True, timeout=120)
        try:
            yield f"postgresql+psycopg://mmhal@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"], capture_output=True,
                           timeout=120)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
