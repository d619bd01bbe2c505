"""How many cores this process may use (its CPU affinity, bounded by its cgroup's CPU quota), and
thread pools of their own sized by it.

A container limited with ``--cpus 2`` (Compose's ``cpus:``) gets a CFS quota, not an affinity:
``os.cpu_count()`` and ``os.sched_getaffinity`` still see every core of the host, and a server
sizing its processes and threads by them would start one per host core.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["usable_cores", "cgroup_cpu_limit", "OwnThreads"]

T = TypeVar("T")

_PROC_CGROUP = Path("/proc/self/cgroup")
_CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cores() -> int:
    """At least 1; the affinity's cores, or fewer when the cgroup's quota allows fewer."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(cores, math.ceil(limit))) if limit is not None else max(1, cores)


class OwnThreads:
    """A thread pool for one kind of work, made on first use with ``max(4, usable_cores() + 2)``
    threads, so that work never queues in the event loop's default executor behind others'."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=max(4, usable_cores() + 2), thread_name_prefix=self._name)
            return self._pool

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` on these threads."""
        work = functools.partial(function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.pool(), work)


def cgroup_cpu_limit(proc_cgroup: Path = _PROC_CGROUP, root: Path = _CGROUP_ROOT) -> float | None:
    """The tightest CPU quota (in cores) of this process's cgroup and its ancestors; None if none.

    cgroup v2 (``cpu.max``: "max 100000" or "200000 100000") and v1 (``cpu.cfs_quota_us`` -1 or
    µs per ``cpu.cfs_period_us``). A container that sees its own cgroup at the mount's root (cgroup
    namespace, or v1's bind mount while /proc/self/cgroup names the host's path) is covered by
    reading every ancestor that exists, the root included.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            limits += _v2_limits(root, path)
        elif "cpu" in controllers.split(","):
            limits += _v1_limits(root / controllers, path) + _v1_limits(root / "cpu", path)
    return min(limits) if limits else None


def _ancestors(mount: Path, path: str) -> list[Path]:
    parts = [p for p in path.split("/") if p]
    return [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _v2_limits(mount: Path, path: str) -> list[float]:
    found = []
    for folder in _ancestors(mount, path):
        quota, _, period = _read(folder / "cpu.max").partition(" ")
        if quota and quota != "max" and period:
            found.append(int(quota) / int(period))
    return found


def _v1_limits(mount: Path, path: str) -> list[float]:
    found = []
    for folder in _ancestors(mount, path):
        quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        if quota and period and int(quota) > 0:
            found.append(int(quota) / int(period))
    return found


def _read(file: Path) -> str:
    try:
        return file.read_text().strip()
    except OSError:
        return ""
