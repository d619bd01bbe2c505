"""Speech to text for audio and video files, through an OpenAI-compatible
``POST {base_url}/audio/transcriptions`` endpoint (``files_transcription_url``).

Without one configured, an audio or video file fails parsing with a reason that
says so.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from openbailian.config import Settings
from openbailian.knowledge.parse import ParsedDocument, ParseError, Section

__all__ = ["Transcriber", "transcriber_parser"]


class Transcriber:
    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 600.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout

    def transcribe(self, path: Path) -> str:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            with path.open("rb") as audio:
                response = httpx.post(
                    f"{self.base_url}/audio/transcriptions",
                    headers=headers,
                    data={"model": self.model, "response_format": "json"},
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


def transcriber_parser(settings: Settings):  # type: ignore[no-untyped-def]
    """A parser for audio/video: transcribes, or fails saying no transcriber is configured."""
    transcriber = (
        Transcriber(
            settings.files_transcription_url,
            settings.files_transcription_model,
            settings.files_transcription_api_key,
        )
        if settings.files_transcription_url
        else None
    )

    def parse(path: Path) -> ParsedDocument:
        if transcriber is None:
            raise ParseError(
                "No speech-to-text service is configured for audio and video files: "
                "set OPENBAILIAN_FILES_TRANSCRIPTION_URL to an OpenAI-compatible endpoint"
            )
        text = transcriber.transcribe(path).strip()
        if not text:
            raise ParseError("No speech was recognised in the file")
        return ParsedDocument(sections=[Section(text=text, headings=(), page=None, kind="text")], pages=0)

    return parse
