"""One writer per feature set at a time: a lease file, ``<set>/_lease.json``, taken at planning (and by gc,
fsck --repair and rm), refreshed at every shard commit and released when the run finishes, possibly by
another process than the one that took it (the token travels with the plan).

Taking it is atomic: on a local disk the read-check-write runs under an exclusive ``flock`` of
``<set>/_lease.lock`` (held only for that moment, so it works across processes and containers of one
host); on an object store, which has no lock, the writer waits a moment after writing and reads back:
of writers racing within that moment, only the last one keeps it. A holder that died releases nothing:
its lease is taken over when it expired (``ttl_s`` after its last commit), or at once when it ran on this
machine, in this PID namespace, and its process (same PID and start time) is gone. Holders in another
container of the same host are never judged dead by PID. Values a live holder never writes (wrong
types, an expiry beyond the TTL, NaN) make a damaged lease, treated as free.
"""
from __future__ import annotations

import contextlib
import math
import os
import socket
import time
import uuid

from ..errors import StoreError
from . import files

DEFAULT_TTL_S = 1800.0
SETTLE_S = 0.5  # object stores: how long a writer waits before reading its lease back


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def identity() -> dict:
    """Who holds a lease: host, boot, PID namespace, PID and its start time (a PID reused later differs)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot": _read("/proc/sys/kernel/random/boot_id"),
            "pidns": _pidns(), "pid": pid, "started": _start_time(pid)}


def _pidns() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    stat = _read(f"/proc/{pid}/stat")
    return stat.rsplit(")", 1)[-1].split()[19] if stat else ""


def _mine(held: dict) -> bool:
    me = identity()
    return all(held.get(k) == me[k] for k in ("host", "boot", "pidns", "pid", "started")) and bool(me["boot"])


def _dead(held: dict) -> bool:
    """True only when the holder certainly ran here (same host, boot and PID namespace) and is gone."""
    me = identity()
    if not held.get("boot") or (held["host"], held.get("boot"), held.get("pidns")) != (me["host"], me["boot"], me["pidns"]):
        return False
    started = _start_time(int(held["pid"]))
    return not started or started != held.get("started")


class Lease:
    def __init__(self, fs, set_path: str, token: str | None = None, ttl_s: float = DEFAULT_TTL_S,
                 holder: str = "extract"):
        self.fs, self.token, self.ttl_s, self.kind = fs, token, ttl_s, holder
        self.path = files.join(set_path, "_lease.json")

    def holder(self) -> dict | None:
        """The lease as written by a live holder, or None (absent, or damaged: free)."""
        if self.fs.get_file_info(self.path).type == files.pafs.FileType.Directory:
            self._clear_folder()
            return None
        try:
            obj = files.read_json(self.fs, self.path)
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(obj, dict) or not isinstance(obj.get("token"), str) or not isinstance(obj.get("host"), str) \
                or not isinstance(obj.get("pid"), int) or not all(
                isinstance(obj.get(k), (int, float)) and math.isfinite(obj[k]) for k in ("since", "expires")):
            return None
        if obj["expires"] > time.time() + 2 * self.ttl_s:  # no holder writes that far ahead
            return None
        return obj

    def _clear_folder(self) -> None:
        """A folder where the lease belongs is damage no holder writes: an empty one goes; one holding files is
        left for a person to look at."""
        if files.list_names(self.fs, self.path):
            raise StoreError(f"{self.path} is a folder holding files, not a lease: look inside, then remove it")
        self.fs.delete_dir(self.path)

    def _free(self, held: dict | None) -> bool:
        """Free when absent, ours, expired, held by a dead process of this machine, or by this very process
        (a run of a long-lived worker that failed before releasing it)."""
        return held is None or held["token"] == self.token or held["expires"] < time.time() or _dead(held) \
            or _mine(held)

    def acquire(self) -> str:
        with self._locked():
            held = self.holder()
            if not self._free(held):
                raise StoreError(self._busy(held))
            self.token = uuid.uuid4().hex
            now = time.time()
            files.write_json_atomic(self.fs, self.path, {"token": self.token, "holder": self.kind, **identity(),
                                                         "since": now, "expires": now + self.ttl_s})
            if not isinstance(self.fs, files.pafs.LocalFileSystem):
                time.sleep(SETTLE_S)  # racing writers have written by now: the last one wins
        if (self.holder() or {}).get("token") != self.token:
            raise StoreError(f"{self.path}: another writer took the lease at the same moment; run again")
        return self.token

    def _busy(self, held: dict) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(held["since"]))
        name = "/".join(self.path.split("/")[-3:-1])  # <dataset>/<set>
        what = {"extract": "an extract is writing", "gc": "gc is compacting", "fsck": "fsck --repair is mending",
                "rm": "rm is removing"}.get(held.get("holder", "extract"), "another writer holds")
        return (f"{what} {name} (pid {held['pid']} on {held['host']}, since {since} UTC): run again when it has "
                f"finished; a dead writer's lease expires {held['expires'] - time.time():.0f} s from now")

    @contextlib.contextmanager
    def _locked(self):
        """An exclusive flock of ``_lease.lock`` around a read-check-write (local disks; a no-op elsewhere)."""
        if not isinstance(self.fs, files.pafs.LocalFileSystem):
            yield
            return
        import fcntl

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path[:-5] + ".lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def refresh(self) -> None:
        with self._locked():
            held = self.holder()
            if self.token and held is not None and held["token"] == self.token:
                files.write_json_atomic(self.fs, self.path, {**held, "expires": time.time() + self.ttl_s})

    def release(self, quiet: bool = False) -> None:
        """Give the lease up (when this token holds it). ``quiet``: on the way out of a failure, where a
        second error would hide the first."""
        if isinstance(self.fs, files.pafs.LocalFileSystem) and not os.path.isdir(os.path.dirname(self.path)):
            return  # the set itself was removed under the lease (rm): nothing to give back, nothing to recreate
        try:
            with self._locked():
                held = self.holder()
                if self.token and held is not None and held["token"] == self.token:
                    files.delete_if_exists(self.fs, self.path)
        except (OSError, StoreError):
            if not quiet:
                raise


@contextlib.contextmanager
def held(fs, set_path: str, holder: str):
    """The set's lease for the duration of a block (gc, fsck --repair, rm)."""
    lease = Lease(fs, set_path, holder=holder)
    lease.acquire()
    try:
        yield lease
    finally:
        lease.release(quiet=True)
