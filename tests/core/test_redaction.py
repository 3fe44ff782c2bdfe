"""Secret redaction: each kind of secret in realistic surroundings, false positives, linear time.

Fake secrets are assembled at run time (prefix + filler) so that this file holds no string that
looks like a live credential to a secret scanner.
"""

from __future__ import annotations

import base64
import json
import re
import string
import time

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from agentguard.redaction import REDACTION_RULES, redact

ALNUM = string.ascii_letters + string.digits
MARKER = re.compile(r"\[REDACTED:[a-z_]+\]")


def filler(n: int, alphabet: str = ALNUM, seed: int = 7) -> str:
    """Deterministic pseudo-random characters from ``alphabet``."""
    return "".join(alphabet[(i * 31 + seed * 17 + (i * i) % 13) % len(alphabet)] for i in range(n))


def b64url(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


AWS_ID = "AKIA" + "IOSFODNN7EXAMPLE"  # the example id from the AWS documentation
AWS_TEMP_ID = "ASIA" + "IOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEJr//" + filler(60, ALNUM + "/+")
GITHUB = "ghp" + "_" + filler(36)
GITHUB_PAT = "github" + "_pat_" + filler(22, seed=3) + "_" + filler(59, seed=4)
OPENAI = "sk" + "-proj-" + filler(48, seed=5)
ANTHROPIC = "sk" + "-ant-api03-" + filler(93, ALNUM + "-_", seed=6)
SLACK = "xox" + "b-123456789012-1234567890123-" + filler(24, seed=8)
GITLAB = "gl" + "pat-" + filler(20, seed=9)
GOOGLE = "AI" + "za" + filler(35, ALNUM + "-_", seed=10)
GOOGLE_OAUTH = "ya" + "29." + filler(60, ALNUM + "-_", seed=11)
STRIPE = "sk" + "_live_" + filler(24, seed=12)
HUGGINGFACE = "hf" + "_" + filler(34, string.ascii_letters, seed=13)
NPM = "npm" + "_" + filler(36, seed=14)
OPAQUE = "4f2c9e" + filler(26, seed=15)  # an opaque bearer token
JWT = (
    b64url({"alg": "HS256", "typ": "JWT"})
    + "."
    + b64url({"sub": "1234567890", "name": "Ada", "iat": 1516239022})
    + "."
    + filler(43, ALNUM + "-_", seed=16)
)
PEM_BODY = "\n".join(filler(64, ALNUM + "+/", seed=s) for s in range(20, 26))
RSA_KEY = (
    "-----BEGIN RSA " + "PRIVATE KEY-----\n" + PEM_BODY + "\n-----END RSA " + "PRIVATE KEY-----"
)
SLACK_HOOK_PATH = "T0" + filler(9, seed=17) + "/B0" + filler(9, seed=18) + "/" + filler(24, seed=19)


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


# (id, text, expected) -- every secret kind in the surroundings it is usually found in.
CASES = [
    (
        "env-file",
        f"AWS_ACCESS_KEY_ID={AWS_ID}\nAWS_SECRET_ACCESS_KEY={AWS_SECRET}\n"
        f"OPENAI_API_KEY={OPENAI}\nDB_PASSWORD=hunter2\nDEBUG=true\nLOG_LEVEL=info\n",
        "AWS_ACCESS_KEY_ID=[REDACTED:aws_access_key_id]\nAWS_SECRET_ACCESS_KEY=[REDACTED:secret]\n"
        "OPENAI_API_KEY=[REDACTED:token]\nDB_PASSWORD=[REDACTED:secret]\nDEBUG=true\n"
        "LOG_LEVEL=info\n",
    ),
    (
        "env-file-export-quoted",
        "export STRIPE_SECRET_KEY='abc def'\nexport SERVICE_KEY=\"k-123\"\nexport PORT=8080",
        "export STRIPE_SECRET_KEY='[REDACTED:secret]'\nexport SERVICE_KEY=\"[REDACTED:secret]\"\n"
        "export PORT=8080",
    ),
    (
        "aws-credentials-file",
        f"[default]\naws_access_key_id = {AWS_ID}\naws_secret_access_key = {AWS_SECRET}\n"
        f"aws_session_token = {SESSION_TOKEN}\nregion = eu-west-1\n",
        "[default]\naws_access_key_id = [REDACTED:aws_access_key_id]\n"
        "aws_secret_access_key = [REDACTED:secret]\naws_session_token = [REDACTED:secret]\n"
        "region = eu-west-1\n",
    ),
    (
        "aws-sts-json",
        json.dumps(
            {
                "Credentials": {
                    "AccessKeyId": AWS_TEMP_ID,
                    "SecretAccessKey": AWS_SECRET,
                    "SessionToken": SESSION_TOKEN,
                    "Expiration": "2024-01-01T00:00:00Z",
                }
            }
        ),
        '{"Credentials": {"AccessKeyId": "[REDACTED:aws_access_key_id]", '
        '"SecretAccessKey": "[REDACTED:secret]", "SessionToken": "[REDACTED:secret]", '
        '"Expiration": "2024-01-01T00:00:00Z"}}',
    ),
    (
        "json-tool-arguments",
        '{"user":"bob","password":"correct horse battery staple","remember":true}',
        '{"user":"bob","password":"[REDACTED:secret]","remember":true}',
    ),
    (
        "json-short-pass-key",
        '{"user": "bob", "pass": "hunter2"}',
        '{"user": "bob", "pass": "[REDACTED:secret]"}',
    ),
    (
        "json-escaped-inside-json",
        '{"body": "{\\"password\\": \\"hunter 2\\", \\"user\\": \\"bob\\"}"}',
        '{"body": "{\\"password\\": \\"[REDACTED:secret]\\", \\"user\\": \\"bob\\"}"}',
    ),
    (
        "json-escaped-env-file",
        '{"content": "DB_HOST=db\\nDB_PASSWORD=hunter2\\nDB_USER=bob"}',
        '{"content": "DB_HOST=db\\nDB_PASSWORD=[REDACTED:secret]\\nDB_USER=bob"}',
    ),
    (
        "json-string-with-escaped-quote",
        '{"token": "abc\\"def", "n": 1}',
        '{"token": "[REDACTED:secret]", "n": 1}',
    ),
    (
        "yaml-config",
        "database:\n  host: db.internal\n  port: 5432\n  username: app\n"
        "  password: s3cr3t pass phrase\nopenai:\n  api_key: abc123\n  model: gpt-4o\n",
        "database:\n  host: db.internal\n  port: 5432\n  username: app\n"
        "  password: [REDACTED:secret]\nopenai:\n  api_key: [REDACTED:secret]\n  model: gpt-4o\n",
    ),
    (
        "toml-and-ini",
        'client_secret = "abc"\nsecret_key_base = 0123abcd\ntimeout = 30',
        'client_secret = "[REDACTED:secret]"\nsecret_key_base = [REDACTED:secret]\ntimeout = 30',
    ),
    (
        "python-kwargs",
        'connect(host="db", password="hunter2", port=5432)',
        'connect(host="db", password="[REDACTED:secret]", port=5432)',
    ),
    (
        "java-properties",
        "spring.datasource.url=jdbc:postgresql://db/app\nspring.datasource.password=s3cret",
        "spring.datasource.url=jdbc:postgresql://db/app\n"
        "spring.datasource.password=[REDACTED:secret]",
    ),
    (
        "xml-element",
        "<server><id>nexus</id><username>ci</username><password>p@ss w0rd</password></server>",
        "<server><id>nexus</id><username>ci</username><password>[REDACTED:secret]</password>"
        "</server>",
    ),
    (
        "http-bearer-opaque",
        f"GET /v1/items HTTP/1.1\nHost: api.example.com\nAuthorization: Bearer {OPAQUE}\n",
        "GET /v1/items HTTP/1.1\nHost: api.example.com\nAuthorization: Bearer [REDACTED:token]\n",
    ),
    (
        "http-bearer-jwt",
        f"Authorization: Bearer {JWT}",
        "Authorization: Bearer [REDACTED:jwt]",
    ),
    (
        "http-bearer-letters-only",
        "Authorization: Bearer abcdefghij",
        "Authorization: Bearer [REDACTED:secret]",
    ),
    (
        "http-basic",
        f"Authorization: Basic {basic('admin', 'hunter2')}",
        "Authorization: Basic [REDACTED:credentials]",
    ),
    (
        "http-basic-lowercase",
        f"authorization: basic {basic('admin', 'hunter2')}",
        "authorization: basic [REDACTED:credentials]",
    ),
    (
        "http-token-scheme",
        "Authorization: Token 0123456789abcdef",
        "Authorization: Token [REDACTED:secret]",
    ),
    (
        "http-proxy-authorization",
        f"Proxy-Authorization: Basic {basic('proxy', 'pr0xy')}",
        "Proxy-Authorization: Basic [REDACTED:credentials]",
    ),
    (
        "http-api-key-header",
        "X-Api-Key: 0123456789abcdef\nAccept: application/json",
        "X-Api-Key: [REDACTED:secret]\nAccept: application/json",
    ),
    (
        "http-cookie",
        "Cookie: sessionid=abc123; csrftoken=xyz\nSet-Cookie: sid=abc; Path=/; HttpOnly",
        "Cookie: [REDACTED:secret]\nSet-Cookie: [REDACTED:secret]",
    ),
    (
        "json-headers",
        json.dumps({"headers": {"Authorization": f"Bearer {OPAQUE}", "x-api-key": "k1"}}),
        '{"headers": {"Authorization": "Bearer [REDACTED:token]", "x-api-key": '
        '"[REDACTED:secret]"}}',
    ),
    (
        "postgres-url",
        "DATABASE_URL=postgres://admin:s3cr3t@db.example.com:5432/app?sslmode=require",
        "DATABASE_URL=postgres://admin:[REDACTED:password]@db.example.com:5432/app?sslmode=require",
    ),
    (
        "url-password-with-at-sign",
        "postgresql://admin:p@ss@db.example.com/app",
        "postgresql://admin:[REDACTED:password]@db.example.com/app",
    ),
    (
        "redis-url-without-user",
        "redis://:s3cr3t@localhost:6379/0",
        "redis://:[REDACTED:password]@localhost:6379/0",
    ),
    (
        "mongodb-srv-url",
        'client = MongoClient("mongodb+srv://app:s3cr3t@cluster0.mongodb.net/?w=majority")',
        'client = MongoClient("mongodb+srv://app:[REDACTED:password]@cluster0.mongodb.net/'
        '?w=majority")',
    ),
    (
        "url-in-minified-json",
        '{"a":"redis://:pw@h","b":"c@d"}',
        '{"a":"redis://:[REDACTED:password]@h","b":"c@d"}',
    ),
    (
        "odbc-connection-string",
        "Server=db;Database=app;User Id=sa;Password=p@ss w0rd;Encrypt=yes",
        "Server=db;Database=app;User Id=sa;Password=[REDACTED:secret];Encrypt=yes",
    ),
    (
        "odbc-pwd",
        "Driver={ODBC};Server=x;Uid=sa;Pwd=my secret;",
        "Driver={ODBC};Server=x;Uid=sa;Pwd=[REDACTED:secret];",
    ),
    (
        "azure-storage-connection-string",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=abc+def/ghi==;"
        "EndpointSuffix=core.windows.net",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=[REDACTED:secret];"
        "EndpointSuffix=core.windows.net",
    ),
    (
        "presigned-s3-url",
        f"https://b.s3.amazonaws.com/k?X-Amz-Credential={AWS_ID}%2F20240101"
        "&X-Amz-Signature=abcdef0123&X-Amz-Security-Token=FwoGZX&X-Amz-Expires=60",
        "https://b.s3.amazonaws.com/k?X-Amz-Credential=[REDACTED:aws_access_key_id]%2F20240101"
        "&X-Amz-Signature=[REDACTED:secret]&X-Amz-Security-Token=[REDACTED:secret]"
        "&X-Amz-Expires=60",
    ),
    (
        "azure-sas-url",
        "https://acct.blob.core.windows.net/c?sv=2022&sig=abc%2Fdef%3D&se=2024",
        "https://acct.blob.core.windows.net/c?sv=2022&sig=[REDACTED:secret]&se=2024",
    ),
    (
        "query-string",
        "GET /search?q=cats&api_key=abc123&page=2",
        "GET /search?q=cats&api_key=[REDACTED:secret]&page=2",
    ),
    (
        "cli-password-flag-with-space",
        "psql --host db --password hunter2 --dbname app",
        "psql --host db --password [REDACTED:secret] --dbname app",
    ),
    (
        "cli-password-flag-with-equals",
        "mysql --user=root --password=hunter2 -h db",
        "mysql --user=root --password=[REDACTED:secret] -h db",
    ),
    (
        "cli-quoted-api-key",
        "tool --api-key 'abc def' --verbose",
        "tool --api-key '[REDACTED:secret]' --verbose",
    ),
    (
        "cli-token-flag",
        'gh auth login --token "abc123"',
        'gh auth login --token "[REDACTED:secret]"',
    ),
    (
        "cli-curl-user",
        "curl -u admin:hunter2 https://api.example.com && curl --user 'ci:s3cret' x",
        "curl -u admin:[REDACTED:password] https://api.example.com && curl --user "
        "'ci:[REDACTED:password]' x",
    ),
    ("github-token", f"export GITHUB_TOKEN={GITHUB}", "export GITHUB_TOKEN=[REDACTED:token]"),
    (
        "github-token-in-prose",
        f"use {GITHUB} for the push",
        "use [REDACTED:token] for the push",
    ),
    ("github-fine-grained-pat", f"token: {GITHUB_PAT}", "token: [REDACTED:token]"),
    (
        "github-token-in-clone-url",
        f"git clone https://x-access-token:{GITHUB}@github.com/o/r.git",
        "git clone https://x-access-token:[REDACTED:password]@github.com/o/r.git",
    ),
    (
        "openai-key-in-code",
        f'client = OpenAI(api_key="{OPENAI}")',
        'client = OpenAI(api_key="[REDACTED:token]")',
    ),
    (
        "anthropic-key-in-json",
        json.dumps({"headers": {"x-api-key": ANTHROPIC}}),
        '{"headers": {"x-api-key": "[REDACTED:token]"}}',
    ),
    ("slack-bot-token", f"SLACK_BOT_TOKEN={SLACK}", "SLACK_BOT_TOKEN=[REDACTED:token]"),
    (
        "slack-webhook",
        f"post to https://hooks.slack.com/services/{SLACK_HOOK_PATH} now",
        "post to https://hooks.slack.com/services/[REDACTED:token] now",
    ),
    (
        "discord-webhook",
        "https://discord.com/api/webhooks/123456789/" + filler(40, seed=30),
        "https://discord.com/api/webhooks/123456789/[REDACTED:token]",
    ),
    ("gitlab-token", f"PRIVATE-TOKEN: {GITLAB}", "PRIVATE-TOKEN: [REDACTED:token]"),
    (
        "gitlab-token-in-url",
        f"https://oauth2:{GITLAB}@gitlab.com/o/r.git",
        "https://oauth2:[REDACTED:password]@gitlab.com/o/r.git",
    ),
    (
        "google-api-key",
        f"https://maps.googleapis.com/maps/api/geocode/json?address=x&key={GOOGLE}",
        "https://maps.googleapis.com/maps/api/geocode/json?address=x&key=[REDACTED:token]",
    ),
    ("google-oauth-token", f"access {GOOGLE_OAUTH} ok", "access [REDACTED:token] ok"),
    ("stripe-key", f"stripe.api_key = '{STRIPE}'", "stripe.api_key = '[REDACTED:token]'"),
    ("huggingface-token", f"HF_TOKEN={HUGGINGFACE}", "HF_TOKEN=[REDACTED:token]"),
    (
        "npm-token",
        f"//registry.npmjs.org/:_authToken={NPM}",
        "//registry.npmjs.org/:_authToken=[REDACTED:token]",
    ),
    (
        "aws-key-id-in-prose",
        f"The key {AWS_ID} was rotated.",
        "The key [REDACTED:aws_access_key_id] was rotated.",
    ),
    ("pem-rsa", f"key:\n{RSA_KEY}\nafter", "key:\n[REDACTED:private_key]\nafter"),
    (
        "pem-truncated",
        "-----BEGIN OPENSSH " + "PRIVATE KEY-----\n" + PEM_BODY[:100],
        "[REDACTED:private_key]",
    ),
    (
        "pem-pgp-block",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n" + PEM_BODY + "\n-----END PGP PRIVATE KEY "
        "BLOCK-----\nbye",
        "[REDACTED:private_key]\nbye",
    ),
    (
        "pem-in-json",
        json.dumps({"type": "service_account", "private_key": RSA_KEY + "\n", "x": 1}),
        '{"type": "service_account", "private_key": "[REDACTED:private_key]\\n", "x": 1}',
    ),
    (
        "pem-encrypted-and-ec",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n-----END ENCRYPTED PRIVATE KEY-----\n"
        "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----",
        "[REDACTED:private_key]\n[REDACTED:private_key]",
    ),
    ("jwt-in-prose", f"the id token is {JWT}.", "the id token is [REDACTED:jwt]."),
    ("jwt-as-assignment", f"id_token={JWT}&state=x", "id_token=[REDACTED:jwt]&state=x"),
    (
        "jwt-cut-before-signature",
        "session " + JWT.rsplit(".", 1)[0],
        "session [REDACTED:jwt]",
    ),
    (
        "comparison-and-ruby-hash",
        "if password == 'abc': ... {:password => 'x'} ... $db_pass := \"y\"",
        "if password == '[REDACTED:secret]': ... {:password => '[REDACTED:secret]'} ... "
        '$db_pass := "[REDACTED:secret]"',
    ),
    (
        "several-secrets-on-one-line",
        f"password=a1 token={OPAQUE} key {AWS_ID} url=https://u:p@h",
        "password=[REDACTED:secret] token=[REDACTED:secret] key [REDACTED:aws_access_key_id] "
        "url=https://u:[REDACTED:password]@h",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_secret_is_replaced_and_surroundings_kept(text: str, expected: str) -> None:
    """Each secret is replaced by a [REDACTED:<kind>] marker and everything around it is kept."""
    assert redact(text) == expected


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_redacting_twice_changes_nothing(text: str, expected: str) -> None:
    """Redacting already redacted text leaves it as it is (markers are not redacted again)."""
    assert redact(expected) == expected


FALSE_POSITIVES = [
    "The token expired, so refresh the key and reset your password before you log in again.",
    "Bearer authentication is described in RFC 6750; a bearer token is a secret.",
    "Basic understanding of Python is required. The basic plan costs less.",
    "max_tokens: 512",
    '{"model": "gpt-4o", "max_tokens": 512, "temperature": 0.2}',
    '{"usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}}',
    "token_count=12 tokenizer: cl100k token_type: bearer",
    "request id 550e8400-e29b-41d4-a716-446655440000 failed",
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 (HEAD -> main)",
    '{"data": "SGVsbG8gd29ybGQsIHRoaXMgaXMgb3JkaW5hcnkgZGF0YQ==", "encoding": "base64"}',
    '{"image": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAA'
    'AABJRU5ErkJggg=="}',
    "primary_key: id\nsort_key=name\nforeign_key: user_id\nkeyboard: us\nmonkey=banana",
    "passwordless=true password_min_length: 12 passwords_match: yes",
    "secretary: Jane\nsecret_santa: true",
    "key: value\nkeys: [a, b]",
    "compass: north\nTests pass: 10, fail: 0",
    "PWD=/home/bob\nOLDPWD=/tmp",
    "cat: /etc/passwd: Permission denied",
    "the signature: John Doe",
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 bob@laptop",
    "docker run -u 1000:1000 img && git push -u origin main && nc -p 8080 host",
    "train --max-tokens 512 --secret-name prod --password-stdin --port 8080",
    "https://example.com:8443/path?x=1 and https://bob@example.com/repo and bob@example.com",
    "risk-assessment-for-the-quarterly-report and task-sk-something",
    "ghp_short AKIA in prose sk-short xoxb- glpat-",
    "password:\n  nested: value",
    "credentials: {\"user\": \"bob\"}",
    "",
]


@pytest.mark.parametrize("text", FALSE_POSITIVES)
def test_ordinary_text_is_left_intact(text: str) -> None:
    """Text without secrets (words like token, key or password without a value) is unchanged."""
    assert redact(text) == text


def test_unicode_text_keeps_its_positions() -> None:
    """Characters whose lower-case form is longer (İ) do not shift what is replaced."""
    expected = "İstanbul İ password=[REDACTED:secret] İ"
    assert redact("İstanbul İ password=hunter2 İ") == expected


def test_rule_names_are_listed() -> None:
    """REDACTION_RULES names the kinds of secret that are recognised."""
    assert REDACTION_RULES == (
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


# ---------------------------------------------------------------------------------------------
# Properties.

# What separates a secret from the text around it: white space (also JSON-escaped), quotes and
# punctuation.
LEFT = st.sampled_from([" ", "\n", "\t", "\r\n", "\\n", ", ", "; ", '"', "'", "= ", ": "])
RIGHT = st.sampled_from([" ", "\n", "\t", "\\n", '"', "'", ",", ";", ")", "]", "}", ". "])
BODY = st.text(ALNUM, min_size=16, max_size=16)


@st.composite
def secrets(draw: st.DrawFn) -> tuple[str, str]:
    """A generated secret and the part of it that must not survive redaction."""
    kind = draw(
        st.sampled_from(["aws", "jwt", "provider", "url", "bearer", "cli", "xml", "assignment"])
    )
    if kind == "aws":
        body = draw(st.text(string.ascii_uppercase + string.digits, min_size=16, max_size=16))
        return draw(st.sampled_from(["AKIA", "ASIA"])) + body, body
    if kind == "jwt":
        claims = draw(st.dictionaries(st.text(ALNUM, min_size=1, max_size=8), st.integers()))
        signature = draw(st.text(ALNUM + "-_", min_size=20, max_size=60))
        payload = b64url({"sub": "x", **claims})
        return f"{b64url({'alg': 'HS256'})}.{payload}.{signature}", payload[3:] + signature
    if kind == "provider":
        prefix, size, alphabet = draw(
            st.sampled_from(
                [
                    ("sk" + "-", 40, ALNUM),
                    ("sk" + "-proj-", 40, ALNUM + "-_"),
                    ("sk" + "-ant-api03-", 60, ALNUM + "-_"),
                    ("gh" + "p_", 36, ALNUM),
                    ("gh" + "s_", 36, ALNUM),
                    ("github" + "_pat_", 60, ALNUM + "_"),
                    ("xox" + "b-", 30, ALNUM + "-"),
                    ("gl" + "pat-", 20, ALNUM + "-_"),
                    ("AI" + "za", 35, ALNUM + "-_"),
                    ("sk" + "_live_", 24, ALNUM),
                    ("hf" + "_", 34, ALNUM),
                    ("npm" + "_", 36, ALNUM),
                ]
            )
        )
        body = draw(st.text(alphabet, min_size=size, max_size=size))
        return prefix + body, body
    if kind == "url":
        scheme = draw(st.sampled_from(["https", "postgres", "redis", "mongodb+srv", "amqp"]))
        user = draw(st.text(ALNUM, min_size=0, max_size=8))
        password = draw(st.text(ALNUM + "!$%*+-.@", min_size=8, max_size=24))
        return f"{scheme}://{user}:{password}@db.example.com/x", password
    if kind == "bearer":
        token = draw(st.text(ALNUM, min_size=4, max_size=60)) + draw(
            st.text(string.digits, min_size=1, max_size=4)
        )
        token = token.rjust(8, "0")
        return f"Authorization: Bearer {token}", token
    value = draw(st.text(ALNUM + "!#$%*+-./@^_~", min_size=6, max_size=30))
    if kind == "cli":
        flag = draw(st.sampled_from(["--password", "--api-key", "--token", "--client-secret"]))
        if value.startswith("-"):
            value = "x" + value
        forms = [f"{flag} {value}", f"{flag}={value}", f"-u bob:{value}"]
        return draw(st.sampled_from(forms)), value
    if kind == "xml":
        return f"<password>{value}</password>", value
    key = draw(
        st.sampled_from(
            ["password", "DB_PASSWORD", "api_key", "apiKey", "client_secret", "auth_token",
             "SECRET_KEY", "x-api-key", "passphrase", "credentials"]
        )
    )
    form = draw(st.sampled_from(["{k}={v}", "{k}: {v}", '"{k}": "{v}"', "{k} = '{v}'"]))
    return form.format(k=key, v=value), value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=2000))
def test_redact_never_raises(text: str) -> None:
    """Any text at all can be redacted, and the result is text."""
    assert isinstance(redact(text), str)


# Pieces of secrets and their surroundings, to build texts that exercise every rule.
PIECES = st.lists(
    st.sampled_from(
        [
            *string.printable,
            *("İ", "é", "password", "token", "api_key", "KEY", "Bearer ", "Basic ", "://", "@"),
            *("eyJ", "sk-", "ghp_", "AKIA", "-----BEGIN PRIVATE KEY-----", "--password ", "-u "),
            *("<password>", "\\n", '\\"', "= ", ": ", "Authorization: ", "Cookie: ", ";Pwd="),
            "&sig=",
        ]
    ),
    max_size=80,
).map("".join)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PIECES)
def test_redact_never_raises_on_secret_like_text(text: str) -> None:
    """Text made of pieces of secrets, cut anywhere, can be redacted."""
    assert isinstance(redact(text), str)


def test_every_prefix_of_a_text_full_of_secrets_can_be_redacted() -> None:
    """Captured text is often cut; a text cut at any character can still be redacted."""
    for _, text, _ in CASES:
        for end in range(len(text) + 1):
            assert isinstance(redact(text[:end]), str)


@settings(max_examples=300, deadline=None)
@given(PIECES)
@example("password:= 0")
def test_redact_is_idempotent(text: str) -> None:
    """Redacting an already redacted text changes nothing more."""
    once = redact(text)
    assert redact(once) == once


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secrets(), st.text(max_size=200), LEFT, RIGHT, st.text(max_size=200))
def test_embedded_secret_never_survives(
    secret: tuple[str, str], before: str, left: str, right: str, after: str
) -> None:
    """A secret anywhere in arbitrary text is redacted, whatever surrounds it."""
    text, sensitive = secret
    assume(text.count(sensitive) == 1 and sensitive not in before and sensitive not in after)
    redacted = redact(before + left + text + right + after)
    assert sensitive not in MARKER.sub("", redacted)


# ---------------------------------------------------------------------------------------------
# Linear time: inputs built to make a backtracking pattern explode finish quickly.

MB = 1 << 20


def repeat(unit: str) -> str:
    return (unit * (MB // len(unit) + 1))[:MB]


ADVERSARIAL = {
    "jwt-dash": repeat("eyJ-"),
    "jwt-dots": repeat("eyJa.eyJb"),
    "jwt-long-segments": repeat(" eyJ" + "a" * 9000 + ".eyJ" + "b" * 70000),
    "password-equals": repeat("password="),
    "password-colon": repeat("password: "),
    "pass": repeat("pass"),
    "key-without-qualifier": repeat("key=x "),
    "sig-without-value": repeat("&sig="),
    "quoted-backslashes": repeat('password="\\'),
    "escaped-quotes": repeat('password=\\"a'),
    "xml-open": repeat("<password>"),
    "xml-nested-open": repeat("<a" * 30 + "password>"),
    "scheme": repeat("a://"),
    "scheme-user": repeat("a://b:"),
    "scheme-user-password": repeat("a://:x@"),
    "url-long-parts": repeat("a://" + "b" * 300 + ":" + "c" * 300),
    "pem-begin": repeat("-----BEGIN PRIVATE KEY-----"),
    "pem-begin-unfinished": repeat("-----BEGIN " + "A" * 39),
    "bearer": repeat("bearer "),
    "bearer-long-token": repeat("Bearer " + "a" * 5000 + " "),
    "basic-long": repeat("Basic " + "QUFB" * 1200 + " "),
    "sk-dash": repeat("sk-"),
    "sk-almost": repeat(" sk-" + "x" * 19),
    "dashes": repeat("-"),
    "underscores": repeat("_"),
    "double-dash-flags": repeat("--a "),
    "password-flags": repeat("--password "),
    "user-flag": repeat("-u a:"),
    "akia": repeat("AKIA"),
    "akia-almost": repeat(" AKIA" + "B" * 15),
    "ghp": repeat("ghp_"),
    "authorization": repeat("authorization: bearer "),
    "cookie": repeat("cookie:"),
    "mixed": repeat(f"password=x token: y {JWT} {OPENAI} a://u:p@h Bearer {OPAQUE} "),
}


@pytest.mark.parametrize("text", list(ADVERSARIAL.values()), ids=list(ADVERSARIAL))
def test_adversarial_megabyte_is_redacted_in_linear_time(text: str) -> None:
    """A 1 MB input built to trigger backtracking is redacted without blowing up: catastrophic
    backtracking on it would take hours, linear work well under the generous bound here."""
    start = time.perf_counter()
    redact(text)
    assert time.perf_counter() - start < 5.0
