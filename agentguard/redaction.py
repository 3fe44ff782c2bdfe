"""Secret redaction for captured content: cloud keys, tokens, private keys, URL passwords, JWTs.

Every pattern starts with a literal and uses bounded repetition (the body of a private key, which
runs to its END line or to the end of the text, is matched lazily), so the work is linear in the
input. Look-behinds are placed after the leading literal: a leading look-behind would stop the
regex engine from skipping ahead to the literal, making every search an order of magnitude
slower. Rules are gated on a character or substring they cannot match without, tokens with a
'-' or '_' are found by one search led by that character, and secret-looking assignments
(``password=...``, ``"api_key": "..."``, ``Authorization: ...``) by one pattern per key word run
on the lower-cased text instead of one case-insensitive pattern. Together this keeps the common
case (no secret anywhere) at a few microseconds per kilobyte.

Recognised (and replaced by ``[REDACTED:<kind>]``):

* PEM private keys (``-----BEGIN ... PRIVATE KEY-----``, including PGP key blocks); a key without
  its ``-----END`` line is redacted to the end of the text.
* AWS access key ids (``AKIA...`` / ``ASIA...``).
* JWTs (``eyJ...eyJ...``), also when cut before the signature.
* Provider tokens: OpenAI / Anthropic (``sk-``), GitHub (``ghp_`` and friends, ``github_pat_``),
  Slack (``xox?-``, ``xapp-``), GitLab (``glpat-`` and friends), Google (``AIza``, ``ya29.``),
  Stripe (``sk_live_``/``rk_test_``...), Hugging Face (``hf_``), npm (``npm_``), PyPI.
* Slack and Discord webhook URLs.
* Passwords in URLs (``scheme://user:password@host``; the user name is kept).
* ``Bearer <token>`` and ``Basic <base64 of user:password>``.
* ``--password <value>``-style command-line flags and ``-u/--user user:password``. Short flags
  such as ``-p`` are not recognised: they are too ambiguous (``-p 8080``).
* Assignments whose key names a secret: passwords, pass phrases, secrets, tokens (but not
  ``max_tokens``), credentials, ``Authorization``, cookies, URL signatures and ``*_key`` names
  qualified as secret (``api_key``, ``secret_access_key``, ``AccountKey``, upper-case
  ``FOO_KEY``; not ``primary_key`` or ``sort_key``). Separators ``=``, ``:``, ``:=``, ``=>``
  and ``==``, or an XML element (``<password>...</password>``); values bare, quoted, or quoted
  with escaped quotes inside JSON strings.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import re
from collections.abc import Callable

__all__ = ["REDACTION_RULES", "redact"]


def _marker(name: str) -> str:
    return f"[REDACTED:{name}]"


_ALREADY = "[REDACTED"

_Edit = tuple[int, int, str]  # replace text[start:end] with the string


def _splice(text: str, edits: list[_Edit]) -> str:
    """Apply non-overlapping ``edits`` given in increasing order."""
    if not edits:
        return text
    parts: list[str] = []
    done = 0
    for start, end, replacement in edits:
        parts.append(text[done:start])
        parts.append(replacement)
        done = end
    parts.append(text[done:])
    return "".join(parts)


def _starts_word(prefix: str) -> str:
    """A look-behind, placed right after ``prefix``: the prefix starts a word.

    Before it may be anything but a word character or '-', except the 'n' of a JSON escape such
    as ``\n`` (a token at the start of a line of JSON-encoded text).
    """
    return rf"(?:(?<![\w-]{prefix})|(?<=\\[nrt]{prefix}))"


# --------------------------------------------------------------------------------------------
# Secrets recognised by their own shape.

_PRIVATE_KEY = re.compile(
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    r"[\s\S]*?(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)"
)

# AWS access key ids and Google API keys, found by one search led by 'A'.
_AWS_OR_GOOGLE = re.compile(
    r"A(?:(?P<aws>(?<![A-Z0-9]A)[KS]IA[A-Z0-9]{16}(?![A-Z0-9]))"
    rf"|(?P<google>{_starts_word('A')}Iza[0-9A-Za-z_-]{{35}}))"
)

_JWT = re.compile(
    rf"eyJ{_starts_word('eyJ')}[\w-]{{4,8192}}\.eyJ[\w-]{{4,65536}}(?:\.[\w-]{{0,8192}})?"
)

# Provider tokens. Those containing '-' or '_' are found by one search each, led by that
# character, with fixed-width look-behinds for the prefix in front of it; the group name says how
# long the prefix is. (One search led by a single character is much cheaper than a dozen searches
# led by the prefixes.)
_TOKENS_DASH = re.compile(
    r"-(?:"
    rf"(?P<p2>(?<=sk-){_starts_word('sk-')}[A-Za-z0-9_-]{{20,1024}})"
    rf"|(?P<p4>(?<=xox[abposre]-){_starts_word('xox[abposre]-')}[A-Za-z0-9-]{{10,255}}"
    rf"|(?<=xapp-){_starts_word('xapp-')}[0-9]-[A-Za-z0-9-]{{10,255}}"
    rf"|(?<=pypi-){_starts_word('pypi-')}AgE[A-Za-z0-9_-]{{50,1024}}"
    rf"|(?<=gl(?:dt|rt|ft)-){_starts_word('gl(?:dt|rt|ft)-')}[A-Za-z0-9_-]{{20,255}})"
    rf"|(?P<p5>(?<=gl(?:pat|ptt|cbt|imt)-){_starts_word('gl(?:pat|ptt|cbt|imt)-')}"
    r"[A-Za-z0-9_-]{20,255})"
    r")"
)
_TOKENS_UNDERSCORE = re.compile(
    r"_(?:"
    rf"(?P<p3>(?<=gh[pousr]_){_starts_word('gh[pousr]_')}[A-Za-z0-9]{{36,255}}"
    rf"|(?<=npm_){_starts_word('npm_')}[A-Za-z0-9]{{36,64}})"
    rf"|(?P<p6>(?<=github_){_starts_word('github_')}pat_[A-Za-z0-9_]{{22,255}})"
    rf"|(?P<p2>(?<=[rs]k_){_starts_word('[rs]k_')}(?:live|test)_[A-Za-z0-9]{{16,247}}"
    rf"|(?<=hf_){_starts_word('hf_')}[A-Za-z0-9]{{30,64}})"
    r")"
)
_PREFIX_LENGTH = {"p2": 2, "p3": 3, "p4": 4, "p5": 5, "p6": 6}
_GOOGLE_OAUTH = re.compile(rf"ya29\.{_starts_word('ya29.')}[0-9A-Za-z_-]{{20,2048}}")

_WEBHOOKS = [
    (
        re.compile(r"(hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9_/-]{8,256}"),
        r"\1" + _marker("token"),
    ),
    (
        re.compile(r"(discord(?:app)?\.com/api/webhooks/[0-9]{1,30}/)[A-Za-z0-9_-]{8,256}"),
        r"\1" + _marker("token"),
    ),
]

# scheme://user:password@host. The password may contain '@' and ':' (the last '@' ends it) but
# not white space, '/', '\\', ',', quotes or angle brackets; the user name may be empty
# (redis://:password@host).
_URL_PASSWORD = re.compile(
    r"://(?<=[A-Za-z0-9]://)([^\s/:@\"'<>]{0,256}):[^\s/\"'<>\\,]{1,256}@"
)

_BEARER_TOKEN = r"(\s{1,8})([A-Za-z0-9._~+/=-]{8,4096})"
_BASIC_CREDENTIALS = r"(\s{1,8})([A-Za-z0-9+/]{8,4096}={0,2})(?![A-Za-z0-9+/=])"
_BEARER = [
    re.compile(rf"earer(?<=[Bb]earer){_starts_word('.earer')}{_BEARER_TOKEN}"),
    re.compile(rf"BEARER{_starts_word('BEARER')}{_BEARER_TOKEN}"),
]
_BASIC = [
    re.compile(rf"asic(?<=[Bb]asic){_starts_word('.asic')}{_BASIC_CREDENTIALS}"),
    re.compile(rf"BASIC{_starts_word('BASIC')}{_BASIC_CREDENTIALS}"),
]
_BEARER_OR_BASIC = re.compile(r"b(?:earer|asic)")  # searched for in the lower-cased text
_DIGIT = re.compile(r"[0-9]")

# --------------------------------------------------------------------------------------------
# Assignments: a key whose name says it holds a secret, a separator and a value. The patterns run
# on the lower-cased text (which has the same length), led by a key word such as 'pass' or 'token'.
#
# Values: quoted values run to the closing quote (which need not be there: the text may have been
# cut), and escaped quotes (\" inside a JSON string) are understood. After '=' a bare value ends
# at whitespace (key=value, as in env files, query strings and logs); after ':' (YAML, headers)
# or ' = ' (INI, TOML) it runs to the end of the line or a ',', ';', '}', ']'. A literal "\n",
# "\r" or "\t" escape ends a bare value, since the text is often JSON-encoded. A value starting
# with '{' or '[' is a nested structure whose own keys are looked at instead.

_WORD_CHAR = r"""(?:[^\s"'\\,;&)}\]<>]|\\\\|\\(?![nrt"']))"""
_LINE_CHAR = r"""(?:[^\n\r"'\\,;}\]<>]|\\\\|\\(?![nrt"']))"""
_COOKIE_CHAR = r"""(?:[^\n\r"'\\]|\\\\|\\(?![nrt"']))"""  # Cookie: a=1; b=2 -- all of it


def _values(first: str, char: str, whole: bool) -> str:
    """A value: quoted (maybe with escaped quotes) or bare, starting with ``first``. Only its first
    character (after the quote) unless ``whole``."""
    more, rest = ("{1,8192}", char + "{0,8191}") if whole else ("", "")
    return "|".join(
        [
            r'"(?:[^"\\\n]|\\[^\n])' + more,
            r'\\"(?:[^"\\\n]|\\[^"\n])' + more,
            r"'(?:[^'\\\n]|\\[^\n])" + more,
            r"\\'(?:[^'\\\n]|\\[^'\n])" + more,
            first + char + rest,
        ]
    )


# '*key' names are secrets only with one of these qualifiers in front ('api_key', 'AccountKey'),
# or in upper case after '_' (FOO_KEY=..., as in env files).
_KEY_QUALIFIERS = [
    *("api", "access", "secret", "private", "signing", "encryption", "master", "account"),
    *("client", "subscription", "app", "consumer", "storage", "shared", "license", "auth"),
    *("session", "service", "admin", "deploy", "webhook", "hmac", "root", "write", "ingest"),
    "sas",
]


def _qualified_key() -> str:
    """'key' preceded by a qualifier: 'key' first, then one look-behind per width (a look-behind
    must have a fixed width; see the module docstring for why the literal comes first)."""
    by_width: dict[int, list[str]] = {}
    for qualifier in _KEY_QUALIFIERS:
        for separator in ("", "_", "-", "."):
            by_width.setdefault(len(qualifier + separator), []).append(
                re.escape(qualifier + separator)
            )
    return (
        "key(?:"
        + "|".join(f"(?<=(?:{'|'.join(names)})key)" for names in by_width.values())
        + ")"
    )


class _Assignment:
    """The patterns of a key name followed by a separator and a value.

    ``key`` matches the name and the separator and looks ahead at the first character of the
    value (an empty group 'word', 'line' or 'xml', after the kind of separator, marks where the
    value starts); it is what is searched for, cheaply. ``value`` then matches the whole value
    where a key was found.
    """

    __slots__ = ("cased", "key", "value", "word")

    def __init__(self, word: str, name: str, cookie: bool = False, cased: bool = False) -> None:
        self.word = word
        self.cased = cased  # run on the text itself rather than its lower-cased copy
        self.key = self._compile(name, cookie, whole=False)
        self.value = self._compile(name, cookie, whole=True)

    @staticmethod
    def _compile(name: str, cookie: bool, whole: bool) -> re.Pattern[str]:
        word = _values(r"(?![{\[])", _COOKIE_CHAR if cookie else _WORD_CHAR, whole)
        line = _values(r"(?![\s{\[])", _COOKIE_CHAR if cookie else _LINE_CHAR, whole)
        xml = r"[^<\s][^<\n]{0,8191}" if whole else r"[^<\s]"
        if not whole:
            word, line, xml = f")(?={word}", f")(?={line}", f")(?={xml}"
        return re.compile(
            name
            + r"""(?:(?:\\?["'])?[ \t]{0,3}"""  # the key's closing quote, maybe escaped
            + r"(?:=(?![ \t=>])(?P<word>" + word + ")"
            + r"|(?::=|=>|==|:(?!//)|=(?=[ \t]))[ \t]{0,3}(?P<line>" + line + "))"
            + r"|>(?P<xml>" + xml + "))"  # <password>value</password>
        )


_ASSIGNMENTS = (
    _Assignment(
        "pass",
        r"pass(?P<full>word|wd|phrase)?"
        r"(?:[0-9]{1,2}|[_-]?(?:hash|value|plain(?:text)?|confirm(?:ation)?))?",
    ),
    _Assignment("pwd", r"pwd(?:[0-9]{1,2})?"),
    _Assignment(
        "secret", r"secret(?:[_-]?(?:access[_-]?)?key)?(?:[_-]?(?:id|value|base|pem|string|str))?"
    ),
    _Assignment("token", r"token(?:[_-]?(?:secret|value|string|str))?"),
    _Assignment("key", _qualified_key() + r"(?:[_-]?(?:id|value|base|pem|string|str|secret))?"),
    _Assignment("KEY", r"KEY(?<=_KEY)(?:_(?:ID|VALUE|BASE|PEM|STRING|STR|SECRET))?", cased=True),
    _Assignment("credential", r"credentials?(?:[_-]?(?:json|value|secret))?"),
    _Assignment("authori", r"authori[sz]ation(?:[_-]?code)?"),
    _Assignment("cookie", r"cookie", cookie=True),
    _Assignment("sig", r"sig(?:nature)?"),
)

_SHORT_WORDS = frozenset({"pass", "pwd", "sig"})
_SECRET = _marker("secret")
_REWIND = 64
_KEY_LAST = re.compile(r"""[ \t]{0,3}(?:\\?["']|[:=])""")
_TO_SEMICOLON = re.compile(r"[^;\n\r\"']{0,8192}")
_XML_OPEN = re.compile(r"<[\w.:-]{0,48}\Z")  # <password>, <db.password>
_SCHEME = re.compile(r"[A-Za-z][\w-]{0,20}[ \t]{1,3}(?=\S)")  # Authorization: <scheme> <secret>


def _lower(text: str) -> str:
    """Lower-cased ``text`` with the same length (positions in it are positions in ``text``)."""
    lowered = text.lower()
    if len(lowered) != len(text):  # 'İ' lower-cases to two code points
        lowered = text.replace("\u0130", "i").lower()
    return lowered


def _key_ok(text: str, word: str, key: re.Match[str]) -> bool:
    """Whether what precedes a key found at ``key`` lets it be a key."""
    p = key.start()
    before = text[p - 1] if p else ""
    if before == "/":  # a path such as /etc/passwd, not a key
        return False
    if key.lastgroup == "xml" and not _XML_OPEN.search(text, max(0, p - 49), p):
        return False
    if word not in _SHORT_WORDS or (word == "pass" and key.group("full") is not None):
        return True
    # Short words need a separator or a camel-case hump in front: DB_PASS, dbPass, db_pwd,
    # ;Pwd=, ?sig=, X-Amz-Signature; not 'bypass', 'compass', 'PWD' (the working directory).
    if word == "sig":
        return before in ("?", "&", "-", "_")
    if word == "pass" and before in ('"', "'"):  # {"user": "bob", "pass": "..."}
        return True
    return before in ("_", "-", ".", ";") or (before.islower() and text[p].isupper())


def _value_span(text: str, word: str, value: re.Match[str]) -> tuple[int, int]:
    """Where the secret is in a value matched by ``value``: inside the quotes, without trailing
    spaces, after an Authorization scheme; to the next ';' in a connection string."""
    group = value.lastgroup or ""
    start, end = value.span(group)
    first = text[start]
    if first in "\"'":
        start += 1
    elif first == "\\" and text[start + 1 : start + 2] in ('"', "'"):
        start += 2
    elif group == "word" and value.start() and text[value.start() - 1] == ";":
        # A connection string (Server=db;Password=p@ss w0rd;): the value runs to the next ';'.
        stop = _TO_SEMICOLON.match(text, end)
        if stop is not None:
            end = stop.end()
        end = start + len(text[start:end].rstrip())
    elif group != "word":
        end = start + len(text[start:end].rstrip())
    if word == "authori":  # Authorization: Bearer <token> -- keep the scheme
        scheme = _SCHEME.match(text, start, end)
        if scheme is not None:
            start = scheme.end()
    return start, end


def _rule_assignment(text: str, lowered: str) -> str:
    if ":" not in text and "=" not in text and ">" not in text:
        return text
    # The next key of each key word, earliest first.
    upcoming: list[tuple[int, int, re.Match[str]]] = []
    for index, assignment in enumerate(_ASSIGNMENTS):
        key = assignment.key.search(text if assignment.cased else lowered)
        if key is not None:
            upcoming.append((key.start(), index, key))
    heapq.heapify(upcoming)
    edits: list[_Edit] = []
    done = 0  # text[:done] is settled
    # Where the next key may start. A value next to a separator or a quote may end with the next
    # key ('a=b:password: x', 'a=(password = x', 'a= "password": "x"'), so the end of it is
    # looked at again.
    floor = 0
    while upcoming:
        p, index, key = upcoming[0]
        assignment = _ASSIGNMENTS[index]
        haystack = text if assignment.cased else lowered
        # A key inside the last value counts only if its own value starts after that value.
        value_after = key.start(key.lastgroup or 0) >= done
        if p >= floor and value_after and _key_ok(text, assignment.word, key):
            value = assignment.value.match(haystack, p)
            if value is not None:
                start, end = _value_span(text, assignment.word, value)
                # Not replaced already (by an earlier rule, or an earlier pass: a second pass
                # over 'password:= [REDACTED:secret]' sees the value start at the '=').
                first = start
                while first < end and text[first] in ":= \t":
                    first += 1
                if not text.startswith(_ALREADY, first):
                    edits.append((start, end, _SECRET))
                done = end
                key_last = text[done - 1] in ":=" or _KEY_LAST.match(text, done) is not None
                floor = max(start, done - _REWIND) if key_last else done
        following = assignment.key.search(haystack, p + 1 if p + 1 > floor else floor)
        if following is None:
            heapq.heappop(upcoming)
        else:
            heapq.heapreplace(upcoming, (following.start(), index, following))
    return _splice(text, edits)


# --------------------------------------------------------------------------------------------
# Command-line flags: --password hunter2, --api-key "x", -u user:password, --user user:password.

_CLI_FLAG = re.compile(
    rf"-{_starts_word('-')}(?:"
    r"-(?P<name>[A-Za-z][\w-]{0,47})[ \t]{1,3}"
    r"(?P<value>\"[^\"\n]{1,8192}\"?|'[^'\n]{1,8192}'?|(?!-)[^\s\"']{1,8192})"
    r"|u[ \t]{1,3}[\"']?(?P<user>[^\s:\"']{1,256}):(?P<password>[^\s\"']{1,8192}))"
)
_CLI_SECRET_NAME = re.compile(
    r"(?:[\w-]*[_-])?(?:password|passwd|pass|pwd|passphrase|secret|token|credentials?|bearer"
    r"|oauth2-bearer|auth|(?:api|access|secret|private|signing|encryption|master|account|client"
    r"|subscription|app|storage|shared|license|auth|session|service|admin|deploy|webhook)[_-]?key)",
    re.IGNORECASE,
)
_USER_PASSWORD = re.compile(r"[\"']?(?P<user>[^\s:\"']{1,256}):(?P<password>[^\s\"']{1,8192})")
_PASSWORD = _marker("password")


def _cli_edit(match: re.Match[str]) -> _Edit | None:
    password = match.group("password")
    if password is not None:
        # -u user:password (curl and friends); a numeric uid:gid is left alone.
        if password.isdigit() and match.group("user").isdigit():
            return None
        if password.startswith(_ALREADY):
            return None
        return match.start("password"), match.end("password"), _PASSWORD
    name = match.group("name")
    value = match.group("value")
    start, end = match.span("value")
    if value.startswith(_ALREADY):
        return None
    if name.lower() == "user":  # --user user:password
        user = _USER_PASSWORD.match(value)
        if user is None or (user.group("user").isdigit() and user.group("password").isdigit()):
            return None
        return start + user.start("password"), start + user.end("password"), _PASSWORD
    if not _CLI_SECRET_NAME.fullmatch(name):
        return None
    if value[0] in "\"'":  # keep the quotes
        start += 1
        if len(value) > 1 and value.endswith(value[0]):
            end -= 1
    return start, end, _SECRET


def _bearer_edit(match: re.Match[str]) -> _Edit | None:
    token = match.group(2)
    # Real bearer tokens carry digits or are long; 'Bearer authentication' is prose.
    if len(token) < 20 and _DIGIT.search(token) is None:
        return None
    return match.start(2), match.end(2), _marker("token")


def _basic_edit(match: re.Match[str]) -> _Edit | None:
    token = match.group(2)
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    # Basic credentials are base64("user:password"); 'Basic understanding' is prose.
    if b":" not in decoded:
        return None
    return match.start(2), match.end(2), _marker("credentials")


# --------------------------------------------------------------------------------------------
# Rules. Each takes the text and its lower-cased copy and returns the text itself (the same
# object) when it has nothing to replace.


def _edits(
    pattern: re.Pattern[str], text: str, edit: Callable[[re.Match[str]], _Edit | None]
) -> str:
    if pattern.search(text) is None:  # the common case, without building anything
        return text
    return _splice(text, [e for e in map(edit, pattern.finditer(text)) if e is not None])


def _aws_or_google_edit(match: re.Match[str]) -> _Edit:
    kind = "aws_access_key_id" if match.lastgroup == "aws" else "token"
    return match.start(), match.end(), _marker(kind)


def _provider_edit(match: re.Match[str]) -> _Edit:
    # The match starts at the '-' or '_'; the group name says how long the prefix before it is.
    return match.start() - _PREFIX_LENGTH[match.lastgroup or ""], match.end(), _marker("token")


def _rule_private_key(text: str, lowered: str) -> str:
    if "-" not in text or "-----BEGIN" not in text:
        return text
    return _PRIVATE_KEY.sub(_marker("private_key"), text)


def _rule_jwt(text: str, lowered: str) -> str:
    if "J" not in text:
        return text
    return _JWT.sub(_marker("jwt"), text)


def _rule_aws_or_google(text: str, lowered: str) -> str:
    return _edits(_AWS_OR_GOOGLE, text, _aws_or_google_edit)


def _rule_provider(text: str, lowered: str) -> str:
    if "-" in text:
        text = _edits(_TOKENS_DASH, text, _provider_edit)
    if "_" in text:
        text = _edits(_TOKENS_UNDERSCORE, text, _provider_edit)
    if "9" in text:
        text = _GOOGLE_OAUTH.sub(_marker("token"), text)
    return text


def _rule_webhook(text: str, lowered: str) -> str:
    if "/" not in text or "hooks" not in text:
        return text
    for pattern, replacement in _WEBHOOKS:
        text = pattern.sub(replacement, text)
    return text


def _rule_url_password(text: str, lowered: str) -> str:
    if "@" not in text or "://" not in text:
        return text
    return _URL_PASSWORD.sub(r"://\1:" + _marker("password") + "@", text)


def _rule_bearer_basic(text: str, lowered: str) -> str:
    if _BEARER_OR_BASIC.search(lowered) is None:
        return text
    if "bearer" in lowered:
        for pattern in _BEARER:
            text = _edits(pattern, text, _bearer_edit)
    if "basic" in lowered:
        for pattern in _BASIC:
            text = _edits(pattern, text, _basic_edit)
    return text


def _rule_cli_flag(text: str, lowered: str) -> str:
    if "-" not in text:
        return text
    edits: list[_Edit] = []
    done = 0
    match = _CLI_FLAG.search(text)
    while match is not None:
        edit = _cli_edit(match)
        if edit is not None and edit[0] >= done:
            edits.append(edit)
            done = edit[1]
        # A value may hold the next flag ('--token (--password x'): look inside it again.
        dash = text.find("-", match.start() + 2, match.end())
        match = _CLI_FLAG.search(text, dash if dash >= 0 else match.end())
    return _splice(text, edits)


# In this order: a JWT inside 'Bearer eyJ...' is reported as a JWT, an assignment whose value an
# earlier rule already replaced is left alone, and a flag value cannot swallow the key of an
# assignment ('--password password: x').
_RULES: tuple[Callable[[str, str], str], ...] = (
    _rule_private_key,
    _rule_jwt,
    _rule_aws_or_google,
    _rule_provider,
    _rule_webhook,
    _rule_url_password,
    _rule_bearer_basic,
    _rule_assignment,
    _rule_cli_flag,
)

# The names of the redaction rules, one per kind of secret recognised. (The <kind> in a marker is
# what replaced the secret: private_key, aws_access_key_id, jwt, token, password, credentials or
# secret.)
REDACTION_RULES: tuple[str, ...] = (
    "private_key",
    "aws_access_key_id",
    "jwt",
    "url_password",
    "bearer",
    "basic_auth",
    "provider_token",
    "assignment",
    "webhook_url",
    "cli_flag",
)


def redact(text: str) -> str:
    """Return ``text`` with every recognised secret replaced by ``[REDACTED:<kind>]``.

    Linear in the length of ``text``; a text without secrets is returned unchanged.
    """
    lowered = _lower(text)
    for rule in _RULES:
        redacted = rule(text, lowered)
        if redacted is not text:
            text = redacted
            lowered = _lower(text)
    return text
