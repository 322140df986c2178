"""One writer per feature set at a time: a lease file, ``<set>/_lease.json``, taken at planning,
refreshed at every shard commit and released when the run finishes.

Two runs of the same extract (two schedules close together, a manual run beside the nightly one)
cannot interleave their plans: the second one fails at once with a line naming the holder, and a
rerun after the first has finished finds everything done. A holder that died releases nothing: its
lease is taken over when it has expired (``ttl_s`` after the last commit) or, on the same host, as
soon as its process no longer exists. Works on any pyarrow filesystem (local, S3); on S3 two writers
starting within the same second can both win the write, and the re-read narrows but cannot close that
window (readers still see each id once).
"""
from __future__ import annotations

import os
import socket
import time
import uuid

from ..errors import StoreError
from . import files

DEFAULT_TTL_S = 1800.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lease:
    def __init__(self, fs, set_path: str, token: str | None = None, ttl_s: float = DEFAULT_TTL_S):
        self.fs, self.path, self.token, self.ttl_s = fs, files.join(set_path, "_lease.json"), token, ttl_s

    def holder(self) -> dict | None:
        try:
            obj = files.read_json(self.fs, self.path)
        except (OSError, ValueError):
            return None  # absent, or damaged (what a crash mid-write leaves): free
        return obj if isinstance(obj, dict) and {"token", "host", "pid", "expires"} <= set(obj) else None

    def _free(self, held: dict | None) -> bool:
        if held is None or held["token"] == self.token or held["expires"] < time.time():
            return True
        if held["host"] == socket.gethostname():
            return held["pid"] == os.getpid() or not _alive(int(held["pid"]))
        return False

    def acquire(self) -> str:
        held = self.holder()
        if not self._free(held):
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(held["since"]))
            name = "/".join(self.path.split("/")[-3:-1])  # <dataset>/<set>
            raise StoreError(f"another extract is writing {name} (pid {held['pid']} on "
                             f"{held['host']}, since {since} UTC): run again when it has finished; a dead writer's "
                             f"lease expires {held['expires'] - time.time():.0f} s from now")
        self.token = uuid.uuid4().hex
        now = time.time()
        files.write_json_atomic(self.fs, self.path, {"token": self.token, "host": socket.gethostname(),
                                                     "pid": os.getpid(), "since": now, "expires": now + self.ttl_s})
        if (self.holder() or {}).get("token") != self.token:
            raise StoreError(f"{self.path}: another extract took the lease at the same moment; run again")
        return self.token

    def refresh(self) -> None:
        held = self.holder()
        if self.token and held is not None and held["token"] == self.token:
            files.write_json_atomic(self.fs, self.path, {**held, "expires": time.time() + self.ttl_s})

    def release(self) -> None:
        held = self.holder()
        if self.token and held is not None and held["token"] == self.token:
            files.delete_if_exists(self.fs, self.path)
