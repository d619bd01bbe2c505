"""A small corpus made in the tests: phone catalogue (.docx), HR policy (.pdf, 3 pages),
price table (.xlsx, structured), plus broken and empty files; and a shared embedder."""

from __future__ import annotations

from pathlib import Path

PHONES = [
    ("百炼 Zephyr Z9", "2499-2799元", "6.4英寸 1080 x 2340像素屏幕，128GB存储与6GB RAM，4000mAh电池，30倍数字变焦，轻薄便携。"),
    ("通义 Vivid 7", "2999-3299元", "6.5英寸屏幕，8GB RAM，256GB存储，5000万像素主摄，拍照出色，4500mAh电池。"),
    ("星尘 S9 Pro", "5999-6499元", "旗舰手机，6.9英寸2K屏幕，12GB RAM，512GB存储，5000mAh电池，支持卫星通话。"),
]

HR_PAGES = [
    "Employee Handbook\nWorking hours are 9:00 to 18:00, Monday to Friday. Remote work needs a manager's approval.",
    "Annual Leave Policy\nEvery employee receives 15 days of paid annual leave per year. "
    "Unused leave can be carried over to the next year, up to 5 days.",
    "Expense Reimbursement\nTravel expenses are reimbursed within 30 days after the receipts are submitted.",
]

PRICES = [
    ("型号", "颜色", "存储", "价格"),
    ("百炼 Zephyr Z9", "黑色", "128GB", "2499"),
    ("百炼 Zephyr Z9", "白色", "256GB", "2799"),
    ("通义 Vivid 7", "黑色", "256GB", "2999"),
    ("通义 Vivid 7", "蓝色", "512GB", "3299"),
    ("星尘 S9 Pro", "黑色", "512GB", "5999"),
]


def make_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("百炼系列手机产品介绍", level=1)
    for name, price, spec in PHONES:
        document.add_heading(name, level=2)
        document.add_paragraph(f"{spec}参考售价：{price}。")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "型号", "参考售价"
    for name, price, _ in PHONES:
        cells = table.add_row().cells
        cells[0].text, cells[1].text = name, price
    document.save(path)
    return path


def make_pdf(path: Path) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in HR_PAGES:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


def make_xlsx(path: Path, rows: list[tuple[str, ...]] = PRICES) -> Path:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(list(row))
    workbook.save(path)
    return path




def heavy_docx(shape: str, mebibytes: int = 40) -> bytes:
    """A real .docx (python-docx's own parts) whose document.xml inflates to ``mebibytes`` MiB:
    ``"one"`` — a single 40 MiB text run (memory-hungry), ``"many"`` — a million tiny paragraphs
    (slow to parse). Both are ~100 KB on the wire."""
    import io
    import zipfile

    import docx

    template = io.BytesIO()
    docx.Document().save(template)
    size = mebibytes * 1024 * 1024
    if shape == "one":
        body = b"<w:p><w:r><w:t>" + b"A" * size + b"</w:t></w:r></w:p>"
    else:
        paragraph = b"<w:p><w:r><w:t>word</w:t></w:r></w:p>"
        body = paragraph * (size // len(paragraph))
    xml = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
        + body + b"</w:body></w:document>"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(template.getvalue())) as source, zipfile.ZipFile(
        out, "w", zipfile.ZIP_DEFLATED, compresslevel=9
    ) as archive:
        for member in source.infolist():
            data = xml if member.filename == "word/document.xml" else source.read(member.filename)
            archive.writestr(member.filename, data)
    return out.getvalue()
