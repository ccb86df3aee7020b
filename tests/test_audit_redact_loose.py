"""Secrets written loosely stay out of the trail and every log record, through a real session.

Generated secrets are planted under names written the way configuration files, dumps and
obfuscating text write them: the value on the next line (INI and env files, YAML block scalars,
argument vectors dumped one per line), YAML tags and anchors before the value, separators encoded
as HTML character references or backslash escapes, and names split, spelt in leetspeak, with
invisible or fullwidth characters. Each travels in a tool call's arguments, result and error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mcpgov.audit import Redactor

from .test_audit_redact_session import _calls, _Keep, _server

SECRET = st.from_regex(r"[G-Zg-z][A-Za-z0-9_~+.-]{7,23}", fullmatch=True)
NAMES = ("password", "passwd", "secret", "client_secret", "token", "api_key", "apikey", "access_token", "credentials")
# Spellings of a name a reader still reads as the name.
SPLITS = ("", "_", "-", ".", "\\=", "\\:", "\u200b", "\u200d", "\u00ad", "\u2060", "\ufeff")
LEET = {"a": "4@", "e": "3", "i": "1", "o": "0", "s": "5$", "t": "7"}
SEPARATORS = (
    "&#61;",
    "&#x3d;",
    "&#X3D;",
    "&equals;",
    "\\u003d",
    "\\u003D",
    "\\x3d",
    "\\\\u003d",
    "&#58;",
    "&#x3a;",
    "&colon;",
    "\\u003a",
    "\\x3a",
    "%3D",
    "%3d",
    "%3A",
    "\uff1d",
    "\uff1a",
)


@st.composite
def spelt_names(draw: st.DrawFn) -> str:
    """A secret's name as it is written to slip past a reader: split inside the word, in
    leetspeak, with invisible characters, in fullwidth letters, in another case."""
    name = draw(st.sampled_from(NAMES))
    style = draw(st.sampled_from(["split", "leet", "fullwidth", "upper", "mixed"]))
    if style == "split":
        at = draw(st.integers(1, len(name) - 1))
        return name[:at] + draw(st.sampled_from(SPLITS)) + name[at:]
    if style == "leet":
        spots = [i for i, c in enumerate(name) if c in LEET]
        chosen = draw(st.lists(st.sampled_from(spots), min_size=1, unique=True)) if spots else []
        letters = list(name)
        for i in chosen:
            letters[i] = draw(st.sampled_from(LEET[letters[i]]))
        return "".join(letters)
    if style == "fullwidth":
        return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in name)
    if style == "upper":
        return name.upper()
    return "".join(c.upper() if i % 2 else c for i, c in enumerate(name))


@st.composite
def loosely_planted(draw: st.DrawFn) -> tuple[str, str]:
    """A text carrying a secret in a loose shape, and the secret."""
    secret, name = draw(SECRET), draw(st.sampled_from(NAMES))
    shape = draw(
        st.sampled_from(["next-line", "ini", "argv-lines", "yaml-block", "yaml-tag", "encoded-separator", "spelt-name"])
    )
    if shape == "next-line":  # a bare separator, the value on the following line(s)
        sep = draw(st.sampled_from(["=", ":", " =", " :"]))
        gap = draw(st.sampled_from(["\n", "\r\n", "\n  ", "\n\n  ", "\n\t"]))
        return f"[db]\nhost=db.internal\n{name}{sep}{gap}{secret}\nport=5432\n", secret
    if shape == "ini":  # a name on its own line and its value on the next
        gap = draw(st.sampled_from(["\n", "\r\n", "\n  ", "\n\n"]))
        return f"[db]\n{name}{gap}{secret}\n", secret
    if shape == "argv-lines":  # an argument vector dumped one item per line
        option = draw(st.sampled_from(["--password", "--token", "--api-key", "--client-secret"]))
        return f"mysql\n-u\nroot\n{option}\n{secret}\nprod\n", secret
    if shape == "yaml-block":
        style = draw(st.sampled_from(["|", ">", "|-", ">-", "|+", ">2"]))
        return f"db:\n  {name}: {style}\n    {secret}\n  port: 5432\n", secret
    if shape == "yaml-tag":  # tags and anchors before the value, plain or quoted
        tags = draw(
            st.sampled_from(["!!str", "&a", "!secret", "&anchor !!str", "!<tag:yaml.org,2002:str>", "!!binary"])
        )
        value = draw(st.sampled_from([secret, f'"{secret}"', f"'{secret}'", f'"a\\"{secret}"']))
        return f"db:\n  {name}: {tags} {value}\n  port: 5432\n", secret
    if shape == "encoded-separator":
        sep = draw(st.sampled_from(SEPARATORS))
        return draw(st.sampled_from([f"{name}{sep}{secret}", f"a=1&{name}{sep}{secret}&b=2"])), secret
    spelt = draw(spelt_names())
    sep = draw(st.sampled_from(["=", ": ", '": "', " = ", "\uff1d"]))
    quote = '"' if sep == '": "' else ""
    return f"config {quote}{spelt}{sep}{secret}{quote} end", secret


# The properties below run a fixed sequence of generated cases (derandomize): the same cases on
# every run, so CI is reproducible; the spellings known to escape are listed in docs/audit.md.
@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plant=loosely_planted(), mode=st.sampled_from(["auto", "legacy"]))
def test_no_loosely_written_secret_reaches_the_trail_or_any_log_record(
    tmp_path: Path, plant: tuple[str, str], mode: str
) -> None:
    text, secret = plant
    path = tmp_path / "audit.jsonl"
    path.unlink(missing_ok=True)
    handler = _Keep()
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in ("mcp", "mcpgov")]
    levels = [logger.level for logger in (root, *loggers)]
    root.addHandler(handler)
    for logger in (root, *loggers):
        logger.setLevel(logging.DEBUG)
    server, sink = _server(path)
    try:
        anyio.run(_calls, server, text, mode)
    finally:
        sink.close()
        root.removeHandler(handler)
        for logger, level in zip((root, *loggers), levels, strict=True):
            logger.setLevel(level)
    written = path.read_text("utf-8")
    assert '"arguments"' in written and "allow-tools" in written
    assert secret not in written, text
    for line in handler.lines:
        assert secret not in line, (text, line)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(plant=loosely_planted())
# A secret that begins with a function word joined to more ("to" in TO.00000) is a value, not prose.
@example(plant=("[db]\npassword\nTO.00000\n", "TO.00000"))
@example(plant=("password none-7f3a", "none-7f3a"))
def test_a_loosely_written_secret_is_redacted_once_for_all(plant: tuple[str, str]) -> None:
    text, secret = plant
    once = Redactor().text(text)
    assert secret not in once, text
    assert Redactor().text(once) == once
    assert Redactor().detect(text)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(name=spelt_names(), secret=SECRET, wrap=st.sampled_from(["mapping", "pair", "object", "nested"]))
# An escaped sign after a separator inside the name is no separator either.
@example(name="api_\\=key", secret="G0000000", wrap="mapping")
def test_an_entry_under_a_loosely_written_name_is_redacted(name: str, secret: str, wrap: str) -> None:
    structure: object = {
        "mapping": {"region": "eu", name: secret},
        "pair": [["Accept", "text/plain"], [name, secret]],
        "object": [{"name": name, "value": secret}],
        "nested": {"config": [{"db": {name: secret}}]},
    }[wrap]
    cleaned = json.dumps(Redactor().value(structure), ensure_ascii=False)
    assert secret not in cleaned, structure
    assert "[redacted]" in cleaned


def test_identifiers_and_counts_beside_secret_names_stay() -> None:
    kept = {"credential_id": "c-1", "token_count": 3, "args_hash": "sha256:0", "v1_id": 1, "region": "eu-west-1"}
    assert Redactor().value(kept) == kept
    assert Redactor(fields=["ssn"]).value({"\uff53\uff53\uff4e": "1", "s\u200bsn": "2", "SSN": "3"}) == {
        "\uff53\uff53\uff4e": "[redacted]",
        "s\u200bsn": "[redacted]",
        "SSN": "[redacted]",
    }


# Ordinary text near the shapes above: names split by ordinary separators, digits beside letters,
# entities and escapes of ordinary characters, non-ASCII words, lines after ordinary names.
ORDINARY = st.sampled_from(
    [
        "deploy",
        "eu-west-1",
        "v1.2.3",
        "sha256",
        "read_file",
        "x_y.z",
        "a1b2c3d4e5f6",
        "h3llo",
        "w0rld",
        "l33t",
        "R2D2",
        "5432",
        "port",
        "region:",
        "mode=",
        "&amp;",
        "&#38;",
        "caf\u00e9",
        "na\u00efve",
        "\u6771\u4eac",
        "\uff21\uff22\uff23",
        "\\u00e9t\\u00e9",
        "%20",
        "!!str",
        "&anchor",
        "user",
        "host",
        "the",
        "report",
        "ready",
        "count=3",
        "--verbose",
        "compass",
        "bypass",
        "passage",
        "keyboard",
    ]
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(words=st.lists(ORDINARY, min_size=1, max_size=12), seps=st.sampled_from([" ", "\n", ", ", "\t", " | ", "\n  "]))
def test_text_near_the_loose_shapes_keeps_its_words(words: list[str], seps: str) -> None:
    text = seps.join(words)
    assert Redactor().text(text) == text


@pytest.fixture(autouse=True)
def _quiet_hypothesis() -> None:
    logging.getLogger("hypothesis").setLevel(logging.WARNING)
