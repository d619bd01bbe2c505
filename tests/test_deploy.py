"""deploy/: the Compose file, its env files and the image recipe, checked without Docker.

Nothing here builds the image or starts the containers (no Docker daemon in the test
environment): the Compose file is parsed, every openbailian service's command is parsed by
the real CLI, every OPENBAILIAN_* setting of the env files is loaded by the real Settings,
and the values the services must agree on (passwords, bucket) are compared.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import typer
import yaml

from openbailian.cli import app as cli_app
from openbailian.config import Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
# Files of the package that the running server never reads (alembic's template for new revisions).
NOT_NEEDED_AT_RUN_TIME = {"openbailian/storage/migrations/script.py.mako"}


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def env_file(name: str) -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "env" / name).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def openbailian_services() -> dict[str, dict]:
    return {name: spec for name, spec in compose()["services"].items() if "build" in spec}


def test_the_compose_file_has_two_api_processes_a_worker_postgres_minio_and_an_optional_vllm():
    services = compose()["services"]
    commands = {name: spec["command"] for name, spec in openbailian_services().items()}
    assert commands == {"api-1": ["serve", "--no-workers"], "api-2": ["serve", "--no-workers"], "worker": ["worker"]}
    assert services["postgres"]["image"] == "pgvector/pgvector:pg16"
    assert services["minio"]["image"].startswith("minio/minio:")
    assert services["vllm"]["profiles"] == ["vllm"]
    assert all("profiles" not in spec for name, spec in services.items() if name != "vllm")
    for name, spec in openbailian_services().items():
        assert spec["depends_on"]["postgres"] == {"condition": "service_healthy"}, name
        assert spec["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        volume = spec["volumes"][0].split(":")
        assert volume[1] == "/data" and volume[0] in compose()["volumes"], name
    for spec in services.values():
        for name in spec.get("env_file", []):
            assert (DEPLOY / name).is_file(), name


@pytest.mark.parametrize("service", ["api-1", "api-2", "worker"])
def test_each_service_command_is_a_real_cli_command(service):
    command = typer.main.get_command(cli_app)
    args = openbailian_services()[service]["command"]
    sub = command.get_command(command.context_class(command), args[0])  # type: ignore[attr-defined]
    assert sub is not None, args
    context = sub.make_context(args[0], list(args[1:]))  # raises on an unknown option
    if args[0] == "serve":
        # the API processes run no background work (the worker service does it)
        assert context.params["no_workers"] or not context.params["background"], args


def test_the_settings_in_the_env_file_are_real_and_valid(monkeypatch):
    settings = env_file("openbailian.env")
    fields = {f"OPENBAILIAN_{name.upper()}" for name in Settings.model_fields}
    unknown = set(settings) - fields
    assert not unknown, f"not settings of openbailian/config.py: {unknown}"
    for name in list(__import__("os").environ):
        if name.startswith("OPENBAILIAN_"):
            monkeypatch.delenv(name)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    loaded = Settings()  # validates every value (the models JSON included)
    assert loaded.s3_bucket and loaded.database_url.startswith("postgresql://")
    assert loaded.run_workers  # the API processes turn it off with --no-workers, the worker needs it
    assert set(loaded.models) == {"qwen"}


def test_the_services_agree_on_passwords_and_the_bucket():
    settings, postgres, minio = env_file("openbailian.env"), env_file("postgres.env"), env_file("minio.env")
    url = re.match(r"postgresql://([^:]+):([^@]+)@postgres:5432/(\w+)$", settings["OPENBAILIAN_DATABASE_URL"])
    assert url is not None
    assert url.groups() == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])
    assert (settings["OPENBAILIAN_S3_ACCESS_KEY_ID"], settings["OPENBAILIAN_S3_SECRET_ACCESS_KEY"]) == (
        minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"])
    assert settings["OPENBAILIAN_S3_ENDPOINT_URL"] == "http://minio:9000"
    public_port = settings["OPENBAILIAN_S3_PUBLIC_ENDPOINT_URL"].rsplit(":", 1)[1]
    assert f"{public_port}:9000" in compose()["services"]["minio"]["ports"]  # presigned URLs reach MinIO
    bucket_command = " ".join(compose()["services"]["bucket"]["command"])
    assert f"store/{settings['OPENBAILIAN_S3_BUCKET']}" in bucket_command
    assert '"api_key": "' + env_file("vllm.env")["VLLM_API_KEY"] + '"' in settings["OPENBAILIAN_MODELS"]


def test_the_image_installs_the_package_and_runs_as_a_user_with_a_data_volume():
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    base = next(line for line in lines if line.startswith("FROM "))
    assert re.fullmatch(r"FROM python:3\.1[12]-slim", base)
    assert "RUN pip install . && rm -rf /root/.cache" in lines
    assert "USER openbailian" in lines and 'VOLUME ["/data"]' in lines
    assert 'ENTRYPOINT ["openbailian"]' in lines
    assert any(line.startswith("ENV ") for line in lines) and "OPENBAILIAN_HOME=/data \\" in lines
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (DEPLOY.parent / source).exists(), source


def copied_sources() -> list[tuple[str, str]]:
    """(source, destination) of each path the Dockerfile's COPY lines take from the context."""
    pairs = []
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            *sources, destination = line.split()[1:]
            pairs += [(source, destination) for source in sources]
    return pairs


def test_a_wheel_built_from_only_what_the_image_copies_holds_every_file_of_the_package(tmp_path):
    """`pip install .` in the image sees only the COPYed files: a file the build needs that is not
    copied, or a package file that the package-data globs miss (the development venv's editable
    install reads the source tree and never notices), is caught here without Docker."""
    root = DEPLOY.parent
    context = tmp_path / "opt-openbailian"
    context.mkdir()
    for source, destination in copied_sources():
        target = context / destination / Path(source).name if destination.endswith("/") else context / destination
        if (root / source).is_dir():
            shutil.copytree(root / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(root / source, target)
    # Without isolation: offline, with the test environment's setuptools (>= 80.9, llama-index-core's floor).
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path / "wheel"), str(context)],
        capture_output=True, text=True,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "wheel").glob("openbailian-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    package = {
        path.relative_to(root).as_posix() for path in (root / "openbailian").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert not (package - NOT_NEEDED_AT_RUN_TIME) - packaged, "package files missing from the image's install"
    def dist_info(name: str) -> str:
        return zipfile.ZipFile(wheel).read(next(p for p in packaged if p.endswith(f".dist-info/{name}"))).decode()

    assert "openbailian = openbailian.cli:main" in dist_info("entry_points.txt")
    readme = (root / "README.md").read_text().splitlines()[0]
    assert readme in dist_info("METADATA")  # setuptools only warns when the readme is not there


def test_the_build_requirement_admits_only_setuptools_that_accept_the_license_string():
    """`license = "Apache-2.0"` (an SPDX expression) needs setuptools 77 or later; 70.1.0, the one
    python:3.11-slim ships, refuses it (a build without isolation showed it: docs/deployment.md)."""
    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())
    assert isinstance(project["project"]["license"], str)
    (requirement,) = project["build-system"]["requires"]
    minimum = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", requirement)
    assert minimum is not None and int(minimum.group(1)) >= 77, requirement
