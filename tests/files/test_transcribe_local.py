"""Speech to text on this machine, the default for audio and video session files: the
bundled Whisper base model hears speech synthesised in the test (``espeak-ng``, which
``.ci/run`` installs; without it the tests that need synthesised speech skip saying how to
get it), in WAV, MP3 and the audio track of an MP4 video.

Chinese is not tested: the ``cmn`` voice of Debian's espeak-ng reads most Chinese
characters as English tone digits, so there is no recognisable Mandarin to hear.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from openbailian.files import speech
from openbailian.files.speech import MODEL_FILES, WHISPER_DIR, LocalTranscriber, ensure_whisper_model
from openbailian.files.transcribe import Transcriber, make_transcriber, transcriber_parser
from openbailian.knowledge.parse import ParseError
from tests.files.conftest import upload, wait_final
from tests.files.test_flow import _chunk_texts
from tests.support import make_settings, serve_in_thread

SENTENCE = (
    "The warehouse in Hangzhou shipped four hundred and twenty bicycles on Tuesday morning. "
    "Each bicycle costs three hundred dollars, and the delivery truck was painted green."
)
KEY_WORDS = ["warehouse", "bicycles", "Tuesday", "300", "truck", "green"]


ESPEAK_MISSING = (
    "espeak-ng is not installed: these tests synthesise their speech with it "
    "(Debian/Ubuntu: sudo apt-get install espeak-ng; .ci/run installs it)"
)


class Media(dict[str, Path]):
    """The test media by name; asking for synthesised speech without espeak-ng skips the test."""

    def __missing__(self, name: str) -> Path:
        if name.startswith("speech."):
            pytest.skip(ESPEAK_MISSING)
        raise KeyError(name)


def _speak(path: Path) -> Path:
    subprocess.run(["espeak-ng", "-w", str(path), SENTENCE], check=True)
    return path


def _encode(source: Path, target: Path, codec: str | None, *, video: bool = False) -> bytes:
    """``source``'s audio re-encoded with ``codec`` (none: no audio), with a few black frames if ``video``."""
    import av

    with av.open(str(target), "w") as out:
        # Every stream is added before the first packet: the header is written then.
        audio = out.add_stream(codec, rate=22050) if codec else None
        picture = out.add_stream("mpeg4", rate=10) if video else None
        if picture:
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
            for _ in range(20):
                frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
                out.mux(picture.encode(frame))
            out.mux(picture.encode())
        if audio:
            with av.open(str(source)) as speech_file:
                for sound in speech_file.decode(audio=0):
                    sound.pts = None
                    out.mux(audio.encode(sound))
            out.mux(audio.encode())
    return target.read_bytes()


def _silence(seconds: float = 3.0) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(16000)
        audio.writeframes(b"\x00\x00" * int(16000 * seconds))
    return buffer.getvalue()


# An ID3 header, then bytes that are no MPEG audio: passes the sniffer, cannot be decoded.
CORRUPT_MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 20


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    root = tmp_path_factory.mktemp("speech")
    if shutil.which("espeak-ng"):
        wav = _speak(root / "speech.wav")
        _encode(wav, root / "speech.mp3", "libmp3lame")
        _encode(wav, root / "speech.mp4", "aac", video=True)
    _encode(root / "none.wav", root / "mute.mp4", None, video=True)
    (root / "silence.wav").write_bytes(_silence())
    (root / "corrupt.mp3").write_bytes(CORRUPT_MP3)
    return Media({path.name: path for path in root.iterdir()})


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<home>/models`` of a home of its own: where ``Settings(home=...)`` puts the model."""
    return tmp_path_factory.mktemp("speech-home") / "models"


def _assert_heard(text: str) -> None:
    for word in KEY_WORDS:
        assert word.lower() in text.lower(), (word, text)


# ---------------------------------------------------------------- the model on its own


@pytest.mark.slow
@pytest.mark.parametrize("name", ["speech.wav", "speech.mp3", "speech.mp4"])
def test_speech_is_transcribed_with_segment_times(media, model_cache, name) -> None:
    text = LocalTranscriber(model_cache).transcribe(media[name])
    _assert_heard(text)
    lines = text.splitlines()
    assert lines[0].startswith("[00:00] ")
    assert all(line[:1] == "[" and line[6:8] == "] " for line in lines), text


MANDARIN = Path(__file__).parent / "data" / "meeting_zh.mp3"  # see data/README.md
MANDARIN_WORDS = ["会议", "下周三", "三号会议室", "预算报告"]


@pytest.mark.slow
def test_mandarin_is_detected_and_written_in_simplified_characters(model_cache) -> None:
    text = LocalTranscriber(model_cache).transcribe(MANDARIN)
    for word in MANDARIN_WORDS:
        assert word in text, (word, text)
    assert not set("會議週號預報") & set(text), f"traditional characters in {text!r}"


@pytest.mark.slow
def test_silence_is_no_speech(media, model_cache) -> None:
    parse = transcriber_parser(make_settings(model_cache.parent))
    with pytest.raises(ParseError, match="No speech was recognised"):
        parse(media["silence.wav"])


def test_unreadable_media_fail_with_a_reason(media, model_cache) -> None:
    transcriber = LocalTranscriber(model_cache)
    with pytest.raises(ParseError, match="could not be decoded"):
        transcriber.transcribe(media["corrupt.mp3"])
    with pytest.raises(ParseError, match="no audio track"):
        transcriber.transcribe(media["mute.mp4"])


@pytest.mark.slow
def test_an_unknown_language_setting_is_named(media, model_cache) -> None:
    with pytest.raises(ParseError, match="OPENBAILIAN_FILES_TRANSCRIPTION_LANGUAGE 'klingon'"):
        LocalTranscriber(model_cache, language="klingon").transcribe(media["speech.wav"])


@pytest.mark.slow
def test_a_forced_language_is_used(media, model_cache) -> None:
    _assert_heard(LocalTranscriber(model_cache, language="en").transcribe(media["speech.wav"]))


@pytest.mark.slow
def test_the_model_never_asks_a_model_hub(media, tmp_path: Path, monkeypatch) -> None:
    import faster_whisper.transcribe
    from tokenizers import Tokenizer

    def no_hub(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a model hub was contacted")

    # The two places faster-whisper would fetch from the hub (the model, its tokenizer).
    offline = SimpleNamespace(from_file=Tokenizer.from_file, from_buffer=Tokenizer.from_buffer, from_pretrained=no_hub)
    monkeypatch.setattr(faster_whisper.transcribe, "download_model", no_hub)
    monkeypatch.setattr(faster_whisper.transcribe, "tokenizers", SimpleNamespace(Tokenizer=offline))
    _assert_heard(LocalTranscriber(tmp_path / "models", threads=1).transcribe(media["speech.wav"]))


def test_the_model_is_joined_once_verified_and_repaired(tmp_path: Path) -> None:
    directory = ensure_whisper_model(tmp_path)
    assert directory == tmp_path / WHISPER_DIR
    model = directory / "model.bin"
    assert model.stat().st_size == 145_217_532
    joined_at = model.stat().st_mtime_ns
    assert ensure_whisper_model(tmp_path) == directory and model.stat().st_mtime_ns == joined_at
    with model.open("r+b") as damaged:
        damaged.truncate(1000)
    ensure_whisper_model(tmp_path)
    assert model.stat().st_size == 145_217_532
    assert hashlib.sha256(model.read_bytes()).hexdigest() == MODEL_FILES["model.bin"][1]
    assert not list(directory.glob(".joining-*"))


# ---------------------------------------------------------------- the remote endpoint wins


@pytest.fixture
def transcription_url() -> Iterator[tuple[str, list[dict[str, str]]]]:
    calls: list[dict[str, str]] = []

    async def transcriptions(request: Request) -> JSONResponse:
        form = await request.form()
        calls.append({key: value for key, value in form.items() if isinstance(value, str)})
        return JSONResponse({"text": "Words heard by the remote service."})

    app = Starlette(routes=[Route("/v1/audio/transcriptions", transcriptions, methods=["POST"])])
    with serve_in_thread(app) as url:
        yield f"{url}/v1", calls


def test_a_configured_endpoint_is_used_instead_of_the_local_model(
    media, tmp_path: Path, transcription_url, monkeypatch
) -> None:
    def no_local_model(*_args: object) -> None:
        raise AssertionError("the local model was loaded")

    monkeypatch.setattr(speech, "_load", no_local_model)
    url, calls = transcription_url
    settings = make_settings(tmp_path, files_transcription_url=url, files_transcription_language="en")
    assert isinstance(make_transcriber(settings), Transcriber)
    document = transcriber_parser(settings)(media["speech.wav"])
    assert document.sections[0].text == "Words heard by the remote service."
    assert calls == [{"model": "whisper-1", "response_format": "json", "language": "en"}]
    assert isinstance(make_transcriber(make_settings(tmp_path)), LocalTranscriber)


# ---------------------------------------------------------------- the whole flow


@pytest.mark.slow
def test_a_video_becomes_ready_and_its_speech_reaches_the_model(live, media) -> None:
    file_id = upload(live, "briefing.mp4", media["speech.mp4"].read_bytes())
    final = wait_final(live, file_id)
    assert final["Status"] == "FILE_IS_READY", final
    _assert_heard(_chunk_texts(live, file_id))

    app_id = live.app(file_parsing=True, show_sources=True)
    response = live.call(app_id, {
        "input": {"prompt": "How many bicycles did the warehouse ship, and when?"},
        "parameters": {"rag_options": {"session_file_ids": [file_id]}},
    })
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    system = json.loads(output["text"])["messages"][0]["content"]
    assert "<session_files>" in system
    _assert_heard(system)
    assert {r["doc_id"] for r in output["doc_references"]} == {file_id}


@pytest.mark.slow
def test_a_mandarin_recording_answers_a_chinese_question(live) -> None:
    file_id = upload(live, "会议通知.mp3", MANDARIN.read_bytes())
    assert wait_final(live, file_id)["Status"] == "FILE_IS_READY"
    app_id = live.app(file_parsing=True)
    response = live.call(app_id, {
        "input": {"prompt": "会议在哪个会议室？要带什么？"},
        "parameters": {"rag_options": {"session_file_ids": [file_id]}},
    })
    assert response.status_code == 200, response.text
    system = json.loads(response.json()["output"]["text"])["messages"][0]["content"]
    assert "三号会议室" in system and "预算报告" in system, system


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("silence.wav", "No speech was recognised"),
        ("corrupt.mp3", "could not be decoded"),
        ("mute.mp4", "no audio track"),
    ],
)
def test_media_without_speech_end_parse_failed_saying_why(live, media, name, reason) -> None:
    final = wait_final(live, upload(live, name, media[name].read_bytes()))
    assert final["Status"] == "PARSE_FAILED", final
    assert reason in final["FailureReason"]
