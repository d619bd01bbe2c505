"""Documents → sections that keep their heading path, tables (as text) and page numbers.

Each file type has one small parser. What is parsed is a :class:`Parsers` value, built per
use: ``STANDARD`` is exactly what a knowledge base takes (the documented types); session files
build a wider one (``STANDARD.with_parsers(...)``: OCR for images, speech to text) for their own
documents only — nothing process-wide is changed. Legacy Office types are converted with LibreOffice
when it is installed. Every failure is a :class:`ParseError` whose message is
shown to the user as the document's failure reason.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from openbailian.errors import ParseError

__all__ = [
    "ParseError",
    "Section",
    "ParsedDocument",
    "Table",
    "parse_document",
    "parse_table",
    "Parser",
    "Parsers",
    "STANDARD",
    "supported_types",
    "STRUCTURED_TYPES",
]


@dataclass(frozen=True, slots=True)
class Section:
    text: str
    headings: tuple[str, ...] = ()
    page: int | None = None
    kind: Literal["text", "table"] = "text"


@dataclass(slots=True)
class ParsedDocument:
    sections: list[Section] = field(default_factory=list)
    pages: int = 0


@dataclass(slots=True)
class Table:
    headers: list[str]
    rows: list[dict[str, str]]


Parser = Callable[[Path], ParsedDocument]

LEGACY_TYPES = {".doc": "docx", ".wps": "docx", ".ppt": "pptx", ".xls": "xlsx"}
STRUCTURED_TYPES = frozenset({".xlsx", ".csv"})


# ---------------------------------------------------------------- helpers


def _clean(text: str) -> str:
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t\u3000]+", " ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _table_text(rows: list[list[str]]) -> str:
    """A table as text: one line per row, ``header: value`` pairs when there is a header."""
    rows = [r for r in rows if any(c for c in r)]
    if not rows:
        return ""
    header, body = rows[0], rows[1:]
    if not body or not all(header):
        return "\n".join(" | ".join(r) for r in rows)
    lines = []
    for row in body:
        pairs = [f"{h}: {v}" for h, v in zip(header, row, strict=False) if v]
        lines.append("; ".join(pairs))
    return "\n".join(lines)


def _open_failure(path: Path, error: Exception) -> ParseError:
    return ParseError(f"The file is damaged or not a valid {path.suffix} file ({type(error).__name__})")


# ---------------------------------------------------------------- parsers


def _parse_text(path: Path) -> ParsedDocument:
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise ParseError("The text file is neither UTF-8 nor GB18030 encoded")
    if "\x00" in text[:4096]:
        raise ParseError("The file is binary, not text")
    return ParsedDocument([Section(_clean(text))], pages=1)


_MD_HEADING = re.compile(r"(#{1,6})\s+")


def _markdown_heading(line: str) -> tuple[int, str] | None:
    """(level, title) of an ATX heading line, or None. The title drops a closing run of ``#``
    and the whitespace around it; done with ``rstrip``, since the one-regex form of this
    (``(.*?)\\s*#*\\s*$``) backtracks: cubic in a long line of spaces or hashes, hours for a
    20 KB line."""
    match = _MD_HEADING.match(line)
    if match is None:
        return None
    return len(match.group(1)), line[match.end() :].rstrip().rstrip("#").rstrip()


def _parse_markdown(path: Path) -> ParsedDocument:
    text = _parse_text(path).sections[0].text
    sections: list[Section] = []
    headings: list[str] = []
    buffer: list[str] = []
    in_code = False

    def flush() -> None:
        body = _clean("\n".join(buffer))
        if body:
            sections.append(Section(body, tuple(headings)))
        buffer.clear()

    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            in_code = not in_code
        heading = None if in_code else _markdown_heading(line)
        if heading:
            flush()
            level, title = heading
            headings[:] = [*headings[: level - 1], title]
        else:
            buffer.append(line)
    flush()
    return ParsedDocument(sections, pages=1)


def _parse_html(path: Path) -> ParsedDocument:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(path.read_bytes(), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    sections: list[Section] = []
    headings: list[str] = []
    blocks = soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "table", "td"])
    seen_tables: set[int] = set()
    for block in blocks:
        name = block.name
        if block.find_parent("table") is not None and name != "table":
            continue
        if name and name[0] == "h" and name[1:].isdigit():
            level = int(name[1:])
            headings[:] = [*headings[: level - 1], block.get_text(" ", strip=True)]
        elif name == "table" and id(block) not in seen_tables:
            seen_tables.add(id(block))
            rows = [
                [c.get_text(" ", strip=True) for c in tr.find_all(["th", "td"])]
                for tr in block.find_all("tr")
            ]
            text = _table_text(rows)
            if text:
                sections.append(Section(text, tuple(headings), kind="table"))
        elif name in {"p", "li", "pre"} and block.find_parent(["li"]) is None:
            text = _clean(block.get_text(" ", strip=True))
            if text:
                sections.append(Section(text, tuple(headings)))
    if not sections:  # a page without the usual block tags
        text = _clean(soup.get_text("\n"))
        if text:
            sections.append(Section(text))
    return ParsedDocument(sections, pages=1)


def _parse_pdf(path: Path) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError("The PDF is password-protected")
        pages = list(reader.pages)
    except ParseError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as error:
        raise _open_failure(path, error) from None
    sections = []
    for number, page in enumerate(pages, start=1):
        try:
            text = _clean(page.extract_text() or "")
        except Exception as error:  # pypdf raises many types on broken content streams
            raise ParseError(f"Page {number} of the PDF cannot be read ({type(error).__name__})") from None
        if text:
            sections.append(Section(text, page=number))
    return ParsedDocument(sections, pages=len(pages))


def _docx_blocks(document: Any) -> Iterator[Any]:  # python-docx's element tree is untyped
    from docx.table import Table as DocxTable
    from docx.text.paragraph import Paragraph

    for child in document.element.body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            yield Paragraph(child, document)
        elif tag == "tbl":
            yield DocxTable(child, document)


def _heading_level(style_name: str) -> int | None:
    if style_name == "Title":
        return 1
    match = re.match(r"(?:Heading|标题)\s*(\d)", style_name)
    return int(match.group(1)) if match else None


def _parse_docx(path: Path) -> ParsedDocument:
    import docx

    try:
        document = docx.Document(str(path))
    except Exception as error:  # zipfile.BadZipFile, KeyError, lxml errors…
        raise _open_failure(path, error) from None
    sections: list[Section] = []
    headings: list[str] = []
    buffer: list[str] = []

    def flush() -> None:
        body = _clean("\n".join(buffer))
        if body:
            sections.append(Section(body, tuple(headings)))
        buffer.clear()

    for block in _docx_blocks(document):
        if hasattr(block, "rows"):
            flush()
            rows = [[_cell(c.text) for c in row.cells] for row in block.rows]
            text = _table_text(rows)
            if text:
                sections.append(Section(text, tuple(headings), kind="table"))
            continue
        text = block.text.strip()
        style = block.style.name if block.style is not None else ""
        level = _heading_level(style or "")
        if level and text:
            flush()
            headings[:] = [*headings[: level - 1], text]
        elif text:
            buffer.append(text)
    flush()
    return ParsedDocument(sections, pages=1)


def _parse_pptx(path: Path) -> ParsedDocument:
    from pptx import Presentation

    try:
        presentation = Presentation(str(path))
    except Exception as error:
        raise _open_failure(path, error) from None
    sections: list[Section] = []
    slides = list(presentation.slides)
    for number, slide in enumerate(slides, start=1):
        title_shape = slide.shapes.title
        title = title_shape.text_frame.text.strip() if title_shape is not None else ""
        heading = (title,) if title else (f"Slide {number}",)
        texts: list[str] = []
        for shape in slide.shapes:
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            if shape.has_text_frame and shape.text_frame.text.strip():
                texts.append(shape.text_frame.text)
            if getattr(shape, "has_table", False) and shape.has_table:
                rows = [[_cell(c.text) for c in row.cells] for row in shape.table.rows]
                text = _table_text(rows)
                if text:
                    sections.append(Section(text, heading, page=number, kind="table"))
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame.text.strip():
            texts.append(slide.notes_slide.notes_text_frame.text)
        body = _clean("\n".join(texts))
        if body or title:
            sections.append(Section(body or title, heading, page=number))
    return ParsedDocument(sections, pages=len(slides))


def _xlsx_sheets(path: Path) -> list[tuple[str, list[list[str]]]]:
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as error:
        raise _open_failure(path, error) from None
    try:
        return [
            (sheet.title, [[_cell(v) for v in row] for row in sheet.iter_rows(values_only=True)])
            for sheet in workbook.worksheets
        ]
    finally:
        workbook.close()


def _parse_xlsx(path: Path) -> ParsedDocument:
    sections = []
    sheets = _xlsx_sheets(path)
    for number, (title, rows) in enumerate(sheets, start=1):
        text = _table_text(rows)
        if text:
            sections.append(Section(text, (title,), page=number, kind="table"))
    return ParsedDocument(sections, pages=len(sheets))


def _csv_rows(path: Path) -> list[list[str]]:
    text = _parse_text(path).sections[0].text
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    return [[c.strip() for c in row] for row in csv.reader(io.StringIO(text), dialect)]


def _parse_csv(path: Path) -> ParsedDocument:
    text = _table_text(_csv_rows(path))
    return ParsedDocument([Section(text, kind="table")] if text else [], pages=1)


def _converter() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


def _convert_legacy(path: Path, parse: Parser, target: str) -> ParsedDocument:
    tool = _converter()
    if tool is None:
        raise ParseError(
            f"{path.suffix} files need LibreOffice to be converted, and neither 'soffice' nor "
            "'libreoffice' is installed on the server (e.g. apt-get install libreoffice-core)"
        )
    with tempfile.TemporaryDirectory(prefix="openbailian-convert-") as out:
        source = Path(out) / f"input{path.suffix}"
        shutil.copyfile(path, source)
        try:
            subprocess.run(
                [tool, "--headless", "--norestore", f"-env:UserInstallation=file://{out}/profile",
                 "--convert-to", target, "--outdir", out, str(source)],
                check=True, capture_output=True, timeout=300,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            raise ParseError(f"LibreOffice could not convert the {path.suffix} file ({type(error).__name__})") from None
        converted = Path(out) / f"input.{target}"
        if not converted.exists():
            raise ParseError(f"LibreOffice could not convert the {path.suffix} file")
        return parse(converted)


_DOCUMENT_PARSERS: dict[str, Parser] = {
    ".txt": _parse_text,
    ".md": _parse_markdown,
    ".markdown": _parse_markdown,
    ".html": _parse_html,
    ".htm": _parse_html,
    ".pdf": _parse_pdf,
    ".docx": _parse_docx,
    ".pptx": _parse_pptx,
    ".xlsx": _parse_xlsx,
    ".csv": _parse_csv,
}
_MODERN = {"docx": _parse_docx, "pptx": _parse_pptx, "xlsx": _parse_xlsx}


def _legacy_parser(target: str) -> Parser:
    return lambda path: _convert_legacy(path, _MODERN[target], target)


for _ext, _target in LEGACY_TYPES.items():
    _DOCUMENT_PARSERS[_ext] = _legacy_parser(_target)


def _suffix(path: Path, name: str | None) -> str:
    return Path(name or path.name).suffix.lower()


@dataclass(frozen=True, slots=True)
class Parsers:
    """The parser of each file type (``".pdf"``) one use of the pipeline takes; immutable."""

    by_type: Mapping[str, Parser]

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self.by_type)

    def with_parsers(self, extra: Mapping[str, Parser]) -> Parsers:
        """These parsers and ``extra`` (extensions like ``".png"``), as a new value."""
        return Parsers(MappingProxyType({**self.by_type, **{ext.lower(): p for ext, p in extra.items()}}))

    def parse(self, path: Path, *, name: str | None = None) -> ParsedDocument:
        """Sections of the document at ``path``; ``name`` (the original file name) gives the type."""
        ext = _suffix(path, name)
        parser = self.by_type.get(ext)
        if parser is None:
            raise ParseError(f"Unsupported file type '{ext or '(none)'}'; supported: {', '.join(sorted(self.by_type))}")
        try:
            document = parser(path)
        except ParseError:
            raise
        except (zipfile.BadZipFile, UnicodeDecodeError, ValueError, KeyError) as error:
            raise _open_failure(path, error) from None
        if not any(s.text.strip() for s in document.sections):
            raise ParseError("The document contains no text")
        return document


STANDARD = Parsers(MappingProxyType(dict(_DOCUMENT_PARSERS)))  # what a knowledge base takes


def supported_types(kind: str = "unstructured") -> frozenset[str]:
    """What a knowledge base of this kind takes (as documented)."""
    return STRUCTURED_TYPES if kind == "structured" else STANDARD.types


def parse_document(path: Path, *, name: str | None = None, parsers: Parsers = STANDARD) -> ParsedDocument:
    """Sections of the document at ``path`` by ``parsers`` (a knowledge base's by default)."""
    return parsers.parse(path, name=name)


def parse_table(path: Path, *, name: str | None = None) -> Table:
    """The first sheet (or the CSV) as records: the first non-empty row is the header."""
    ext = _suffix(path, name)
    if ext == ".xlsx":
        sheets = _xlsx_sheets(path)
        rows = sheets[0][1] if sheets else []
    elif ext == ".csv":
        rows = _csv_rows(path)
    else:
        raise ParseError(f"A structured knowledge base takes .xlsx or .csv tables, not '{ext or '(none)'}'")
    rows = [r for r in rows if any(r)]
    if len(rows) < 2:
        raise ParseError("The table has no data rows under its header row")
    headers = rows[0]
    while headers and not headers[-1]:
        headers = headers[:-1]
    if not headers or any(not h for h in headers):
        raise ParseError("Every column of the header row needs a name")
    if len(set(headers)) != len(headers):
        raise ParseError("The header row has duplicate column names")
    records = [
        {h: (row[i] if i < len(row) else "") for i, h in enumerate(headers)} for row in rows[1:]
    ]
    return Table(headers=headers, rows=records)
