"""Parsers and chunking, without a database or a model."""

from __future__ import annotations

import shutil

import pytest

from openbailian.knowledge.chunk import chunk_document, chunk_records, count_tokens
from openbailian.knowledge.parse import (
    ParsedDocument,
    ParseError,
    Section,
    parse_document,
    parse_table,
)
from tests.knowledge.corpus import make_docx, make_pdf, make_xlsx


def test_docx_keeps_headings_and_tables(tmp_path):
    document = parse_document(make_docx(tmp_path / "p.docx"))
    titled = [s for s in document.sections if s.headings[-1:] == ("通义 Vivid 7",)]
    assert titled and "2999-3299元" in titled[0].text
    table = [s for s in document.sections if s.kind == "table"][0]
    assert "型号: 百炼 Zephyr Z9; 参考售价: 2499-2799元" in table.text


def test_pdf_keeps_page_numbers(tmp_path):
    document = parse_document(make_pdf(tmp_path / "hr.pdf"))
    assert document.pages == 3
    assert [s.page for s in document.sections] == [1, 2, 3]
    assert "15 days" in document.sections[1].text


def test_markdown_html_and_csv(tmp_path):
    md = tmp_path / "a.md"
    md.write_text("# Guide\nintro\n## Setup\nrun `make`\n```\n# not a heading\n```\n", encoding="utf-8")
    sections = parse_document(md).sections
    assert sections[0].headings == ("Guide",) and sections[1].headings == ("Guide", "Setup")
    assert "# not a heading" in sections[1].text
    html = tmp_path / "a.html"
    html.write_text("<h1>Policy</h1><script>x()</script><p>Leave is 15 days.</p>"
                    "<table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>")
    sections = parse_document(html).sections
    assert sections[0] == Section("Leave is 15 days.", ("Policy",))
    assert sections[1].text == "k: a; v: 1" and sections[1].kind == "table"
    csv = tmp_path / "t.csv"
    csv.write_text("name,price\nZ9,2499\n", encoding="utf-8")
    assert parse_table(csv).rows == [{"name": "Z9", "price": "2499"}]


def test_markdown_heading_lines_of_any_length_parse(tmp_path):
    # The old one-regex heading match backtracked: cubic in a run of spaces (a 20 KB line took
    # hours); these lines are read in one pass, and a closing run of '#' still drops out.
    md = tmp_path / "long.md"
    spaces, hashes = "\u2000" * 20_000, "#" * 200_000
    md.write_text(f"# 标题{spaces}x\n正文一\n## 小节 {hashes} {spaces}\n正文二\n### a{hashes}b\n正文三\n", encoding="utf-8")
    sections = parse_document(md).sections
    assert [s.text for s in sections] == ["正文一", "正文二", "正文三"]
    assert sections[0].headings == (f"标题{spaces}x",)
    assert sections[1].headings == (f"标题{spaces}x", "小节")
    assert sections[2].headings == (f"标题{spaces}x", "小节", f"a{hashes}b")


def test_markdown_headings_are_read_as_before(tmp_path):
    """The title is what the former regex's lazy group took, on every short line over the
    characters that matter (hashes, kinds of whitespace, text)."""
    import random
    import re

    from openbailian.knowledge.parse import _markdown_heading

    former = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
    rng = random.Random(7)
    alphabet = ["#", " ", "\t", "\u2000", "\u3000", "\x0b", "\x1c", "\u2028", "\x85", "a", "中"]
    for _ in range(20_000):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        match = former.match(line)
        assert _markdown_heading(line) == (match and (len(match.group(1)), match.group(2))), repr(line)


def test_pptx_slides_are_pages(tmp_path):
    from pptx import Presentation

    presentation = Presentation()
    for title, body in [("Intro", "hello"), ("Prices", "Z9 costs 2499")]:
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    presentation.save(tmp_path / "deck.pptx")
    document = parse_document(tmp_path / "deck.pptx")
    assert document.pages == 2
    assert document.sections[1] == Section("Z9 costs 2499", ("Prices",), page=2)


def test_gbk_text_is_read(tmp_path):
    path = tmp_path / "gbk.txt"
    path.write_bytes("员工手册：年假十五天".encode("gb18030"))
    assert "年假" in parse_document(path).sections[0].text


@pytest.mark.skipif(shutil.which("soffice") or shutil.which("libreoffice"), reason="LibreOffice is installed")
def test_legacy_office_needs_libreoffice(tmp_path):
    path = tmp_path / "old.doc"
    path.write_bytes(b"\xd0\xcf\x11\xe0 old word file")
    with pytest.raises(ParseError, match="LibreOffice"):
        parse_document(path)


def test_structured_table_records(tmp_path):
    table = parse_table(make_xlsx(tmp_path / "p.xlsx"))
    assert table.headers == ["型号", "颜色", "存储", "价格"]
    chunks = chunk_records(table)
    assert len(chunks) == 5 and chunks[0].record == {"型号": "百炼 Zephyr Z9", "颜色": "黑色", "存储": "128GB", "价格": "2499"}


def test_chunks_respect_size_overlap_and_headings():
    long = "。".join(f"第{i}条规定员工应当遵守公司制度" for i in range(200))
    document = ParsedDocument([Section(long, ("制度",)), Section("短的一节", ("附录",))], pages=1)
    chunks = chunk_document(document, max_tokens=100, overlap=20)
    assert all(count_tokens(c.text) <= 100 for c in chunks)
    assert chunks[-1].title == "附录" and chunks[-1].text == "短的一节"
    body = [c for c in chunks if c.title == "制度"]
    assert len(body) > 5
    assert body[0].text[-5:] in body[1].text  # consecutive chunks overlap
    with pytest.raises(ValueError):
        chunk_document(document, max_tokens=10, overlap=10)
