"""The official Node SDK (``@alicloud/bailian20231229``, pinned in ``node/package-lock.json``,
unmodified) against a live server, signed and with a bearer token: the same face serves every
official SDK, whatever its spelling of booleans and bodies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from alibabacloud_bailian20231229 import models

from tests.api.openapi.conftest import WORKSPACE, OpenApi

NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def node_sdk() -> Path:
    """The pinned Node SDK, installed from the npm registry once (``npm ci``)."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("Node.js and npm are needed for the Node SDK test (apt-get install nodejs npm)")
    if not (NODE_DIR / "node_modules" / "@alicloud" / "bailian20231229").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=NODE_DIR, check=True, capture_output=True, timeout=600,
        )
    return NODE_DIR / "memory_flow.js"


@pytest.mark.parametrize("form", ["signed", "bearer"])
def test_the_node_sdk_memory_flow(openapi: OpenApi, node_sdk: Path, form: str) -> None:
    credentials = openapi.credentials
    env = {**os.environ, "ENDPOINT": f"127.0.0.1:{openapi.server.port}", "WORKSPACE": WORKSPACE}
    if form == "signed":
        env |= {"ACCESS_KEY_ID": credentials["access_key_id"], "ACCESS_KEY_SECRET": credentials["access_key_secret"]}
    else:
        env["BEARER_TOKEN"] = credentials["api_key"]
    result = subprocess.run(["node", str(node_sdk)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    seen = json.loads(result.stdout)
    assert seen["description"] == "node 客户"
    assert seen["nodes"] == ["用户饮食偏好：清淡"] and seen["totalCount"] == 1
    assert seen["refused"]["statusCode"] == 404 and seen["refused"]["code"] == "MemoryNotFound"
    assert seen["refused"]["requestId"]
    stored = openapi.bearer.list_memories(WORKSPACE, models.ListMemoriesRequest())
    assert [m.memory_id for m in stored.body.memories] == [seen["memoryId"]]
