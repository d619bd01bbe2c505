"""Speech to text for audio and video files.

By default on this machine (``speech.LocalTranscriber``: Whisper base, bundled);
when ``files_transcription_url`` is set, through that OpenAI-compatible
``POST {base_url}/audio/transcriptions`` endpoint instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import httpx

from openbailian.config import Settings
from openbailian.files.speech import LocalTranscriber
from openbailian.knowledge.parse import ParsedDocument, ParseError, Section

__all__ = ["SpeechToText", "Transcriber", "make_transcriber", "transcriber_parser"]


class SpeechToText(Protocol):
    def transcribe(self, path: Path) -> str: ...


class Transcriber:
    """A remote OpenAI-compatible transcription endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 600.0,
        language: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.language = language

    def transcribe(self, path: Path) -> str:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        form = {"model": self.model, "response_format": "json"}
        if self.language:
            form["language"] = self.language
        try:
            with path.open("rb") as audio:
                response = httpx.post(
                    f"{self.base_url}/audio/transcriptions",
                    headers=headers,
                    data=form,
                    files={"file": (path.name, audio)},
                    timeout=self.timeout,
                )
        except httpx.HTTPError as error:
            raise ParseError(f"The transcription service could not be reached: {error}") from None
        if response.status_code != 200:
            raise ParseError(
                f"The transcription service answered {response.status_code}: {response.text[:200]}"
            )
        try:
            return str(response.json()["text"])
        except (ValueError, KeyError, TypeError):
            raise ParseError("The transcription service's answer has no 'text'") from None


def make_transcriber(settings: Settings) -> SpeechToText:
    """The configured endpoint when there is one, else the bundled local model."""
    if settings.files_transcription_url:
        return Transcriber(
            settings.files_transcription_url,
            settings.files_transcription_model,
            settings.files_transcription_api_key,
            language=settings.files_transcription_language,
        )
    return LocalTranscriber(
        settings.model_cache_dir,
        threads=settings.files_transcription_threads,
        language=settings.files_transcription_language,
    )


def transcriber_parser(settings: Settings) -> Callable[[Path], ParsedDocument]:
    """A parser for audio/video: the transcript as one section, or a parse failure saying why."""
    transcriber = make_transcriber(settings)

    def parse(path: Path) -> ParsedDocument:
        text = transcriber.transcribe(path).strip()
        if not text:
            raise ParseError("No speech was recognised in the file (silence, noise or music only)")
        return ParsedDocument(sections=[Section(text=text, headings=(), page=None, kind="text")], pages=0)

    return parse
