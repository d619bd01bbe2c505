"""``openbailian serve --workers 2``: two HTTP processes on one port and one background
worker beside them; calls are answered, a document is ingested once, and SIGTERM stops all."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.cli.test_worker import ADMIN, Process
from tests.support import free_port


@pytest.fixture
def env(tmp_path: Path, database_url: str | None) -> dict[str, str]:
    home = tmp_path / "home"
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPENBAILIAN_")},
        "OPENBAILIAN_HOME": str(home),
        "OPENBAILIAN_DATABASE_URL": database_url or f"sqlite:///{home / 'shared.db'}",
        "OPENBAILIAN_ADMIN_TOKEN": ADMIN,
        "OPENBAILIAN_DEFAULT_MODEL": "echo",
        "OPENBAILIAN_WORKER_POLL_SECONDS": "0.2",
    }


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _descendants(pid: int) -> list[int]:
    found = []
    for child in _children(pid):
        found += [child, *_descendants(child)]
    return found


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def _http_processes(pid: int) -> list[int]:
    """uvicorn's workers: children started by multiprocessing's spawn."""
    return [child for child in _children(pid) if "spawn_main" in _command_line(child)]


def _command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = (Path("/proc") / str(pid) / "stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def test_two_http_processes_one_worker_and_sigterm_stops_them_all(env, tmp_path: Path) -> None:
    port = free_port()
    server = Process(["serve", "--workers", "2", "--port", str(port), "--log-level", "warning"], env,
                     tmp_path / "serve.log")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.popen.poll() is None, server.output()
            assert time.monotonic() < deadline, "the server did not start: " + server.output()
            try:
                if client.get("/healthz").status_code == 200 and len(_http_processes(server.popen.pid)) == 2:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        processes = _descendants(server.popen.pid)
        names = {pid: _command_line(pid) for pid in processes}
        workers = [pid for pid in processes if "main() worker" in _command_line(pid)]
        assert len(workers) == 1, [_command_line(p) for p in processes]  # the background work runs once
        assert len(_http_processes(server.popen.pid)) == 2, [_command_line(p) for p in processes]

        admin = {"Authorization": f"Bearer {ADMIN}"}
        key = client.post("/manage/v1/workspaces/ws1/keys", json={"name": "t"}, headers=admin).json()["api_key"]
        client.headers["Authorization"] = f"Bearer {key}"
        created = client.post("/manage/v1/apps", json={"name": "a", "model": "echo"})  # created published
        assert created.status_code == 201, created.text
        app = created.json()
        # Each new connection may land on either process; every call is answered the same way.
        for n in range(8):
            with httpx.Client(base_url=client.base_url, headers=client.headers, timeout=60) as fresh:
                answer = fresh.post(f"/api/v1/apps/{app['app_id']}/completion", json={"input": {"prompt": f"hi {n}"}})
            assert answer.status_code == 200, answer.text
            assert json.loads(answer.json()["output"]["text"])["messages"][-1] == {"role": "user", "content": f"hi {n}"}

        # The HTTP processes queue the document; the one worker beside them ingests it.
        base = client.post("/manage/v1/knowledge/bases", json={"name": "handbook"}).json()["index_id"]
        text = "# 年假制度\n每位员工每年享有15天带薪年假。".encode()
        added = client.post(f"/manage/v1/knowledge/bases/{base}/files", files=[("files", ("hr.md", text))])
        assert added.status_code == 201, added.text
        file_id = added.json()["files"][0]["file_id"]
        deadline = time.monotonic() + 180
        while (status := client.get(f"/manage/v1/knowledge/files/{file_id}").json()["status"]) != "FILE_IS_READY":
            assert status in {"INIT", "PARSING", "PARSE_SUCCESS", "INDEX_BUILDING"}, status
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
    finally:
        client.close()
        code = server.stop()
    assert code in {0, -signal.SIGTERM}, server.output()
    deadline = time.monotonic() + 30  # multiprocessing's resource tracker exits once it sees its pipe close
    while (left := [pid for pid in processes if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"children outlived `serve`: {[names[pid] for pid in left]}"


def test_a_killed_serve_takes_its_processes_with_it(env, tmp_path: Path) -> None:
    port = free_port()
    server = Process(["serve", "--workers", "2", "--port", str(port), "--log-level", "warning"], env,
                     tmp_path / "serve.log")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    deadline = time.monotonic() + 180
    while not _answers(client) or len(_http_processes(server.popen.pid)) < 2 or not any(
        "main() worker" in _command_line(pid) for pid in _children(server.popen.pid)
    ):
        assert server.popen.poll() is None, server.output()
        assert time.monotonic() < deadline, "the processes did not start: " + server.output()
        time.sleep(0.2)
    processes = [pid for pid in _children(server.popen.pid) if "resource_tracker" not in _command_line(pid)]
    names = {pid: _command_line(pid) for pid in processes}
    client.close()
    server.popen.kill()  # no clean shutdown: SIGKILL
    server.stop()
    deadline = time.monotonic() + 60
    while (left := [pid for pid in processes if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"children outlived a killed `serve`: {[names[pid] for pid in left]}"
    assert "Traceback" not in server.output(), server.output()


def _sockets_on(port: int, pid: int) -> dict[str, set[str]]:
    """The TCP sockets of ``pid`` on local ``port`` (their inodes) by state (LISTEN, ESTABLISHED)."""
    inodes = set()
    for fd in (Path("/proc") / str(pid) / "fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    states = {"0A": "LISTEN", "01": "ESTABLISHED"}
    found: dict[str, set[str]] = {"LISTEN": set(), "ESTABLISHED": set()}
    for table in ("tcp", "tcp6"):
        for line in (Path("/proc/net") / table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in inodes and fields[3] in states:
                found[states[fields[3]]].add(fields[9])
    return found


def test_connections_opened_together_are_spread_over_the_processes(env, tmp_path: Path) -> None:
    """Each HTTP process listens on a socket of its own (SO_REUSEPORT): the kernel spreads a
    burst of keep-alive connections over both instead of the first awake process taking them."""
    port = free_port()
    server = Process(["serve", "--workers", "2", "--no-background", "--port", str(port), "--log-level", "warning"],
                     env, tmp_path / "serve.log")
    try:
        deadline = time.monotonic() + 180
        while len(_http_processes(server.popen.pid)) < 2 or not all(
            _sockets_on(port, pid)["LISTEN"] for pid in _http_processes(server.popen.pid)
        ):
            assert server.popen.poll() is None, server.output()
            assert time.monotonic() < deadline, "the processes did not start: " + server.output()
            time.sleep(0.2)
        connections = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(64)]
        try:
            for connection in connections:  # each answered: accepted by one of the processes
                connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            for connection in connections:
                assert connection.recv(64).startswith(b"HTTP/1.1 200"), server.output()
            held = {pid: _sockets_on(port, pid) for pid in _http_processes(server.popen.pid)}
        finally:
            for connection in connections:
                connection.close()
    finally:
        server.stop()
    listeners = [sockets["LISTEN"] for sockets in held.values()]
    assert [len(own) for own in listeners] == [1, 1] and listeners[0] != listeners[1], held  # not one shared
    assert sum(len(sockets["ESTABLISHED"]) for sockets in held.values()) == 64, held
    # Hashed over two listeners, 64 connections split 48:16 or worse about once in 10,000 runs.
    assert all(16 < len(sockets["ESTABLISHED"]) < 48 for sockets in held.values()), held
