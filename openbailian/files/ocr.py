"""Text of an image by OCR, with the models bundled in ``rapidocr``.

The wheel ships its three ONNX models (PP-OCRv6 small detection and recognition, a
direction classifier), run by onnxruntime; nothing is downloaded. The engine is loaded once, on
first use, and is not thread-safe, so calls are serialised.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from openbailian.knowledge.parse import ParsedDocument, ParseError, Section

__all__ = ["ocr_text", "parse_image"]

_engine: Any = None
_lock = threading.Lock()


def _get_engine() -> Any:
    global _engine
    if _engine is None:
        try:
            from rapidocr import RapidOCR
        except ImportError:  # pragma: no cover - the package is a dependency
            raise ParseError("OCR is not available: install rapidocr") from None
        _engine = RapidOCR(params={"Global.log_level": "error"})
    return _engine


def ocr_text(path: Path) -> str:
    """The recognised lines, top to bottom, one per line."""
    with _lock:
        engine = _get_engine()
        try:
            # GIFs and palette images: give the engine plain RGB pixels.
            import numpy as np
            from PIL import Image

            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))[:, :, ::-1]  # RGB → BGR
            result = engine(pixels)
        except Exception as error:  # noqa: BLE001 - any decoder/OCR failure is a parse failure
            raise ParseError(f"OCR failed: {error}") from None
    found = zip(result.boxes if result.boxes is not None else [], result.txts or ())
    lines = [(box[0][1], box[0][0], text) for box, text in found]
    return "\n".join(text for _y, _x, text in sorted(lines, key=lambda item: (round(item[0] / 10), item[1])))


def parse_image(path: Path) -> ParsedDocument:
    text = ocr_text(path).strip()
    if not text:
        raise ParseError("No text was found in the image (session images must contain text)")
    return ParsedDocument(sections=[Section(text=text, headings=(), page=1, kind="text")], pages=1)
