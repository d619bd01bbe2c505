"""Turning one exchange into facts worth remembering: the prompt, and a forgiving parser.

Small local models rarely produce clean JSON. :func:`parse_facts` accepts JSON
inside code fences or surrounded by chatter, trailing commas, Chinese
punctuation used as JSON syntax (“”：，), single quotes, Python literals,
``<think>`` blocks, a bare list, or a bullet/numbered list when there is no
JSON at all. Anything it cannot read yields no facts rather than junk.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

from openbailian.providers.base import ChatMessage

__all__ = ["Fact", "extraction_messages", "parse_facts", "normalize_subject", "guess_subject"]

MAX_FACT_CHARS = 500
_FACT_KEYS = ("fact", "content", "text", "memory", "value", "事实", "内容", "记忆")
_SUBJECT_KEYS = ("subject", "topic", "key", "category", "主题", "类别", "类型")
_LIST_KEYS = ("facts", "memories", "items", "memory", "记忆", "事实")
_EMPTY = {"", "无", "没有", "暂无", "none", "null", "n/a", "na", "nothing", "[]", "{}"}
# Placeholders of the prompt's format that a confused model copies back.
_PLACEHOLDERS = {"主题", "完整的一句话", "一句简短的话", "subject", "fact", "..."}

_SYSTEM = """你是一个记忆提取器。阅读用户说的话，提取值得长期记住的、关于用户本人的关键信息：\
偏好、用户陈述的关于自己的事实、用户做出的决定。不要提取问题、请求、寒暄或常识。

只输出 JSON，不要输出其他内容。格式：
{"facts": [{"subject": "主题", "fact": "一句简短的话"}]}
没有值得记住的信息时输出 {"facts": []}。

规则：
- subject 是简短的主题，例如“饮食偏好”“居住城市”“职业”。
- fact 用第三人称描述用户，不超过30个字，例如“用户饮食偏好：面食”。
- 如果与“已有记忆”的主题相同（包括用户改变了偏好），使用相同的 subject，并写出更新后的完整事实。

示例：
用户：我不吃辣，平时喜欢吃面。
输出：{"facts": [{"subject": "饮食偏好", "fact": "用户不吃辣，喜欢吃面食"}]}
用户：用户职业：教师
输出：{"facts": [{"subject": "职业", "fact": "用户职业：教师"}]}
用户：明天天气怎么样？
输出：{"facts": []}"""


@dataclass(frozen=True, slots=True)
class Fact:
    content: str
    subject: str = ""  # normalised (see normalize_subject)


def extraction_messages(user_text: str, answer: str, known: list[str]) -> list[ChatMessage]:
    """The chat messages asking a model for the facts of one exchange.

    Only the user's side is shown: facts about the user come from what the user
    said, and the assistant's reply came after it. Shown the reply, small models
    copy it back as the "fact" (Qwen2.5-0.5B did, whatever the instructions), and
    it would make every extraction slower. ``answer`` is accepted and ignored.
    """
    del answer
    known_text = "\n".join(f"- {item}" for item in known) if known else "（无）"
    user = f"已有记忆：\n{known_text}\n\n用户：{user_text.strip()[:4000]}\n\n输出："
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]


def normalize_subject(subject: str) -> str:
    """A comparable key: lower case, no punctuation/space, without a leading "user"."""
    key = re.sub(r"[\W_]+", "", subject.lower())
    key = re.sub(r"^(用户的?|users?|theusers?|my|我的?)", "", key)
    return key[:200]


def guess_subject(content: str) -> str:
    """"用户饮食偏好：面食" → "饮食偏好": the text before a colon near the start, if any."""
    match = re.match(r"^\s*([^:：\n]{1,20})[:：]\s*\S", content)
    return normalize_subject(match.group(1)) if match else ""


def parse_facts(text: str) -> list[Fact]:
    text = re.sub(r"<think>.*?(</think>|$)", "", text, flags=re.DOTALL | re.IGNORECASE)
    value = _first_json(text)
    if value is _NOTHING:
        raw = _bullets(text)
    else:
        raw = _facts_from_value(value)
    return _clean(raw)


_NOTHING = object()


def _first_json(text: str) -> Any:
    candidates = [m.group(1) for m in re.finditer(r"```[\w-]*\s*(.*?)```", text, re.DOTALL)]
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start >= 0:
        end = max(text.rfind("}"), text.rfind("]"))
        if end > start:
            candidates.append(text[start : end + 1])
        else:
            candidates.append(text[start:])  # cut off mid-answer: _close_brackets mends it
    for candidate in candidates:
        value = _loads(candidate.strip())
        if value is not _NOTHING:
            return value
    return _NOTHING


def _loads(candidate: str) -> Any:
    if not candidate or candidate[0] not in "{[":
        return _NOTHING
    repaired = _repair(candidate)
    for attempt in (candidate, repaired, _close_brackets(repaired)):
        try:
            return json.loads(attempt)
        except ValueError:
            pass
    try:  # single-quoted, Python-literal output
        return ast.literal_eval(_repair(candidate, python=True))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return _NOTHING


_OUTSIDE = str.maketrans({"，": ",", "：": ":", "｛": "{", "｝": "}", "［": "[", "］": "]", "、": ","})
_OPENERS = {'"': '"', "“": "”", "”": "”", "'": "'", "‘": "’"}


def _repair(text: str, *, python: bool = False) -> str:
    """Make near-JSON parseable: Chinese punctuation as syntax, quote styles, trailing commas."""
    out: list[str] = []
    closer: str | None = None
    i = 0
    while i < len(text):
        char = text[i]
        if closer is None:
            if char in _OPENERS:
                closer = _OPENERS[char]
                out.append('"')
            else:
                out.append(char.translate(_OUTSIDE))
        elif char == "\\" and i + 1 < len(text):
            out.append(text[i : i + 2])
            i += 1
        elif char == closer or (closer == "”" and char == '"') or (closer == '"' and char == "”"):
            closer = None
            out.append('"')
        elif char == '"':
            out.append('\\"')
        elif char == "\n":
            out.append("\\n")
        else:
            out.append(char)
        i += 1
    repaired = "".join(out)
    repaired = re.sub(r",\s*([}\]])", r"\1", repaired)
    if python:
        repaired = re.sub(r"\btrue\b", "True", repaired)
        repaired = re.sub(r"\bfalse\b", "False", repaired)
        repaired = re.sub(r"\bnull\b", "None", repaired)
    else:
        repaired = re.sub(r"\bTrue\b", "true", repaired)
        repaired = re.sub(r"\bFalse\b", "false", repaired)
        repaired = re.sub(r"\bNone\b", "null", repaired)
    return repaired


def _close_brackets(text: str) -> str:
    """Close what a model cut off mid-answer: ``{"facts": [{...}`` → ``…]}``."""
    stack: list[str] = []
    in_string = False
    escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]" and stack:
            stack.pop()
    return text + ('"' if in_string else "") + "".join(reversed(stack))


def _facts_from_value(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        for key in _LIST_KEYS:
            if key in value:
                inner = value[key]
                return _facts_from_value(inner if isinstance(inner, list) else [inner])
        one = _fact_from_item(value)
        return [one] if one else []
    if isinstance(value, list):
        return [fact for item in value if (fact := _fact_from_item(item))]
    return []


def _fact_from_item(item: Any) -> tuple[str, str] | None:
    if isinstance(item, str):
        return (item, "")
    if not isinstance(item, dict):
        return None
    content = next((item[k] for k in _FACT_KEYS if isinstance(item.get(k), str)), None)
    if content is None:
        return None
    subject = next((item[k] for k in _SUBJECT_KEYS if isinstance(item.get(k), str)), "")
    return (content, subject)


_QUOTES = "\"'“”‘’`「」"
_BULLET = re.compile(r"^\s*(?:[-*•·●▪+]|\d{1,2}\s*[.、)）:]|[（(]\d{1,2}[)）])\s*(.+?)\s*$")


def _bullets(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), "") for line in text.splitlines() if (m := _BULLET.match(line))]


def _clean(raw: list[tuple[str, str]]) -> list[Fact]:
    facts: list[Fact] = []
    seen: set[str] = set()
    for content, subject in raw:
        content = re.sub(r"\s+", " ", content).strip()
        if len(content) >= 2 and content[0] in _QUOTES and content[-1] in _QUOTES:
            content = content[1:-1].strip()
        if content.lower() in _EMPTY or content in _PLACEHOLDERS:
            continue
        content = _with_subject(content, subject.strip())[:MAX_FACT_CHARS]
        key = normalize_subject(subject) or guess_subject(content)
        if key in {normalize_subject(p) for p in _PLACEHOLDERS}:
            key = guess_subject(content)
        if content not in seen:
            seen.add(content)
            facts.append(Fact(content=content, subject=key))
    return facts


_MENTIONS_USER = re.compile(r"用户|我|\buser\b|\bI\b", re.IGNORECASE)


def _with_subject(content: str, subject: str) -> str:
    """A bare value says nothing once stored ("杭州"): prefix what it is ("居住城市：杭州")."""
    if not subject or subject in _PLACEHOLDERS or _MENTIONS_USER.search(content):
        return content
    if normalize_subject(subject) in normalize_subject(content):
        return content
    separator = "：" if re.search(r"[\u3400-\u9fff]", subject + content) else ": "
    return f"{subject}{separator}{content}"
