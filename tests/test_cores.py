"""usable_cores: a process in a cgroup with a CPU quota sizes itself by the quota, not the host.

The real boundary is a cgroup of this machine's kernel (root only: made, joined by a child
process, removed); the parsing of both cgroup versions' files is checked on folders laid out
as the kernel lays them out, for the version this machine does not mount.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from openbailian.cores import cgroup_cpu_limit, usable_cores

ROOT = Path("/sys/fs/cgroup")


def _quota_cgroup(cores: float) -> tuple[Path, str]:
    """A new cgroup limited to ``cores`` CPUs; the file a process joins it by writing its pid."""
    name = f"openbailian-test-{uuid.uuid4().hex[:8]}"
    if (ROOT / "cpu" / "cpu.cfs_period_us").exists():  # v1
        folder = ROOT / "cpu" / name
        folder.mkdir()
        (folder / "cpu.cfs_quota_us").write_text(str(int(cores * 100_000)))
    elif (ROOT / "cgroup.subtree_control").exists() and "cpu" in (ROOT / "cgroup.subtree_control").read_text().split():
        folder = ROOT / name
        folder.mkdir()
        (folder / "cpu.max").write_text(f"{int(cores * 100_000)} 100000")
    else:
        pytest.skip("no cgroup cpu controller to make a quota with")
    return folder, str(folder / "cgroup.procs")


def _cores_in(procs: str) -> int:
    script = f"import os; open({procs!r}, 'w').write(str(os.getpid())); " \
             "from openbailian.cores import usable_cores; print(usable_cores())"
    return int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)


@pytest.mark.skipif(os.geteuid() != 0 or not os.access(ROOT, os.W_OK), reason="making a cgroup needs root and a writable /sys/fs/cgroup")
def test_a_process_in_a_cgroup_with_a_one_cpu_quota_uses_one_core():
    host = len(os.sched_getaffinity(0))
    if host < 2:
        pytest.skip("one core: a quota of one changes nothing")
    folder, procs = _quota_cgroup(1.0)
    try:
        assert _cores_in(procs) == 1
    finally:
        folder.rmdir()  # the child has exited, so the cgroup is empty
    assert usable_cores() == host  # this process was never limited


def test_v2_cpu_max_of_the_cgroup_and_its_ancestors(tmp_path):
    (tmp_path / "proc").write_text("0::/kubepods/pod1\n")
    (tmp_path / "kubepods" / "pod1").mkdir(parents=True)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "kubepods" / "cpu.max").write_text("400000 100000\n")
    (tmp_path / "kubepods" / "pod1" / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path / "proc", tmp_path) == 1.5
    (tmp_path / "kubepods" / "pod1" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path / "proc", tmp_path) == 4.0  # the parent's limit still holds


def test_v1_quota_read_at_the_mount_root_when_the_named_path_is_the_hosts(tmp_path):
    # Docker on cgroup v1: /proc/self/cgroup names /docker/<id>, mounted inside as the root.
    (tmp_path / "proc").write_text("4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n")
    mount = tmp_path / "cpu,cpuacct"
    mount.mkdir()
    (mount / "cpu.cfs_quota_us").write_text("200000\n")
    (mount / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path / "proc", tmp_path) == 2.0
    (mount / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path / "proc", tmp_path) is None


def test_no_cgroup_file_means_no_limit(tmp_path):
    assert cgroup_cpu_limit(tmp_path / "missing", tmp_path) is None
