"""A newcomer's first hour, verbatim: the README's commands in a fresh clone, with a fresh venv.

``git clone`` of this repository into a temporary folder, then the README's first screen as
written: ``make serve`` (with the port setting the README gives, on a free port), and, in
"another shell", its quickstart block. Each step's output is checked. The install uses pip's
cache (and the package registry, which CI reaches), so it costs a few minutes, not an hour.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support import LOCAL_MODEL_BUDGET, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def commands(block: str) -> list[str]:
    """The block's command lines without their comments."""
    return [line.split("  #")[0].strip() for line in block.strip().splitlines() if line.strip()]


def first_screen() -> tuple[list[str], list[str]]:
    serve_block, quickstart_block = re.findall(r"```bash\n(.*?)```", README, re.DOTALL)[:2]
    return commands(serve_block), commands(quickstart_block)


def test_the_readme_first_screen_names_its_port_setting_and_pages():
    serve, quickstart = first_screen()
    assert serve == ["make serve", "make test"]
    assert "OPENBAILIAN_PORT=8001 make serve" in README
    assert "/console" in README[:README.index("## What works")] and "/docs" in README[:README.index("## What works")]
    assert any("examples/quickstart.py" in line for line in quickstart)


def test_a_fresh_clone_serves_and_answers_the_quickstart_as_the_readme_says(tmp_path: Path):
    serve, quickstart = first_screen()
    clone = tmp_path / "openbailian"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBAILIAN_", "DASHSCOPE_", "VIRTUAL_ENV"))}
    env |= {"OPENBAILIAN_HOME": str(tmp_path / "home"), "OPENBAILIAN_PORT": str(port)}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if "/.venv/" not in p)
    log = (tmp_path / "serve.log").open("w+")
    server = subprocess.Popen(
        serve[0].split(), cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        banner = _wait_for_server(server, log, port)
        assert re.search(r"api key : sk-\w+", banner), banner
        assert f"http://127.0.0.1:{port}/console" in banner and f"http://127.0.0.1:{port}/docs" in banner

        # "In another shell": the README's block, verbatim, in the clone.
        other_shell = {k: v for k, v in env.items() if k != "OPENBAILIAN_PORT"}
        answer = subprocess.run(
            ["bash", "-ec", "\n".join(quickstart)], cwd=clone, env=other_shell,
            capture_output=True, text=True, timeout=LOCAL_MODEL_BUDGET,
        )
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.strip(), answer.stderr
        assert "request_id=" not in answer.stdout and "code=" not in answer.stdout, answer.stdout
        assert any("\u4e00" <= ch <= "\u9fff" or ch.isalpha() for ch in answer.stdout)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()


def _wait_for_server(server: subprocess.Popen, log, port: int) -> str:
    """The serve output once the server answers /healthz (install and model load take a while)."""
    deadline = time.monotonic() + 2 * LOCAL_MODEL_BUDGET
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise AssertionError(f"make serve exited {server.returncode}:\n{log.read()[-4000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                log.seek(0)
                return log.read()
        except httpx.TransportError:
            pass
        time.sleep(1)
    log.seek(0)
    raise AssertionError(f"make serve did not answer in time:\n{log.read()[-4000:]}")
