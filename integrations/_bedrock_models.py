"""``InvokeModel`` body shapes of the model families on Bedrock, as chat messages and usage.

``InvokeModel`` carries the model vendor's own JSON. Families covered: Anthropic Messages
(``anthropic_version``), Amazon Nova (``schemaVersion: messages-v1`` or a Converse-like
``messages`` list), Amazon Titan Text, Meta Llama, Mistral (prompt and chat-completion forms),
DeepSeek and other chat-completion bodies, Cohere Command and Command R, the embedding
models (Titan, Cohere and Nova embeddings) and the image generation models (Titan Image
Generator, Nova Canvas, Stability: their prompts, and their images counted and sized, never
read), and the video generation models' ``StartAsyncInvoke`` inputs (Nova Reel, Luma Ray: their
prompts). A family is recognised from the model id (also inside an inference profile id or ARN,
e.g. ``us.anthropic.claude-...``) and, failing that, from the body's shape. Messages come out
in the same plain-dict form every integration uses (``role``, ``content``, ``tool_calls``,
``tool_call_id``, and ``reasoning`` for the model's reasoning: Converse ``reasoningContent``,
Anthropic ``thinking`` blocks; a redacted block as :data:`~agentguard._genai.REDACTED_REASONING`,
its bytes and every signature left out).

A body too deep for the JSON decoder, or not JSON, is read as far as that is safe
(:func:`parse_json_partial`), and the reply says it was not read whole.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import math
import re
from typing import Any

from agentguard._content import to_json
from agentguard._genai import REDACTED_REASONING

__all__ = [
    "CUT_DEPTH",
    "CUT_INVALID",
    "CUT_SIZE",
    "ContentBudget",
    "EmbeddingRequest",
    "ImageReply",
    "ImageRequest",
    "ModelReply",
    "StreamAccumulator",
    "anthropic_reasoning",
    "converse_reasoning",
    "converse_usage",
    "document_text",
    "embedding_request",
    "embedding_response",
    "family_of",
    "image_request",
    "image_response",
    "is_embedding",
    "is_image_generation",
    "is_video_generation",
    "parse_json",
    "parse_json_partial",
    "parse_request",
    "parse_response",
    "prompt_variables",
    "raw_text",
    "text_of",
    "token_count",
    "video_request",
]

# The field Bedrock adds to an InvokeModel answer (and to a stream's last chunk) when the request
# named a guardrail: "INTERVENED" or "NONE".
GUARDRAIL_ACTION_FIELD = "amazon-bedrock-guardrailAction"

_FAMILIES = (("anthropic.", "anthropic"), ("amazon.nova", "nova"), ("amazon.titan", "titan"),
             ("meta.", "llama"), ("mistral.", "mistral"), ("cohere.", "cohere"),
             ("ai21.", "ai21"), ("deepseek.", "deepseek"))
# Text kept per stream while accumulating (the span shows less; the Guard sees this much).
MAX_TEXT = 256 * 1024
MAX_BLOCKS = 256
# Text read from one attached document (a prefix: the rest is marked as not read), and from all
# the documents of one request together (Bedrock takes at most five documents per request).
MAX_DOCUMENT = 256 * 1024
MAX_REQUEST_DOCUMENTS = 2 * 1024 * 1024
MAX_NAME = 200

# Converse ``DocumentFormat`` values whose bytes are text, and those that are binary containers
# (reading those needs a parser; their bytes decoded as UTF-8 are noise, not what the model reads).
_TEXT_FORMATS = frozenset({"txt", "md", "csv", "html", "htm", "markdown", "json", "xml", "tsv",
                           "yaml", "yml", "text"})
_BINARY_FORMATS = frozenset({"pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods",
                             "odp", "zip", "gz"})
# Container signatures (PDF, ZIP as in docx/xlsx, OLE2 as in doc/xls, gzip), for bodies whose
# format says nothing.
_BINARY_MAGIC = (b"%PDF-", b"PK\x03\x04", b"\xd0\xcf\x11\xe0", b"\x1f\x8b")


def family_of(model_id: str | None, body: Any = None) -> str:
    """The vendor family of a Bedrock model id (or of a request body when the id says nothing)."""
    model = (model_id or "").lower()
    for marker, family in _FAMILIES:
        if marker in model:
            return family
    if isinstance(body, dict):
        if "anthropic_version" in body:
            return "anthropic"
        if body.get("schemaVersion") == "messages-v1" or isinstance(body.get("inferenceConfig"),
                                                                     dict):
            return "nova"
        if "inputText" in body:
            return "titan"
        if "max_gen_len" in body:
            return "llama"
    return "unknown"


class ContentBudget:
    """Document text still to be read for one request; documents past it are named, not read."""

    __slots__ = ("left",)

    def __init__(self, size: int = MAX_REQUEST_DOCUMENTS) -> None:
        self.left = size

    def take(self, wanted: int) -> int:
        """How much of ``wanted`` characters (or bytes) may be read, and spend it."""
        granted = max(0, min(wanted, self.left))
        self.left -= granted
        return granted


def _name(value: Any) -> str:
    return " ".join(str(value).split())[:MAX_NAME] if value else ""


def _label(kind: str, name: str, fmt: str) -> str:
    label = f"{kind} {name}" if name else kind
    return f"{label} ({fmt})" if fmt else label


def _head(data: Any, encoded: bool, limit: int) -> tuple[bytes, int] | str | None:
    """The first ``limit`` bytes of a document body and its full size; a ``str`` the caller
    handed botocore is already text (botocore sends it as its UTF-8 bytes). ``encoded``: the
    body is a JSON request's base64 text, not the botocore parameter's raw bytes."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data[:limit]), len(data)
    if not isinstance(data, str):
        return None  # botocore takes bytes or str for a JSON body's blob; a file cannot be sent
    if not encoded:
        return data
    size = len(data) * 3 // 4 - (len(data) - len(data.rstrip("=")))
    chunk = data[:(limit + 2) // 3 * 4]
    if len(chunk) % 4:
        # Cut at a whole base64 quantum (a prefix), or pad an unpadded whole body.
        chunk = (chunk[:len(chunk) - len(chunk) % 4] if len(chunk) < len(data)
                 else chunk + "=" * (-len(chunk) % 4))
    try:
        return base64.b64decode(chunk)[:limit], size
    except (binascii.Error, ValueError):
        return None


def _looks_like_text(head: bytes) -> bool:
    """Whether a body of unknown format is text: clean UTF-8 (a character cut at the end of the
    prefix is fine), no NULs, no container signature."""
    if b"\x00" in head or head.startswith(_BINARY_MAGIC):
        return False
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _decode(head: bytes, fmt: str) -> str | None:
    """The text of a document prefix, or ``None`` when the document is not text.

    A document declared as text is read as text whatever its first bytes (the model reads it
    so; a signature check there would let a text document pass unread by starting with
    ``%PDF-``). NULs are dropped: they carry nothing a reader sees, and without them UTF-16 text
    in the ASCII range reads as what it says.
    """
    if fmt in _BINARY_FORMATS or (fmt not in _TEXT_FORMATS and not _looks_like_text(head)):
        return None
    return head.decode("utf-8-sig", "replace").replace("\x00", "")


def _bounded(text: str, budget: ContentBudget) -> str:
    granted = budget.take(min(len(text), MAX_DOCUMENT))
    if granted < len(text):
        return text[:granted] + f"\n[truncated: {granted} of {len(text)} characters read]"
    return text


def _read(label: str, fmt: str, data: Any, encoded: bool, budget: ContentBudget) -> str:
    """``[label]`` and the text of a document body, or a note saying why it was not read."""
    if budget.left <= 0:
        return f"[{label}: not read, request document budget spent]"
    head = _head(data, encoded, min(MAX_DOCUMENT, budget.left))
    if isinstance(head, str):
        return f"[{label}]\n{_bounded(head, budget)}"
    if head is None:
        return f"[{label}: not read]"
    raw, size = head
    text = _decode(raw, fmt)
    if text is None:
        return f"[{label}: {size} bytes, binary, not read]"
    budget.take(len(raw))
    if len(raw) < size:
        text += f"\n[truncated: {len(raw)} of {size} bytes read]"
    return f"[{label}]\n{text}"


def _context(block: dict[str, Any], budget: ContentBudget) -> str:
    context = block.get("context")
    return (f"\n[context]\n{_bounded(context, budget)}" if isinstance(context, str) and context
            else "")


def document_text(block: Any, *, encoded: bool = False,
                  budget: ContentBudget | None = None) -> str:
    """What the model reads of a Converse ``document`` block: its name, its context and, for a
    text document, a bounded prefix of its text. Binary formats (PDF, Office) are named only."""
    budget = budget if budget is not None else ContentBudget()
    block = _map(block)
    fmt = str(block.get("format") or "").lower()
    label = _label("document", _name(block.get("name")), fmt)
    source = _map(block.get("source"))
    if "bytes" in source:
        body = _read(label, fmt, source["bytes"], encoded, budget)
    elif isinstance(source.get("text"), str):
        body = _read(label, fmt, source["text"], False, budget)
    elif isinstance(source.get("content"), list):
        body = _read(label, fmt, _texts(source["content"]), False, budget)
    else:
        location = _map(source.get("s3Location")).get("uri")
        body = f"[{label}: {_name(location) or 'no content'}, not read]"
    return body + _context(block, budget)


def _anthropic_document(block: dict[str, Any], budget: ContentBudget) -> str:
    """An Anthropic Messages ``document`` block (base64, plain text, content list, URL, file)."""
    source = _map(block.get("source"))
    kind = source.get("type")
    media = str(source.get("media_type") or "").lower()
    fmt = ("pdf" if media == "application/pdf" else "txt" if media.startswith("text/")
           else media.rsplit("/", 1)[-1])
    label = _label("document", _name(block.get("title")), fmt)
    if kind in ("base64", "text"):
        body = _read(label, fmt, source.get("data"), kind == "base64", budget)
    elif kind == "content":
        body = _read(label, fmt, _texts(source.get("content")), False, budget)
    else:
        where = source.get("url") or source.get("file_id")
        body = f"[{label}: {_name(where) or kind or 'no content'}, not read]"
    return body + _context(block, budget)


def _search_result(block: dict[str, Any], budget: ContentBudget) -> str:
    """A search result handed to the model (Converse ``searchResult``, Anthropic
    ``search_result``): its title, source and text."""
    label = _label("search result", _name(block.get("title")), _name(block.get("source")))
    return _read(label, "", _texts(block.get("content")), False, budget)


def _attachment(block: dict[str, Any], encoded: bool, budget: ContentBudget
                ) -> dict[str, Any] | None:
    """A document or search result attached to a user's message, as a message of its own with
    role ``document`` (``None`` for any other block): content from outside the conversation,
    which the injection detector reads as a document, not as what the user typed."""
    kind = block.get("type")
    if isinstance(block.get("document"), dict):
        name = _name(block["document"].get("name"))
    elif isinstance(block.get("searchResult"), dict):
        name = _name(block["searchResult"].get("title"))
    elif kind in ("document", "search_result"):
        name = _name(block.get("title"))
    else:
        return None
    return {"role": "document", "name": name or "attachment",
            "content": _block_text(block, encoded, budget)}


def _texts(content: Any) -> str:
    """The text blocks of a document's or search result's own content (text only: no nesting)."""
    if isinstance(content, str):
        return content
    return "\n".join(str(block["text"]) for block in _list(content)[:MAX_BLOCKS]
                     if isinstance(block, dict) and isinstance(block.get("text"), str))


def text_of(content: Any, *, encoded: bool = False, budget: ContentBudget | None = None) -> str:
    """Text of an Anthropic/Converse-style content list (or a plain string).

    Documents and search results are untrusted text the model reads: their text is included
    (bounded by ``budget``, one per request). ``encoded``: the content comes from a JSON request
    body, where document bytes are base64 text.
    """
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return "" if content is None else str(content)
    budget = budget if budget is not None else ContentBudget()
    parts: list[str] = []
    for block in content[:MAX_BLOCKS]:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict):
            parts.append(_block_text(block, encoded, budget))
    return "\n".join(parts)


def _block_text(block: dict[str, Any], encoded: bool, budget: ContentBudget) -> str:
    """Text of one content block; a placeholder for what carries no text (images, video)."""
    kind = block.get("type")
    if isinstance(block.get("text"), str):
        return str(block["text"])
    if "json" in block:
        # As the model reads it: text in other scripts and invisible characters stay themselves
        # (json.dumps would escape them, hiding an injection from the scanner), bounded, never
        # raising on what JSON cannot encode.
        return to_json(block["json"], MAX_DOCUMENT)
    if isinstance(block.get("document"), dict):
        return document_text(block["document"], encoded=encoded, budget=budget)
    if kind == "document":
        return _anthropic_document(block, budget)
    if isinstance(block.get("searchResult"), dict):
        return _search_result(block["searchResult"], budget)
    if kind == "search_result":
        return _search_result(block, budget)
    guarded = _map(block.get("guardContent")).get("text")
    if isinstance(guarded, dict) and isinstance(guarded.get("text"), str):
        return str(guarded["text"])  # text a Converse guardrail evaluates, read by the model as well
    if isinstance(block.get("citationsContent"), dict):
        return _cited_text(block["citationsContent"])
    return f"<{kind or next(iter(block), 'block')}>"


def _cited_text(block: dict[str, Any]) -> str:
    """The generated text of a Converse ``citationsContent`` block (an answer with citations
    to the documents it was given comes as these blocks instead of ``text``)."""
    return "".join(str(part["text"]) for part in _list(block.get("content"))[:MAX_BLOCKS]
                   if isinstance(part, dict) and isinstance(part.get("text"), str))


def converse_reasoning(block: Any) -> str | None:
    """The reasoning of a Converse ``reasoningContent`` block (``None`` for another block): its
    ``reasoningText.text``, or :data:`REDACTED_REASONING` for ``redactedContent``."""
    reasoning = block.get("reasoningContent") if isinstance(block, dict) else None
    if not isinstance(reasoning, dict):
        return None
    text = _map(reasoning.get("reasoningText")).get("text")
    if isinstance(text, str):
        return text
    return REDACTED_REASONING if "redactedContent" in reasoning else ""


def anthropic_reasoning(block: Any) -> str | None:
    """The reasoning of an Anthropic ``thinking`` block, :data:`REDACTED_REASONING` for a
    ``redacted_thinking`` block, ``None`` for another block."""
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "thinking":
        text = block.get("thinking")
        return text if isinstance(text, str) else ""
    return REDACTED_REASONING if kind == "redacted_thinking" else None


def _with_reasoning(message: dict[str, Any], reasoning: list[str]) -> dict[str, Any]:
    """``message`` with the reasoning blocks' text (a blank line apart), if there was any."""
    joined = "\n\n".join(piece for piece in reasoning if piece)
    if joined:
        message["reasoning"] = joined
    return message


def anthropic_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Messages of an Anthropic Messages request: system, turns, ``tool_use`` and ``tool_result``."""
    out: list[dict[str, Any]] = []
    budget = ContentBudget()
    system = body.get("system")
    if system:
        out.append({"role": "system", "content": text_of(system, encoded=True, budget=budget)})
    for message in _list(body.get("messages")):
        if not isinstance(message, dict):
            continue
        role = str(message.get("role", "user"))
        content = message.get("content")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        attached: list[dict[str, Any]] = []
        reasoning: list[str] = []
        for block in _list(content):
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            attachment = _attachment(block, True, budget) if role == "user" else None
            thought = anthropic_reasoning(block)
            if attachment is not None:
                attached.append(attachment)
            elif thought is not None:
                # The reasoning of an earlier answer, sent back with it (tool use with thinking).
                reasoning.append(thought)
            elif kind == "tool_result":
                # Tool output is untrusted content; it travels as its own "tool" message.
                out.append({"role": "tool", "tool_call_id": block.get("tool_use_id"),
                            "content": text_of(block.get("content"), encoded=True,
                                               budget=budget)})
            elif kind == "tool_use":
                calls.append({"id": block.get("id"), "name": block.get("name"),
                              "arguments": block.get("input")})
            elif kind or isinstance(block.get("text"), str):
                # Text, and the text of attached documents and search results.
                texts.append(_block_text(block, True, budget))
        if texts or calls or any(reasoning):
            item: dict[str, Any] = {"role": role, "content": "\n".join(texts)}
            if calls:
                item["tool_calls"] = calls
            out.append(_with_reasoning(item, reasoning))
        out.extend(attached)
    return out


def converse_messages(messages: Any, system: Any = None, *,
                      encoded: bool = False) -> list[dict[str, Any]]:
    """Messages in the Converse shape (also Nova's): ``text``, ``toolUse``, ``toolResult`` and
    attached ``document`` / ``searchResult`` blocks (their text, bounded). ``encoded``: a JSON
    body (Nova ``InvokeModel``), where document bytes are base64 text."""
    out: list[dict[str, Any]] = []
    budget = ContentBudget()
    if system:
        text = text_of([block for block in _list(system)
                         if isinstance(block, dict) and "cachePoint" not in block],
                       encoded=encoded, budget=budget)
        if text:
            out.append({"role": "system", "content": text})
    for message in _list(messages):
        if not isinstance(message, dict):
            continue
        role = str(message.get("role", "user"))
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        attached: list[dict[str, Any]] = []
        reasoning: list[str] = []
        for block in _list(message.get("content")):
            if not isinstance(block, dict):
                continue
            attachment = _attachment(block, encoded, budget) if role == "user" else None
            thought = converse_reasoning(block)
            if attachment is not None:
                attached.append(attachment)
            elif thought is not None:
                reasoning.append(thought)
            elif "text" in block:
                texts.append(str(block["text"]))
            elif isinstance(block.get("toolResult"), dict):
                result = block["toolResult"]
                out.append({"role": "tool", "tool_call_id": result.get("toolUseId"),
                            "content": text_of(result.get("content"), encoded=encoded,
                                               budget=budget)})
            elif isinstance(block.get("toolUse"), dict):
                use = block["toolUse"]
                calls.append({"id": use.get("toolUseId"), "name": use.get("name"),
                              "arguments": use.get("input")})
            elif "cachePoint" not in block:
                texts.append(_block_text(block, encoded, budget))
        if texts or calls or any(reasoning):
            entry: dict[str, Any] = {"role": role, "content": "\n".join(texts)}
            if calls:
                entry["tool_calls"] = calls
            out.append(_with_reasoning(entry, reasoning))
        out.extend(attached)
    return out


def prompt_variables(variables: Any) -> dict[str, Any] | None:
    """The ``promptVariables`` of a Converse call on a managed prompt (a prompt ARN as the model
    id), as one user message of ``name: text`` lines: the text the template is filled with,
    which the request's ``messages`` do not hold."""
    lines = [f"{_name(name)}: {value['text']}"
             for name, value in list(_map(variables).items())[:MAX_BLOCKS]
             if isinstance(value, dict) and isinstance(value.get("text"), str)]
    return {"role": "user", "content": "\n".join(lines)} if lines else None


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# Counts and indexes beyond a span attribute's 64-bit integer are not counts.
_MAX_COUNT = 2**63 - 1


def _number(value: Any) -> int | None:
    """A count or index from a response body: a finite number within 64 bits, else ``None``
    (JSON as Python decodes it may hold ``NaN``, ``Infinity`` or integers of any size)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    number = int(value)
    return number if -_MAX_COUNT <= number <= _MAX_COUNT else None


def token_count(value: Any) -> int | None:
    """A token count of a usage field, ``None`` unless it is a number a span can carry."""
    return _number(value)


def parse_json(data: str | bytes | bytearray, default: Any = None) -> Any:
    """``data`` decoded as JSON, or ``default`` when it is not JSON, including JSON nested
    deeper than the decoder can go (a model's output may be that, by accident or by design)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return default


# Why a body was not read whole (the value of agentguard.bedrock.response.truncated).
CUT_DEPTH = "depth"
CUT_INVALID = "invalid_json"
CUT_SIZE = "size"

# Nesting kept when a body is too deep to decode whole: each value below it reads as null.
MAX_DEPTH = 64
# Strings and brackets the depth scan reads at most (about half a second of work); a body with
# more is not decoded at all.
MAX_SCAN_TOKENS = 1 << 18
# Tokens of the depth scan: a whole string (brackets inside it are text), or a run of opening or
# of closing brackets, so a body of a million "[" is one token, not a million. A string that is
# never closed runs to the end of the body, so a string always matches where it starts, in one
# pass: else every quote inside an unclosed string starts another scan to the end (and another
# round of backtracking), and a body of 100 KB of escaped quotes takes hours. The string alone
# also serves the scan that shortens long strings.
_STRING = re.compile(rb'"(?:[^"\\]+|\\.)*(?:"|\\?\Z)', re.S)
_TOKEN = re.compile(_STRING.pattern + rb"|[\[{]+|[\]}]+", re.S)
_DOCUMENT_START = re.compile(rb"\s*[\[{]")
_NOT_READ = object()


def _cut_deep(data: bytes, limit: int) -> tuple[bytes, int] | None:
    """``data`` with every value nested deeper than ``limit`` replaced by ``null``, and how many
    were replaced; ``None`` past :data:`MAX_SCAN_TOKENS`. Unbalanced input is left for the
    decoder to refuse."""
    out: list[bytes] = []
    copied = 0  # data[copied:] is still to be copied; -1 while inside a value being cut
    depth = 0
    cuts = 0
    for scanned, match in enumerate(_TOKEN.finditer(data)):
        if scanned >= MAX_SCAN_TOKENS:
            return None
        start, end = match.span()
        first = data[start]
        if first == 0x22:  # a string
            continue
        count = end - start
        if first in b"[{":
            if depth <= limit < depth + count:
                out.append(data[copied:start + limit - depth])
                copied = -1
            depth += count
            continue
        if depth > limit >= depth - count and copied == -1:
            out.append(b"null")
            copied = start + depth - limit
            cuts += 1
        depth -= count
    if copied >= 0:
        out.append(data[copied:])
    return b"".join(out), cuts


# A high surrogate written as an escape: cut after it, its low half would be lost.
_HIGH_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}")


def _string_cut(data: bytes, start: int, cut: int) -> int:
    """A place at or before ``cut`` to end the string whose text starts at ``start``, such that
    no escape sequence, surrogate pair or UTF-8 character is cut in two."""
    escape = data.rfind(b"\\", max(start, cut - 6), cut)
    if escape >= 0:
        # A run of backslashes begins whole escapes: end before it.
        cut = escape
        while cut > start and data[cut - 1] == 0x5C:
            cut -= 1
    if cut - 6 >= start and _HIGH_SURROGATE.fullmatch(data, cut - 6, cut):
        run = cut - 6
        while run > start and data[run - 1] == 0x5C:
            run -= 1
        if (cut - 6 - run) % 2 == 0:  # the backslash is not itself escaped
            cut -= 6
    while cut > start and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut


def shorten_strings(data: bytes, keep: int) -> bytes | None:
    """``data`` (JSON) with every string longer than ``keep`` bytes cut to at most ``keep``
    (still valid JSON: no escape or character is cut in two), in one pass; ``None`` past
    :data:`MAX_SCAN_TOKENS` strings. What a body past the size decoded whole is made of is
    mostly a few long strings (base64 images and documents); the rest is the prompt."""
    if data.count(b'"') > 2 * MAX_SCAN_TOKENS:
        return None  # too many strings to scan: known at once, without a scan
    out: list[bytes] = []
    copied = 0
    for scanned, match in enumerate(_STRING.finditer(data)):
        if scanned >= MAX_SCAN_TOKENS:
            return None
        start, end = match.span()
        if end - start - 2 <= keep:
            continue
        out.append(data[copied:_string_cut(data, start + 1, start + 1 + keep)])
        out.append(b'"')
        copied = end
    out.append(data[copied:])
    return b"".join(out)


def parse_json_partial(data: str | bytes | bytearray) -> tuple[Any, str | None]:
    """``data`` decoded as JSON as far as it can be read safely, and why it was not read whole.

    ``(value, None)``: it decoded whole. ``(value, "depth")``: values nested deeper than
    :data:`MAX_DEPTH` read as ``null`` (JSON too deep for the decoder, by accident or by design,
    must not hide the rest of an answer). ``(value, "invalid_json")``: a JSON value followed by
    something else, the value read. ``(None, "invalid_json")`` when nothing decodes.
    """
    value = parse_json(data, _NOT_READ)
    if value is not _NOT_READ:
        return value, None
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if _DOCUMENT_START.match(raw) is None:
        return None, CUT_INVALID  # no JSON object or array starts here: nothing to scan for
    scanned = _cut_deep(raw, MAX_DEPTH)
    if scanned is None:
        return None, CUT_DEPTH
    shallow, cuts = scanned
    text = shallow.decode("utf-8", "replace")
    try:
        value, _ = json.JSONDecoder().raw_decode(text, len(text) - len(text.lstrip()))
    except (ValueError, RecursionError):
        return None, CUT_INVALID
    return value, CUT_DEPTH if cuts else CUT_INVALID


def raw_text(data: bytes | bytearray) -> str | None:
    """The first :data:`MAX_TEXT` characters of a body that is not JSON, or ``None`` when it is
    not text either (an image, an archive: there is nothing a reader would see as words)."""
    head = bytes(data[:MAX_TEXT * 4])
    if not _looks_like_text(head[:4096]):
        return None
    return head.decode("utf-8", "replace")[:MAX_TEXT]


def parse_request(family: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]],
                                                                  dict[str, Any]]:
    """The messages and the sampling parameters of an ``InvokeModel`` request body."""
    params: dict[str, Any] = {}
    messages: list[dict[str, Any]] = []
    if family == "anthropic":
        messages = anthropic_messages(body)
        params = {"max_tokens": body.get("max_tokens"), "temperature": body.get("temperature"),
                  "top_p": body.get("top_p"), "stop_sequences": body.get("stop_sequences")}
    elif family == "nova":
        messages = converse_messages(body.get("messages"), body.get("system"), encoded=True)
        config = _map(body.get("inferenceConfig"))
        params = {"max_tokens": config.get("maxTokens", config.get("max_new_tokens")),
                  "temperature": config.get("temperature"),
                  "top_p": config.get("topP", config.get("top_p")),
                  "stop_sequences": config.get("stopSequences")}
    elif family == "titan":
        messages = [{"role": "user", "content": str(body.get("inputText", ""))}]
        config = _map(body.get("textGenerationConfig"))
        params = {"max_tokens": config.get("maxTokenCount"), "temperature": config.get("temperature"),
                  "top_p": config.get("topP"), "stop_sequences": config.get("stopSequences")}
    elif family in ("llama", "mistral", "cohere", "deepseek", "unknown", "ai21"):
        if isinstance(body.get("messages"), list):
            messages = _chat_messages(body["messages"])
        elif isinstance(body.get("message"), str):  # Cohere Command R
            messages = _cohere_chat(body)
        elif isinstance(body.get("prompt"), str):
            messages = [{"role": "user", "content": body["prompt"]}]
        params = {"max_tokens": body.get("max_gen_len", body.get("max_tokens")),
                  "temperature": body.get("temperature"),
                  "top_p": body.get("top_p", body.get("p")),
                  "stop_sequences": body.get("stop", body.get("stop_sequences"))}
    return messages, {k: v for k, v in params.items() if v is not None}


def _chat_calls(calls: Any) -> list[dict[str, Any]]:
    """Tool calls in the chat-completion shape (Mistral, DeepSeek, OpenAI-compatible models):
    ``{"id", "function": {"name", "arguments"}}``, the arguments a JSON string or an object."""
    out: list[dict[str, Any]] = []
    for call in _list(calls)[:MAX_BLOCKS]:
        if not isinstance(call, dict):
            continue
        function = _map(call.get("function"))
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            arguments = parse_json(arguments, arguments)
        out.append({"id": call.get("id"), "name": function.get("name"), "arguments": arguments})
    return out


def _chat_messages(messages: list[Any]) -> list[dict[str, Any]]:
    """Messages in the chat-completion shape: role, content, the assistant's ``tool_calls`` and
    a ``tool`` message's ``tool_call_id`` (the result of the call it answers)."""
    budget = ContentBudget()
    out: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        item: dict[str, Any] = {"role": str(message.get("role", "user")),
                                "content": text_of(message.get("content"), encoded=True,
                                                   budget=budget)}
        calls = _chat_calls(message.get("tool_calls"))
        if calls:
            item["tool_calls"] = calls
        if message.get("tool_call_id") is not None:
            item["tool_call_id"] = str(message["tool_call_id"])
        if isinstance(message.get("name"), str) and message["name"]:
            item["name"] = message["name"]
        out.append(item)
    return out


_COHERE_ROLES = {"USER": "user", "CHATBOT": "assistant", "SYSTEM": "system", "TOOL": "tool"}


def _cohere_calls(calls: Any) -> list[dict[str, Any]]:
    return [{"id": None, "name": call.get("name"), "arguments": call.get("parameters")}
            for call in _list(calls)[:MAX_BLOCKS] if isinstance(call, dict)]


def _cohere_results(results: Any) -> list[dict[str, Any]]:
    """Cohere ``tool_results`` (each the call and its outputs) as ``tool`` messages: untrusted
    content, as a Converse ``toolResult`` is."""
    out: list[dict[str, Any]] = []
    for result in _list(results)[:MAX_BLOCKS]:
        if not isinstance(result, dict):
            continue
        call = _map(result.get("call"))
        out.append({"role": "tool", "name": _name(call.get("name")) or None,
                    "content": to_json(result.get("outputs"), MAX_DOCUMENT)})
    return out


def _cohere_documents(documents: Any, budget: ContentBudget) -> list[dict[str, Any]]:
    """Cohere Command R ``documents`` (grounding passages the model reads) as ``document``
    messages: each passage's text fields as ``field: value`` lines."""
    out: list[dict[str, Any]] = []
    for index, document in enumerate(_list(documents)[:MAX_BLOCKS]):
        if isinstance(document, str):
            text = document
        elif isinstance(document, dict):
            text = "\n".join(f"{key}: {value}" for key, value in document.items()
                             if isinstance(value, str))
        else:
            continue
        name = _name(document.get("title") or document.get("id")) if isinstance(
            document, dict) else ""
        out.append({"role": "document", "name": name or f"document {index}",
                    "content": _bounded(text, budget)})
    return out


def _cohere_chat(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A Cohere Command R chat request: ``preamble`` (system), ``chat_history``, ``documents``,
    the new ``message`` and the ``tool_results`` it sends back."""
    budget = ContentBudget()
    out: list[dict[str, Any]] = []
    if isinstance(body.get("preamble"), str) and body["preamble"]:
        out.append({"role": "system", "content": body["preamble"]})
    for turn in _list(body.get("chat_history")):
        if not isinstance(turn, dict):
            continue
        role = _COHERE_ROLES.get(str(turn.get("role", "")).upper(), "user")
        if role == "tool":
            out.extend(_cohere_results(turn.get("tool_results")))
            continue
        item: dict[str, Any] = {"role": role, "content": str(turn.get("message") or "")}
        calls = _cohere_calls(turn.get("tool_calls"))
        if calls:
            item["tool_calls"] = calls
        out.append(item)
    out.extend(_cohere_documents(body.get("documents"), budget))
    if body["message"]:
        out.append({"role": "user", "content": body["message"]})
    out.extend(_cohere_results(body.get("tool_results")))
    return out


class ModelReply:
    """What a model answered: output messages, finish reasons, usage, response id and model."""

    __slots__ = ("cache_read_tokens", "cache_write_tokens", "finish_reasons", "guardrail_action",
                 "input_tokens", "output", "output_tokens", "response_id", "response_model",
                 "truncated")

    def __init__(self) -> None:
        self.output: list[dict[str, Any]] = []
        self.finish_reasons: list[str] = []
        # Input tokens as Bedrock and Anthropic count them: those not read from or written to
        # the prompt cache, which are counted apart (see total_input_tokens).
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cache_read_tokens: int | None = None
        self.cache_write_tokens: int | None = None
        self.response_id: str | None = None
        self.response_model: str | None = None
        # Why the answer was not read whole (CUT_DEPTH, CUT_INVALID, CUT_SIZE), if it was not.
        self.truncated: str | None = None
        # InvokeModel with a guardrail: "INTERVENED" or "NONE", as the body says.
        self.guardrail_action: str | None = None

    def cache_usage(self, read: Any, write: Any) -> None:
        """Prompt-cache token counts, where the answer gives them."""
        if _number(read) is not None:
            self.cache_read_tokens = _number(read)
        if _number(write) is not None:
            self.cache_write_tokens = _number(write)

    def total_input_tokens(self) -> int | None:
        """All the input tokens, as ``gen_ai.usage.input_tokens`` counts them: Bedrock's and
        Anthropic's input count leaves out the tokens read from and written to the prompt
        cache, which the conventions count in (``None`` when the input count is unknown)."""
        if self.input_tokens is None:
            return None
        total = self.input_tokens + (self.cache_read_tokens or 0) + (self.cache_write_tokens or 0)
        return min(total, _MAX_COUNT)


def _anthropic_output(content: Any) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    reasoning: list[str] = []
    for block in _list(content):
        if not isinstance(block, dict):
            continue
        thought = anthropic_reasoning(block)
        if thought is not None:
            reasoning.append(thought)
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id"), "name": block.get("name"),
                          "arguments": block.get("input")})
        elif isinstance(block.get("text"), str):
            texts.append(block["text"])
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        message["tool_calls"] = calls
    return _with_reasoning(message, reasoning)


def converse_output(message: Any) -> dict[str, Any]:
    """The assistant message of a Converse / Nova response (text, cited text, ``toolUse``
    requests and ``reasoningContent``)."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    reasoning: list[str] = []
    content = message.get("content") if isinstance(message, dict) else None
    for block in _list(content):
        if not isinstance(block, dict):
            continue
        thought = converse_reasoning(block)
        if thought is not None:
            reasoning.append(thought)
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            calls.append({"id": use.get("toolUseId"), "name": use.get("name"),
                          "arguments": use.get("input")})
        elif isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("citationsContent"), dict):
            texts.append(_cited_text(block["citationsContent"]))
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        out["tool_calls"] = calls
    return _with_reasoning(out, reasoning)


def converse_usage(usage: Any, reply: ModelReply) -> None:
    """The token counts of a Converse / Nova ``usage`` (also a stream's ``metadata`` event),
    prompt-cache counts included, into ``reply``. Nova's ``InvokeModel`` body names the cache
    counts ``cacheReadInputTokenCount`` / ``cacheWriteInputTokenCount``."""
    if not isinstance(usage, dict):
        return
    reply.input_tokens = _number(usage.get("inputTokens"))
    reply.output_tokens = _number(usage.get("outputTokens"))
    reply.cache_usage(usage.get("cacheReadInputTokens", usage.get("cacheReadInputTokenCount")),
                      usage.get("cacheWriteInputTokens", usage.get("cacheWriteInputTokenCount")))


def parse_response(family: str, body: dict[str, Any]) -> ModelReply:
    """An ``InvokeModel`` response body as a :class:`ModelReply`."""
    reply = ModelReply()
    if family == "anthropic":
        reply.output = [_anthropic_output(body.get("content"))]
        if body.get("stop_reason"):
            reply.finish_reasons = [str(body["stop_reason"])]
        usage = _map(body.get("usage"))
        reply.input_tokens = _number(usage.get("input_tokens"))
        reply.output_tokens = _number(usage.get("output_tokens"))
        reply.cache_usage(usage.get("cache_read_input_tokens"),
                          usage.get("cache_creation_input_tokens"))
        reply.response_id = body.get("id")
        reply.response_model = body.get("model")
    elif family == "nova":
        output = _map(body.get("output"))
        reply.output = [converse_output(output.get("message"))]
        if body.get("stopReason"):
            reply.finish_reasons = [str(body["stopReason"])]
        converse_usage(body.get("usage"), reply)
    elif family == "titan":
        results = [r for r in _list(body.get("results")) if isinstance(r, dict)]
        reply.output = [{"role": "assistant", "content": str(r.get("outputText", ""))}
                        for r in results]
        reply.finish_reasons = [str(r["completionReason"]) for r in results
                                if r.get("completionReason")]
        reply.input_tokens = _number(body.get("inputTextTokenCount"))
        counts = [_number(r.get("tokenCount")) for r in results]
        reply.output_tokens = sum(c for c in counts if c is not None) if results else None
    elif family == "llama" or "generation" in body:
        reply.output = [{"role": "assistant", "content": str(body.get("generation", ""))}]
        if body.get("stop_reason"):
            reply.finish_reasons = [str(body["stop_reason"])]
        reply.input_tokens = _number(body.get("prompt_token_count"))
        reply.output_tokens = _number(body.get("generation_token_count"))
    elif isinstance(body.get("outputs"), list):  # Mistral prompt form
        outputs = [o for o in body["outputs"] if isinstance(o, dict)]
        reply.output = [{"role": "assistant", "content": str(o.get("text", ""))} for o in outputs]
        reply.finish_reasons = [str(o["stop_reason"]) for o in outputs if o.get("stop_reason")]
    elif isinstance(body.get("choices"), list):
        # Chat-completion form (Mistral, AI21 Jamba, OpenAI-compatible models), or a completion's
        # choices with "text" (DeepSeek).
        for choice in body["choices"][:MAX_BLOCKS]:
            if not isinstance(choice, dict):
                continue
            message = _map(choice.get("message"))
            text = message.get("content") if message else choice.get("text")
            item: dict[str, Any] = {"role": "assistant", "content": text_of(text)}
            calls = _chat_calls(message.get("tool_calls"))
            if calls:
                item["tool_calls"] = calls
            reply.output.append(item)
            if choice.get("finish_reason") or choice.get("stop_reason"):
                reply.finish_reasons.append(str(choice.get("finish_reason")
                                                or choice.get("stop_reason")))
        usage = _map(body.get("usage"))
        reply.input_tokens = _number(usage.get("prompt_tokens"))
        reply.output_tokens = _number(usage.get("completion_tokens"))
    elif isinstance(body.get("text"), str):  # Cohere Command R
        message = {"role": "assistant", "content": body["text"]}
        calls = _cohere_calls(body.get("tool_calls"))
        if calls:
            message["tool_calls"] = calls
        reply.output = [message]
        if body.get("finish_reason"):
            reply.finish_reasons = [str(body["finish_reason"])]
    elif isinstance(body.get("generations"), list):  # Cohere Command (text generation)
        generations = [g for g in body["generations"][:MAX_BLOCKS] if isinstance(g, dict)]
        reply.output = [{"role": "assistant", "content": str(g.get("text", ""))}
                        for g in generations]
        reply.finish_reasons = [str(g["finish_reason"]) for g in generations
                                if g.get("finish_reason")]
    action = body.get(GUARDRAIL_ACTION_FIELD)
    if isinstance(action, str):
        reply.guardrail_action = action
    return reply


class StreamAccumulator:
    """Rebuilds the answer from the chunks of ``InvokeModelWithResponseStream`` (bounded)."""

    __slots__ = ("_blocks", "_size", "_thought", "family", "reply")

    def __init__(self, family: str) -> None:
        self.family = family
        self.reply = ModelReply()
        # content block index → [kind, text or JSON fragments, tool id, tool name]; kinds:
        # "text", "tool", "reasoning" and "redacted" (reasoning returned only encrypted)
        self._blocks: dict[int, list[Any]] = {}
        self._size = 0
        # Reasoning kept so far: bounded apart, so that a long reasoning cannot crowd out the
        # answer that follows it (the text the Guard judges).
        self._thought = 0

    def _append(self, index: int, kind: str, text: str, call_id: Any = None,
                name: Any = None) -> None:
        block = self._blocks.get(index)
        if block is None:
            if len(self._blocks) >= MAX_BLOCKS:
                return
            block = self._blocks[index] = [kind, [], call_id, name]
        else:  # a later fragment may be the first to name its call
            block[2] = block[2] if block[2] is not None else call_id
            block[3] = block[3] if block[3] is not None else name
        if not text:
            return
        if block[0] == "reasoning":
            if self._thought < MAX_TEXT:
                text = text[:MAX_TEXT - self._thought]
                block[1].append(text)
                self._thought += len(text)
        elif self._size < MAX_TEXT:
            text = text[:MAX_TEXT - self._size]
            block[1].append(text)
            self._size += len(text)

    def add(self, chunk: dict[str, Any]) -> None:
        """One decoded chunk (the JSON inside ``{"chunk": {"bytes": ...}}``)."""
        metrics = chunk.get("amazon-bedrock-invocationMetrics")
        if isinstance(metrics, dict):
            self.reply.input_tokens = _number(metrics.get("inputTokenCount"))
            self.reply.output_tokens = _number(metrics.get("outputTokenCount"))
            self.reply.cache_usage(metrics.get("cacheReadInputTokenCount"),
                                   metrics.get("cacheWriteInputTokenCount"))
        action = chunk.get(GUARDRAIL_ACTION_FIELD)
        if isinstance(action, str):
            self.reply.guardrail_action = action
        family = self.family
        if family == "anthropic":
            self._anthropic(chunk)
        elif family == "nova":
            self._nova(chunk)
        elif family == "titan":
            if isinstance(chunk.get("outputText"), str):
                self._append(0, "text", chunk["outputText"])
            if chunk.get("completionReason"):
                self.reply.finish_reasons = [str(chunk["completionReason"])]
        elif isinstance(chunk.get("generation"), str):
            self._append(0, "text", chunk["generation"])
            if chunk.get("stop_reason"):
                self.reply.finish_reasons = [str(chunk["stop_reason"])]
        elif isinstance(chunk.get("outputs"), list):
            for output in chunk["outputs"]:
                if isinstance(output, dict):
                    self._append(0, "text", str(output.get("text", "")))
                    if output.get("stop_reason"):
                        self.reply.finish_reasons = [str(output["stop_reason"])]
        elif isinstance(chunk.get("choices"), list):
            self._choices(chunk["choices"])
        elif isinstance(chunk.get("event_type"), str):
            self._cohere_event(chunk)
        elif isinstance(chunk.get("text"), str):
            self._append(0, "text", chunk["text"])
        elif isinstance(chunk.get("generations"), list):  # Cohere Command, streamed
            for generation in chunk["generations"][:MAX_BLOCKS]:
                if isinstance(generation, dict):
                    self._append(0, "text", str(generation.get("text", "")))
                    if generation.get("finish_reason"):
                        self.reply.finish_reasons = [str(generation["finish_reason"])]

    def _cohere_event(self, chunk: dict[str, Any]) -> None:
        """A Cohere Command R stream event: text pieces, the tool calls asked for (once, whole),
        and the finish reason at the end."""
        kind = chunk["event_type"]
        if kind == "text-generation" and isinstance(chunk.get("text"), str):
            self._append(0, "text", chunk["text"])
        elif kind == "tool-calls-generation":
            for position, call in enumerate(_cohere_calls(chunk.get("tool_calls"))):
                arguments = call["arguments"]
                self._append(1 + position, "tool",
                             "" if arguments is None else to_json(arguments, MAX_TEXT), None,
                             call["name"])
        elif kind == "stream-end" and chunk.get("finish_reason"):
            self.reply.finish_reasons = [str(chunk["finish_reason"])]

    def _choices(self, choices: list[Any]) -> None:
        """A chat-completion chunk (Mistral, OpenAI-compatible models: the first choice's
        ``message`` or ``delta``) or a completion chunk (DeepSeek: ``text``). Tool calls come as
        fragments keyed by their ``index``, each after the text block."""
        choice = choices[0] if choices and isinstance(choices[0], dict) else {}
        message = _map(choice.get("delta")) or _map(choice.get("message"))
        text = message.get("content") if message else choice.get("text")
        if isinstance(text, str):
            self._append(0, "text", text)
        for position, call in enumerate(_list(message.get("tool_calls"))[:MAX_BLOCKS]):
            if not isinstance(call, dict):
                continue
            index = _number(call.get("index"))
            function = _map(call.get("function"))
            arguments = function.get("arguments")
            if not isinstance(arguments, str):
                arguments = "" if arguments is None else to_json(arguments, MAX_TEXT)
            self._append(1 + (position if index is None else max(0, index)), "tool", arguments,
                         call.get("id"), function.get("name"))
        reason = choice.get("finish_reason") or choice.get("stop_reason")
        if reason:
            self.reply.finish_reasons = [str(reason)]

    def _anthropic(self, chunk: dict[str, Any]) -> None:
        kind = chunk.get("type")
        if kind == "content_block_delta":
            delta = _map(chunk.get("delta"))
            index = _number(chunk.get("index")) or 0
            delta_kind = delta.get("type")
            if delta_kind == "input_json_delta":
                self._append(index, "tool", str(delta.get("partial_json", "")))
            elif delta_kind == "thinking_delta":
                self._append(index, "reasoning", str(delta.get("thinking") or ""))
            elif delta_kind == "signature_delta":
                pass  # the signature that vouches for the reasoning: not content, never kept
            elif isinstance(delta.get("text"), str):
                self._append(index, "text", delta["text"])
        elif kind == "content_block_start":
            block = _map(chunk.get("content_block"))
            index = _number(chunk.get("index")) or 0
            block_kind = block.get("type")
            if block_kind == "tool_use":
                self._append(index, "tool", "", block.get("id"), block.get("name"))
            elif block_kind == "redacted_thinking":
                self._append(index, "redacted", "")
            elif block_kind == "thinking":
                self._append(index, "reasoning", str(block.get("thinking") or ""))
            elif isinstance(block.get("text"), str):
                self._append(index, "text", block["text"])
        elif kind == "message_start":
            message = _map(chunk.get("message"))
            self.reply.response_id = message.get("id")
            self.reply.response_model = message.get("model")
            usage = _map(message.get("usage"))
            if self.reply.input_tokens is None:
                self.reply.input_tokens = _number(usage.get("input_tokens"))
            self.reply.cache_usage(usage.get("cache_read_input_tokens"),
                                   usage.get("cache_creation_input_tokens"))
        elif kind == "message_delta":
            delta = _map(chunk.get("delta"))
            if delta.get("stop_reason"):
                self.reply.finish_reasons = [str(delta["stop_reason"])]
            usage = _map(chunk.get("usage"))
            if usage.get("output_tokens") is not None and self.reply.output_tokens is None:
                self.reply.output_tokens = _number(usage.get("output_tokens"))

    def _nova(self, chunk: dict[str, Any]) -> None:
        if isinstance(chunk.get("contentBlockDelta"), dict):
            event = chunk["contentBlockDelta"]
            delta = _map(event.get("delta"))
            index = _number(event.get("contentBlockIndex")) or 0
            if isinstance(delta.get("text"), str):
                self._append(index, "text", delta["text"])
            elif isinstance(delta.get("toolUse"), dict):
                self._append(index, "tool", str(delta["toolUse"].get("input", "")))
            elif isinstance(delta.get("reasoningContent"), dict):
                # Pieces of reasoning text, its signature (never kept) or, for reasoning the
                # provider encrypted, its opaque bytes (never kept either).
                thought = delta["reasoningContent"]
                if isinstance(thought.get("text"), str):
                    self._append(index, "reasoning", thought["text"])
                elif "redactedContent" in thought:
                    self._append(index, "redacted", "")
        elif isinstance(chunk.get("contentBlockStart"), dict):
            event = chunk["contentBlockStart"]
            start = _map(event.get("start"))
            use = start.get("toolUse")
            if isinstance(use, dict):
                self._append(_number(event.get("contentBlockIndex")) or 0, "tool", "",
                             use.get("toolUseId"), use.get("name"))
        elif isinstance(chunk.get("messageStop"), dict):
            reason = chunk["messageStop"].get("stopReason")
            if reason:
                self.reply.finish_reasons = [str(reason)]
        elif isinstance(chunk.get("metadata"), dict):
            converse_usage(chunk["metadata"].get("usage"), self.reply)

    def result(self) -> ModelReply:
        """The reply so far (complete once the stream ended)."""
        self.reply.output = [assemble(self._blocks)] if self._blocks else []
        return self.reply


def assemble(blocks: dict[int, list[Any]]) -> dict[str, Any]:
    """One assistant message from accumulated blocks ``[kind, fragments, tool id, tool name]``."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    reasoning: list[str] = []
    for index in sorted(blocks):
        kind, fragments, call_id, name = blocks[index]
        joined = "".join(fragments)
        if kind == "tool":
            arguments = parse_json(joined, joined) if joined else {}
            calls.append({"id": call_id, "name": name, "arguments": arguments})
        elif kind == "reasoning":
            reasoning.append(joined)
        elif kind == "redacted":
            reasoning.append(REDACTED_REASONING)
        else:
            texts.append(joined)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        message["tool_calls"] = calls
    return _with_reasoning(message, reasoning)


# -- embeddings ----------------------------------------------------------------------------------

# Request fields only an embedding model's Titan-shaped body has (a Titan Text body has
# textGenerationConfig instead).
_TITAN_EMBEDDING_FIELDS = ("dimensions", "normalize", "embeddingTypes", "inputImage",
                           "embeddingConfig")


# TwelveLabs Marengo's input types (2.7 and 3.0).
_MARENGO_INPUTS = frozenset({"text", "image", "video", "audio", "text_image", "multi_input"})
# Nova multimodal embeddings' parameters: one embedding (InvokeModel), or a segmented one for a
# long input (StartAsyncInvoke).
_NOVA_EMBEDDING_PARAMS = ("singleEmbeddingParams", "segmentedEmbeddingParams")


def _is_marengo(body: dict[str, Any]) -> bool:
    kind = body.get("inputType")
    return isinstance(kind, str) and kind in _MARENGO_INPUTS


def is_embedding(model_id: str | None, body: Any) -> bool:
    """Whether an ``InvokeModel`` or ``StartAsyncInvoke`` call asks an embedding model for
    vectors: the model id says so (``amazon.titan-embed-*``, ``cohere.embed-*``,
    ``amazon.nova-*-embeddings-*``, ``twelvelabs.marengo-embed-*``) or, for an id that names no
    model family (an application inference profile ARN), the body's shape does."""
    model = (model_id or "").lower()
    if "embed" in model:
        return True
    if family_of(model) != "unknown" or not isinstance(body, dict):
        return False
    if "input_type" in body and any(key in body for key in ("texts", "images", "inputs")):
        return True  # Cohere Embed
    if any(isinstance(body.get(key), dict) for key in _NOVA_EMBEDDING_PARAMS):
        return True  # Nova multimodal embeddings
    if _is_marengo(body):
        return True  # TwelveLabs Marengo
    return "inputText" in body and "textGenerationConfig" not in body and any(
        key in body for key in _TITAN_EMBEDDING_FIELDS)


class EmbeddingRequest:
    """What an embedding request asks for: its inputs as user messages, the dimension count and
    the encoding formats it names."""

    __slots__ = ("dimensions", "formats", "messages")

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.dimensions: int | None = None
        self.formats: list[str] = []


def _dimension(value: Any) -> int | None:
    number = _number(value)
    return number if number is not None and number > 0 else None


def _formats(value: Any) -> list[str]:
    return [str(item)[:MAX_NAME] for item in _list(value)[:16] if isinstance(item, str)]


def _marengo_inputs(body: dict[str, Any]) -> list[str]:
    """A TwelveLabs Marengo request's text and a placeholder per media input: 2.7 keeps them at
    the top (``inputText``, ``mediaSource``), 3.0 under the input type's key (``text``,
    ``text_image``, ``multi_input`` with its ``mediaSources``, ...)."""
    kind = str(body["inputType"])
    inputs: list[str] = []
    for holder in (body, _map(body.get(kind))):
        if isinstance(holder.get("inputText"), str) and holder["inputText"]:
            inputs.append(holder["inputText"])
        if holder.get("mediaSource"):
            inputs.append("<image>" if kind == "text_image" else f"<{kind[:16]}>")
        for media in _list(holder.get("mediaSources"))[:MAX_IMAGES]:
            media_type = _map(media).get("mediaType")
            inputs.append(f"<{media_type[:16]}>" if isinstance(media_type, str) and media_type
                          else "<image>")
    return inputs


def embedding_request(body: Any) -> EmbeddingRequest:
    """The inputs of a Titan, Cohere, Nova or TwelveLabs Marengo embedding request (an image,
    video or audio input as a placeholder: it carries no text), its ``dimensions`` and its
    encoding formats."""
    request = EmbeddingRequest()
    if not isinstance(body, dict):
        return request
    inputs: list[str] = []
    nova = next((body[key] for key in _NOVA_EMBEDDING_PARAMS if isinstance(body.get(key), dict)),
                None)
    if _is_marengo(body):  # TwelveLabs Marengo
        inputs = _marengo_inputs(body)
    elif "inputText" in body or "inputImage" in body:  # Titan
        if isinstance(body.get("inputText"), str):
            inputs.append(body["inputText"])
        if body.get("inputImage"):
            inputs.append("<image>")
        request.dimensions = _dimension(body.get("dimensions")) or _dimension(
            _map(body.get("embeddingConfig")).get("outputEmbeddingLength"))
        request.formats = _formats(body.get("embeddingTypes"))
    elif nova is not None:  # Nova
        params = nova
        text = _map(params.get("text"))
        if isinstance(text.get("value"), str):
            inputs.append(text["value"])
        inputs.extend(f"<{kind}>" for kind in ("image", "video", "audio") if kind in params)
        request.dimensions = _dimension(params.get("embeddingDimension"))
    else:  # Cohere Embed: texts, images, or (v4) inputs of mixed content
        inputs.extend(text for text in _list(body.get("texts"))[:MAX_BLOCKS]
                      if isinstance(text, str))
        inputs.extend("<image>" for _ in _list(body.get("images"))[:MAX_BLOCKS])
        budget = ContentBudget()
        for item in _list(body.get("inputs"))[:MAX_BLOCKS]:
            content = _map(item).get("content")
            inputs.append(text_of(content, encoded=True, budget=budget))
        request.dimensions = _dimension(body.get("output_dimension"))
        request.formats = _formats(body.get("embedding_types"))
    request.messages = [{"role": "user", "content": text} for text in inputs[:MAX_BLOCKS]]
    return request


def _vector_length(value: Any) -> int | None:
    """The length of the first vector in ``value``: a vector, a list of them, or a map of
    encoding format to either."""
    if isinstance(value, dict):
        value = next(iter(value.values()), None)
    if isinstance(value, list) and value and isinstance(value[0], list):
        value = value[0]
    if not isinstance(value, list) or not value:
        return None
    return len(value)


def embedding_response(body: Any) -> tuple[int | None, int | None]:
    """The input token count (Titan's body gives it) and the dimension count of an embedding
    answer (Titan ``embedding`` / ``embeddingsByType``, Cohere ``embeddings``, Nova
    ``embeddings[].embedding``, TwelveLabs Marengo ``data[].embedding`` or ``data.embedding``)."""
    if not isinstance(body, dict):
        return None, None
    tokens = _number(body.get("inputTextTokenCount"))
    if "embedding" in body or "embeddingsByType" in body:
        return tokens, _vector_length(body.get("embedding") or body.get("embeddingsByType"))
    data = body.get("data")
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if isinstance(data, dict):
        return tokens, _vector_length(data.get("embedding"))
    embeddings = body.get("embeddings")
    if isinstance(embeddings, list) and embeddings and isinstance(embeddings[0], dict):
        return tokens, _vector_length(embeddings[0].get("embedding"))
    return tokens, _vector_length(embeddings)


# -- image generation ----------------------------------------------------------------------------

# Model ids of the image generation models on Bedrock (also inside inference profile ids).
_IMAGE_MODELS = ("amazon.titan-image-generator", "amazon.nova-canvas", "stability.")
# The task parameters of a Titan Image Generator / Nova Canvas request, one per task type.
_IMAGE_TASKS = ("textToImageParams", "inPaintingParams", "outPaintingParams",
                "imageVariationParams", "colorGuidedGenerationParams", "backgroundRemovalParams",
                "virtualTryOnParams")
# Fields of those parameters (and of Stability's bodies) that carry an input image.
_IMAGE_INPUTS = ("image", "conditionImage", "maskImage", "referenceImage", "sourceImage",
                 "init_image", "mask")
# Fields only a Stability SD3 / Stable Image body has beside its prompt.
_STABILITY_FIELDS = ("aspect_ratio", "output_format", "negative_prompt", "style_preset")
MAX_IMAGES = 64


def is_image_generation(model_id: str | None, body: Any) -> bool:
    """Whether an ``InvokeModel`` call asks an image generation model for images: Amazon Titan
    Image Generator, Amazon Nova Canvas or a Stability model by its id or, for an id that names
    no model family (an application inference profile ARN), by the body's shape."""
    model = (model_id or "").lower()
    if any(marker in model for marker in _IMAGE_MODELS):
        return True
    if family_of(model) != "unknown" or not isinstance(body, dict):
        return False
    if isinstance(body.get("taskType"), str):  # Titan Image Generator, Nova Canvas
        return any(isinstance(body.get(task), dict) for task in _IMAGE_TASKS) or \
            isinstance(body.get("imageGenerationConfig"), dict)
    if isinstance(body.get("text_prompts"), list):  # Stability SDXL
        return True
    return isinstance(body.get("prompt"), str) and (
        body.get("mode") in ("text-to-image", "image-to-image")
        or any(key in body for key in _STABILITY_FIELDS))


class ImageRequest:
    """What an image generation request asks for: its prompts as user messages (the prompt,
    then the negative and mask prompts, named so, and a placeholder per input image), the
    prompt alone, and the image count and seed it names."""

    __slots__ = ("count", "messages", "prompt", "seed")

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.prompt: str | None = None
        self.count: int | None = None
        self.seed: int | None = None


def _input_images(params: dict[str, Any]) -> int:
    count = sum(1 for key in _IMAGE_INPUTS if params.get(key))
    return count + len(_list(params.get("images")))


def image_request(body: Any) -> ImageRequest:
    """The prompts of a Titan Image Generator, Nova Canvas or Stability request (input images
    as placeholders: their base64 is never read), the image count and the seed."""
    request = ImageRequest()
    if not isinstance(body, dict):
        return request
    negative: list[str] = []
    masks: list[str] = []
    images = 0
    # Every task's parameters the body carries, not only the first or the one ``taskType``
    # names: which one the model reads is the service's choice, each is judged.
    tasks = [body[key] for key in _IMAGE_TASKS if isinstance(body.get(key), dict)]
    if tasks:  # Titan Image Generator, Nova Canvas
        prompts = [task["text"] for task in tasks if isinstance(task.get("text"), str)]
        request.prompt = "\n".join(text for text in prompts if text) or None
        for task in tasks:
            if isinstance(task.get("negativeText"), str):
                negative.append(task["negativeText"])
            for holder in (task, _map(task.get("promptBasedMask"))):  # Nova Canvas try-on
                if isinstance(holder.get("maskPrompt"), str):
                    masks.append(holder["maskPrompt"])
            images += _input_images(task) + _input_images(_map(task.get("imageBasedMask")))
        config = _map(body.get("imageGenerationConfig"))
        request.count = _number(config.get("numberOfImages"))
        request.seed = _number(config.get("seed"))
    elif isinstance(body.get("text_prompts"), list):  # Stability SDXL: weighted prompts
        positive: list[str] = []
        for item in body["text_prompts"][:MAX_BLOCKS]:
            text = _map(item).get("text")
            if isinstance(text, str):
                weight = _map(item).get("weight")
                below = isinstance(weight, (int, float)) and weight < 0
                (negative if below else positive).append(text)
        request.prompt = "\n".join(positive) or None
        images = _input_images(body)
        request.count = _number(body.get("samples"))
        request.seed = _number(body.get("seed"))
    else:  # Stability SD3, Stable Image Core / Ultra and the Stable Image services
        if isinstance(body.get("prompt"), str):
            request.prompt = body["prompt"]
        if isinstance(body.get("negative_prompt"), str):
            negative.append(body["negative_prompt"])
        if isinstance(body.get("search_prompt"), str):  # search-and-replace / recolor
            masks.append(body["search_prompt"])
        if isinstance(body.get("select_prompt"), str):
            masks.append(body["select_prompt"])
        images = _input_images(body)
        request.seed = _number(body.get("seed"))
    messages: list[dict[str, Any]] = []
    if request.prompt:
        messages.append({"role": "user", "content": request.prompt})
    messages.extend({"role": "user", "name": "negative_prompt", "content": text}
                    for text in negative if text)
    messages.extend({"role": "user", "name": "mask_prompt", "content": text}
                    for text in masks if text)
    messages.extend({"role": "user", "content": "<image>"} for _ in range(min(images, MAX_IMAGES)))
    request.messages = messages
    return request


class ImageReply:
    """What an image generation answer holds, without its images: how many, their total size in
    bytes (from the base64 text's length: nothing is decoded), and the finish reasons given."""

    __slots__ = ("count", "finish_reasons", "size")

    def __init__(self) -> None:
        self.count: int | None = None
        self.size = 0
        self.finish_reasons: list[str] = []

    def add(self, encoded: Any) -> None:
        if self.count is None:
            self.count = 0
        self.count += 1
        if isinstance(encoded, str):
            self.size += len(encoded) * 3 // 4 - (len(encoded) - len(encoded.rstrip("=")))


def image_response(body: Any) -> ImageReply:
    """The images of a Titan / Nova Canvas (``images``, ``maskImage``, ``error``), Stability
    (``images``, ``finish_reasons``) or Stability SDXL (``artifacts``) answer, counted and
    sized."""
    reply = ImageReply()
    if not isinstance(body, dict):
        return reply
    if isinstance(body.get("artifacts"), list):
        reply.count = 0
        for artifact in body["artifacts"]:
            artifact = _map(artifact)
            reply.add(artifact.get("base64"))
            if isinstance(artifact.get("finishReason"), str):
                reply.finish_reasons.append(artifact["finishReason"][:MAX_NAME])
        return reply
    if isinstance(body.get("images"), list):
        reply.count = 0
        for image in body["images"]:
            reply.add(image)
    if body.get("maskImage"):
        reply.add(body["maskImage"])
    reasons = [str(reason)[:MAX_NAME] for reason in _list(body.get("finish_reasons"))
               if isinstance(reason, str)]
    if isinstance(body.get("error"), str) and body["error"]:
        reasons.append("content_filter" if "filter" in body["error"].lower() else "error")
    reply.finish_reasons = reasons[:MAX_BLOCKS]
    return reply


# -- video generation (StartAsyncInvoke) ---------------------------------------------------------

# Model ids of the video generation models on Bedrock (also inside inference profile ids).
_VIDEO_MODELS = ("amazon.nova-reel", "luma.ray")
# Nova Reel's task parameters, one per task type.
_VIDEO_TASKS = ("textToVideoParams", "multiShotAutomatedParams", "multiShotManualParams")
MAX_SHOTS = 64


def is_video_generation(model_id: str | None, body: Any) -> bool:
    """Whether a ``StartAsyncInvoke`` call asks a video generation model for a video: Amazon Nova
    Reel or Luma Ray by its id or, for an id that names no model family (an application
    inference profile ARN), a body with one of Nova Reel's task parameters or a ``prompt``."""
    model = (model_id or "").lower()
    if any(marker in model for marker in _VIDEO_MODELS):
        return True
    if family_of(model) != "unknown" or not isinstance(body, dict):
        return False
    # Luma Ray's body is a prompt and its settings.
    return any(isinstance(body.get(task), dict) for task in _VIDEO_TASKS) or \
        isinstance(body.get("prompt"), str)


def video_request(body: Any) -> ImageRequest:
    """The prompts of a Nova Reel (one text, or one per shot) or Luma Ray (``prompt``) request
    as user messages, a placeholder per input image (never read), and the seed. The prompt is
    the texts, a line apart."""
    request = ImageRequest()
    if not isinstance(body, dict):
        return request
    texts: list[str] = []
    images = 0
    # Every task's parameters the body carries (as for an image model), and a Luma prompt.
    for task in (body[key] for key in _VIDEO_TASKS if isinstance(body.get(key), dict)):
        shots = [_map(shot) for shot in _list(task.get("shots"))[:MAX_SHOTS]] or [task]
        for shot in shots:
            if isinstance(shot.get("text"), str) and shot["text"]:
                texts.append(shot["text"])
            images += len(_list(shot.get("images"))) + (1 if shot.get("image") else 0)
        request.seed = _number(_map(body.get("videoGenerationConfig")).get("seed"))
    if isinstance(body.get("prompt"), str) and body["prompt"]:  # Luma Ray
        texts.append(body["prompt"])
    request.prompt = "\n".join(texts) or None
    request.messages = [{"role": "user", "content": text} for text in texts]
    request.messages.extend({"role": "user", "content": "<image>"}
                            for _ in range(min(images, MAX_IMAGES)))
    return request
