"""A server run with full logging (access log included) writes no API key, AccessKey
secret, plugin service or user token, admin token or upload signature anywhere."""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time

import uvicorn

from openbailian.api.app import create_app
from openbailian.api.logredact import redact_query
from openbailian.runtime import Runtime
from tests.support import free_port, make_settings

SERVICE_TOKEN = "svc-tok-7f3a9c1e5b"
USER_TOKEN = "usr-tok-2d8e4b6a0c"


def test_redact_query_keeps_the_path_and_hides_credentials():
    assert redact_query("/manage/v1/files/upload/abc?Expires=1&Signature=s3cr3t") == (
        "/manage/v1/files/upload/abc?Expires=1&Signature=REDACTED"
    )
    assert redact_query("/x?access_token=t&api_key=k&q=ok") == "/x?access_token=REDACTED&api_key=REDACTED&q=ok"


def test_a_logged_server_run_contains_no_secret(tmp_path, database_url):
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setLevel(logging.DEBUG)
    # The test's own HTTP client (httpx/httpcore) logs the URLs it calls: not the server's logs.
    handler.addFilter(lambda record: not record.name.startswith(("httpx", "httpcore")))
    settings = make_settings(tmp_path / "home", database_url)
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, runtime=Runtime.build(settings)), host="127.0.0.1", port=port, log_level="debug",
        lifespan="on",
    )
    server = uvicorn.Server(config)  # (its Config has configured uvicorn's loggers by now)
    watched = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.access", "uvicorn.error", "openbailian")]
    levels = {logger: logger.level for logger in watched}
    for logger in watched:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)  # everything anything logs, not only warnings
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    import httpx

    secrets: list[str] = [settings.admin_token or ""]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            admin = {"Authorization": f"Bearer {settings.admin_token}"}
            created = http.post("/manage/v1/workspaces/ws1/keys", json={"name": "k"}, headers=admin).json()
            api_key = created["api_key"]
            secrets += [api_key, created.get("access_key_secret") or api_key]
            auth = {"Authorization": f"Bearer {api_key}"}
            app_id = http.post("/manage/v1/apps", json={"name": "a", "model": "echo"}, headers=auth).json()["app_id"]
            plugin = {"name": "p", "description": "d", "url": "https://tool.invalid/x",
                      "auth": {"type": "service_token", "token": SERVICE_TOKEN}}
            tool_id = http.post("/manage/v1/plugins", json=plugin, headers=auth).json()["tool_id"]
            http.post(f"/manage/v1/plugins/{tool_id}/test", json={"arguments": {}, "user_token": USER_TOKEN}, headers=auth)
            body = {"input": {"prompt": "hi", "biz_params": {"user_defined_tokens": {tool_id: {"user_token": USER_TOKEN}}}}}
            assert http.post(f"/api/v1/apps/{app_id}/completion", json=body, headers=auth).status_code == 200
            http.post(f"/api/v1/apps/{app_id}/completion", json=body, headers={"Authorization": "Bearer sk-wrong-guess"})
            data = b"hello"
            lease = http.post(
                "/manage/v1/files/ApplyFileUploadLease",
                json={"CategoryId": "default", "CategoryType": "SESSION_FILE", "FileName": "a.txt",
                      "Md5": hashlib.md5(data).hexdigest(), "SizeInBytes": len(data)},
                headers=auth,
            ).json()["Data"]
            url = lease["Param"]["Url"]
            secrets.append(httpx.URL(url).params["Signature"])
            assert httpx.put(url, content=data, headers=lease["Param"]["Headers"]).status_code == 200
            httpx.put(url.replace("Signature=", "Signature=0"), content=data, headers=lease["Param"]["Headers"])
    finally:
        server.should_exit = True
        thread.join(30)
        for logger in watched:
            logger.removeHandler(handler)
            logger.setLevel(levels[logger])
    text = log.getvalue()
    assert "/manage/v1/files/upload/" in text and "Signature=REDACTED" in text  # the access log was on
    for secret in [*secrets, SERVICE_TOKEN, USER_TOKEN]:
        assert secret and secret not in text, f"a secret ({secret[:6]}…) is in the log"
