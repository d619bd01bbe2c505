"""``openbailian serve``: the HTTP server, optionally with a ready demo app and key."""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import typer
import uvicorn
from sqlalchemy.engine import make_url
from uvicorn.config import STARTUP_FAILURE

from openbailian.api.wire import HTTP_PROTOCOL
from openbailian.cli._common import console, fail, run_with_runtime
from openbailian.config import Settings
from openbailian.cores import usable_cores
from openbailian.crypto import SecretBox
from openbailian.runtime import Runtime
from openbailian.services import apps as app_service
from openbailian.services import keys as key_service

__all__ = [
    "serve", "default_workers", "http_process_app", "ensure_demo", "demo_env", "ListenerOfItsOwn",
    "reuse_port_listener",
]

DEMO_WORKSPACE = "default"
HEALTHCHECK_SECONDS = 60
_SERVE_PID = "OPENBAILIAN_SERVE_PID_"  # not a setting: how an HTTP process knows its parent
DEMO_INSTRUCTIONS = "You are a helpful assistant. Answer in the language the user writes in."


def serve(
    host: str | None = typer.Option(None, help="Address to listen on (default OPENBAILIAN_HOST)."),
    port: int | None = typer.Option(None, help="Port (default OPENBAILIAN_PORT)."),
    demo: bool = typer.Option(False, "--demo", help="Create (once) a demo app and key and print how to call them."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
    workers: int | None = typer.Option(
        None, "--workers", min=1,
        help="HTTP server processes on the one port (default: the number of cores on PostgreSQL, "
        "1 on SQLite, whose single writer the processes would only queue for).",
    ),
    background: bool = typer.Option(
        True, "--background/--no-background",
        help="Run the background work (ingestion, file processing, memory extraction, expiry): in this "
        "process, or with --workers N > 1 in one `openbailian worker` process beside them; "
        "--no-background leaves it to `openbailian worker` processes started separately.",
    ),
    no_workers: bool = typer.Option(False, "--no-workers", help="The same as --no-background."),
) -> None:
    """Serve the DashScope-compatible API (data under OPENBAILIAN_HOME)."""
    overrides: dict[str, Any] = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    background = background and not no_workers
    if not background:
        overrides["run_workers"] = False
    settings = Settings(**overrides)
    _check_port_free(settings.host, settings.port)
    if demo:
        demo_info = run_with_runtime(lambda runtime: ensure_demo(runtime))
        preload = [*settings.preload_models, demo_info["model"]]
        overrides["preload_models"] = list(dict.fromkeys(preload))
        settings = Settings(**overrides)
        _save_demo(settings, {**demo_info, "base_http_api_url": _base_url(settings)})
        _print_demo(settings, demo_info)
    processes = workers or default_workers(settings)
    if processes == 1:
        from openbailian.api.app import create_app

        uvicorn.run(
            create_app(settings), host=settings.host, port=settings.port, log_level=log_level, http=HTTP_PROTOCOL
        )
        return
    _serve_processes(settings, overrides, processes, background=background, log_level=log_level)


def default_workers(settings: Settings) -> int:
    """The number of cores this process may use on PostgreSQL (its cgroup's CPU quota included); 1 on SQLite.

    On SQLite one run per session holds only within a process, and every call writes its
    turn while SQLite takes one writer at a time for the whole file: within one process
    writers queue on an asyncio lock, across processes they retry in SQLite's busy handler.
    (Short calls still gained from a second process: docs/benchmarks.md.)
    """
    if make_url(settings.resolved_database_url).get_backend_name() == "sqlite":
        return 1
    return usable_cores()


def _serve_processes(
    settings: Settings, overrides: dict[str, Any], processes: int, *, background: bool, log_level: str
) -> None:
    """``processes`` uvicorn workers sharing the port; the background work in one
    ``openbailian worker`` beside them, so it runs once, not once per process."""
    # The workers are fresh interpreters that build their settings from the environment.
    for name, value in {**overrides, "run_workers": False}.items():
        os.environ[f"OPENBAILIAN_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    os.environ[_SERVE_PID] = str(os.getpid())  # uvicorn's workers are this process's children
    worker = _start_background_worker(log_level) if background else None
    options: dict[str, Any] = {
        "factory": True, "workers": processes, "host": settings.host, "port": settings.port, "log_level": log_level,
        "http": HTTP_PROTOCOL,
        # uvicorn kills a worker that does not answer its ping in time (5 s by default):
        # a fresh interpreter importing the app on a busy machine can take longer.
        "timeout_worker_healthcheck": HEALTHCHECK_SECONDS,
    }
    try:
        if settings.port == 0:  # each process would get a port of its own: share uvicorn's one socket
            uvicorn.run("openbailian.cli.serve:http_process_app", **options)
        else:
            _supervise(uvicorn.Config("openbailian.cli.serve:http_process_app", **options))
    finally:
        if worker is not None:
            _stop(worker)


def _supervise(config: uvicorn.Config) -> None:
    """uvicorn's supervisor of ``config.workers`` HTTP processes, each listening on a socket of
    its own bound to the port with SO_REUSEPORT, so the kernel spreads new connections evenly
    over them. On uvicorn's one shared socket, the process that wakes first accepts every
    connection waiting (its event loop accepts until none is left): a burst of keep-alive
    connections landed 25 to 7, 21 to 11, 30 to 2 on two processes, which then kept them."""
    from uvicorn.supervisors import Multiprocess

    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on http://%s:%d (Press CTRL+C to quit)", _url_host(config.host), config.port
    )
    listener = cast(socket.socket, ListenerOfItsOwn(config.host, config.port))
    Multiprocess(config, sockets=[listener]).run()


class ListenerOfItsOwn:
    """Stands for the listening socket in the list uvicorn hands to each HTTP process: it is
    pickled to the process (spawned) as the instruction to bind one of its own there."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return reuse_port_listener, (self.host, self.port)


def reuse_port_listener(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` with SO_REUSEPORT (in an HTTP process, as it starts)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        logging.getLogger("uvicorn.error").error("cannot listen on %s:%d: %s", host, port, error)
        sock.close()
        raise SystemExit(STARTUP_FAILURE) from error
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _start_background_worker(log_level: str) -> subprocess.Popen[bytes]:
    """``openbailian worker`` as a child that dies with this process (PR_SET_PDEATHSIG)."""
    command = [sys.executable, "-c", "from openbailian.cli import main; main()", "worker", "--log-level", log_level]
    return subprocess.Popen(command, preexec_fn=_die_with_parent)


def http_process_app() -> Any:
    """The app of one of the N HTTP processes, which ends with the process that started it
    (uvicorn's workers would otherwise outlive a ``serve`` killed with SIGKILL)."""
    from openbailian.api.app import create_app

    _die_with_parent()
    if str(os.getppid()) != os.environ.get(_SERVE_PID):  # serve died before the line above
        raise SystemExit(0)
    return create_app()


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: SIGTERM when the serving process exits


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def demo_env() -> None:
    """Print the demo's shell exports (DASHSCOPE_HTTP_BASE_URL, DASHSCOPE_API_KEY, APP_ID): eval "$(openbailian demo-env)"."""
    path = Settings().home / "demo.json"
    try:
        saved: dict[str, str] = json.loads(path.read_text())
        exports = {
            "DASHSCOPE_HTTP_BASE_URL": saved["base_http_api_url"], "DASHSCOPE_API_KEY": saved["api_key"],
            "APP_ID": saved["app_id"],
        }
    except (OSError, ValueError, KeyError):
        fail(f"no demo yet in {path.parent}: start one with `make serve` (openbailian serve --demo)", code="NoDemo")
    for name, value in exports.items():
        typer.echo(f"export {name}={value}")


def _base_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}/api/v1/"


def _save_demo(settings: Settings, saved: dict[str, str]) -> None:
    # The demo key is kept in clear text on purpose, readable by the owner only, so
    # that `make serve` prints the same working key every time.
    fd = os.open(settings.home / "demo.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(saved, handle)


def _check_port_free(host: str, port: int) -> None:
    """Fail in one line, before any banner, when the port is taken (uvicorn would only say Errno 98)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            fail(
                f"port {port} on {host} is already in use: choose another with --port N "
                f"or OPENBAILIAN_PORT=N (e.g. openbailian serve --port {port + 1})",
                code="PortInUse",
            )


async def ensure_demo(runtime: Runtime) -> dict[str, str]:
    """The demo app and key from ``$OPENBAILIAN_HOME/demo.json``, made when missing or stale."""
    path: Path = runtime.settings.home / "demo.json"
    model = runtime.settings.default_model
    if path.exists():
        saved: dict[str, str] = json.loads(path.read_text())
        if await _still_valid(runtime, saved) and saved.get("model") == model:
            return saved
    async with runtime.db.transaction() as session:
        config = app_service.parse_config({"model": model, "instructions": DEMO_INSTRUCTIONS})
        app = await app_service.create_app(
            session, workspace_id=DEMO_WORKSPACE, name="demo", config=config, models=runtime.models
        )
        key = await key_service.create_key(
            session, DEMO_WORKSPACE, "demo", box=SecretBox.from_settings(runtime.settings)
        )
    saved = {"app_id": app.id, "api_key": key.api_key, "workspace": DEMO_WORKSPACE, "model": model}
    _save_demo(runtime.settings, saved)
    return saved


async def _still_valid(runtime: Runtime, saved: dict[str, str]) -> bool:
    try:
        checked = await key_service.check_key(runtime.db, saved["api_key"], saved["app_id"])
    except Exception:  # any doubt (a bad file, a revoked key): make a fresh demo
        return False
    return checked.app is not None and checked.app.workspace_id is not None


def _print_demo(settings: Settings, demo: dict[str, str]) -> None:
    base = _base_url(settings)
    console.rule("[bold]openbailian demo")
    console.print(f"app id  : [bold]{demo['app_id']}[/bold]  (model: {demo['model']})")
    console.print(f"api key : [bold]{demo['api_key']}[/bold]")
    console.print(
        f"console : [bold]http://{settings.host}:{settings.port}/console[/bold]  "
        f"(sign in with the api key, or the admin token: OPENBAILIAN_ADMIN_TOKEN or {settings.home / 'admin_token'})"
    )
    console.print("\n[bold]Python SDK[/bold] (pip install dashscope):")
    console.print(
        f"export DASHSCOPE_HTTP_BASE_URL={base}\nexport DASHSCOPE_API_KEY={demo['api_key']}\n"
        "python - <<'PY'\nimport os\nfrom dashscope import Application\n"
        f"r = Application.call(api_key=os.getenv('DASHSCOPE_API_KEY'), app_id='{demo['app_id']}', prompt='你是谁？')\n"
        "print(r.status_code, r.output.text if r.output else r.message)\nPY",
        markup=False, highlight=False, soft_wrap=True,
    )
    console.print("\n[bold]curl[/bold]:")
    console.print(
        f"curl -s {base}apps/{demo['app_id']}/completion \\\n"
        f"  -H 'Authorization: Bearer {demo['api_key']}' -H 'Content-Type: application/json' \\\n"
        "  -d '{\"input\": {\"prompt\": \"你是谁？\"}, \"parameters\": {}}'",
        markup=False, highlight=False, soft_wrap=True,
    )
    console.print(f"\nAPI reference: {base.removesuffix('api/v1/')}docs")
    console.print('In another shell: eval "$(.venv/bin/openbailian demo-env)" exports the above.')
    console.rule()
