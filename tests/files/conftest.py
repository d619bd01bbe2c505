"""A live server for session-file tests, the three-step upload as a client does it,
documents made in the test, and a look at what is left on disk and in the database."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from openbailian.files.system import SessionFiles
from openbailian.storage.db import sync_url
from openbailian.storage.files_models import FileUploadLease, SessionFile
from openbailian.storage.knowledge_models import KnowledgeChunk, KnowledgeDocument
from openbailian.storage.models import utcnow
from tests.files.s3support import s3_endpoint  # noqa: F401 - the S3 server fixture of this folder
from tests.support import POSTGRES_URL, LiveServer, PostgresDatabase, make_settings

PHONES = [
    ("百炼 Zephyr Z9", "2499元", "6.4英寸屏幕，128GB存储，4000mAh电池，轻薄便携。"),
    ("通义 Vivid 7", "2999元", "6.5英寸屏幕，256GB存储，5000万像素主摄，4500mAh电池。"),
    ("星尘 S9 Pro", "5999元", "旗舰手机，6.9英寸2K屏幕，512GB存储，支持卫星通话。"),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server per test module (the embedder and OCR load once), sweeping often."""
    home = tmp_path_factory.mktemp("files-home")
    database = PostgresDatabase(POSTGRES_URL) if POSTGRES_URL else None
    url = database.create() if database else None
    server = LiveServer(make_settings(home, url, files_sweep_seconds=0.2)).start()
    yield server
    server.stop()
    if database:
        database.drop()


@pytest.fixture
def files(live: LiveServer) -> Iterator[SessionFiles]:
    """The server's session files; the clock is put back after each test."""
    system = live.runtime.files
    yield system
    system.clock = utcnow


def shift_clock(files: SessionFiles, **delta: float) -> None:
    files.clock = lambda: utcnow() + timedelta(**delta)


def call(live: LiveServer, operation: str, body: dict[str, Any], workspace: str = "ws1") -> Any:
    return live.http.post(f"/manage/v1/files/{operation}", json=body, headers=live.auth(workspace))


def lease(live: LiveServer, name: str, data: bytes, workspace: str = "ws1", **overrides: Any) -> Any:
    body = {
        "CategoryId": "default",
        "CategoryType": "SESSION_FILE",
        "FileName": name,
        "Md5": hashlib.md5(data).hexdigest(),
        "SizeInBytes": len(data),
        **overrides,
    }
    return call(live, "ApplyFileUploadLease", body, workspace)


def put(live: LiveServer, grant: dict[str, Any], data: bytes, **headers: str) -> Any:
    param = grant["Param"]
    return live.http.put(param["Url"], content=data, headers={**param["Headers"], **headers})


def add(live: LiveServer, lease_id: str, workspace: str = "ws1", **overrides: Any) -> Any:
    body = {"LeaseId": lease_id, "CategoryId": "default", "CategoryType": "SESSION_FILE", **overrides}
    return call(live, "AddFile", body, workspace)


def upload(live: LiveServer, name: str, data: bytes, workspace: str = "ws1") -> str:
    """All three steps; the file id."""
    granted = lease(live, name, data, workspace)
    assert granted.status_code == 200, granted.text
    grant = granted.json()["Data"]
    uploaded = put(live, grant, data)
    assert uploaded.status_code == 200, uploaded.text
    added = add(live, grant["FileUploadLeaseId"], workspace)
    assert added.status_code == 200, added.text
    return added.json()["Data"]["FileId"]


def wait_final(live: LiveServer, file_id: str, workspace: str = "ws1", timeout: float = 180) -> dict[str, Any]:
    """Poll DescribeFile until the status is final; every status seen is recorded."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = call(live, "DescribeFile", {"FileId": file_id}, workspace).json()["Data"]
        if not seen or seen[-1] != data["Status"]:
            seen.append(data["Status"])
        if data["Status"] in {"FILE_IS_READY", "PARSE_FAILED", "SAFE_CHECK_FAILED",
                              "INDEX_BUILDING_FAILED", "FILE_EXPIRED"}:
            data["seen"] = seen
            return data
        time.sleep(0.1)
    raise AssertionError(f"{file_id} is still {seen[-1]} after {timeout}s")


class Leftovers:
    """What session files have stored: rows, object bytes, pipeline documents and chunks."""

    def __init__(self, live: LiveServer) -> None:
        self.settings = live.settings
        self.engine = create_engine(sync_url(live.settings.resolved_database_url))

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            def count(model: Any, *where: Any) -> int:
                return connection.execute(select(func.count()).select_from(model).where(*where)).scalar_one()

            session_docs = KnowledgeDocument.source == "session"
            return {
                "leases": count(FileUploadLease),
                "files": count(SessionFile),
                "documents": count(KnowledgeDocument, session_docs),
                "chunks": connection.execute(
                    select(func.count()).select_from(KnowledgeChunk).join(
                        KnowledgeDocument, KnowledgeDocument.id == KnowledgeChunk.document_id
                    ).where(session_docs)
                ).scalar_one(),
                "objects": self._files(self.settings.home / "objects"),
                "incoming": self._files(self.settings.home / "incoming"),
            }

    @staticmethod
    def _files(root: Path) -> int:
        return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def leftovers(live: LiveServer) -> Iterator[Leftovers]:
    probe = Leftovers(live)
    yield probe
    probe.close()


def make_docx(path: Path) -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("百炼系列手机产品介绍", level=1)
    for name, price, spec in PHONES:
        document.add_heading(name, level=2)
        document.add_paragraph(f"{spec}参考售价：{price}。")
    document.save(path)
    return path.read_bytes()


def make_pdf(path: Path) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in [
        "Employee Handbook. Working hours are 9:00 to 18:00, Monday to Friday.",
        "Annual Leave Policy. Every employee receives 15 days of paid annual leave per year.",
    ]:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path.read_bytes()


def make_xlsx(path: Path) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Model", "Color", "Price"])
    sheet.append(["Zephyr Z9", "black", 2499])
    sheet.append(["Vivid 7", "blue", 2999])
    sheet.append(["Stardust S9 Pro", "black", 5999])
    workbook.save(path)
    return path.read_bytes()


def make_png(path: Path, lines: list[str]) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (900, 80 + 70 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    for number, line in enumerate(lines):
        draw.text((30, 40 + 70 * number), line, fill="black", font=font)
    image.save(path)
    return path.read_bytes()
