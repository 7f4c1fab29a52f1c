"""Shared pieces of the fuzz suite: hypothesis settings that keep each test to seconds, and the
one property every parser of outside input must hold.

Property: any input gives either a valid typed object or a ``ConfigError`` naming the file,
a line (when the input has lines) and, for a value, the field; never another exception type,
never a hang (every test has a timeout, every example a deadline).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from plant.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"

# Few examples, a generous per-example deadline (two cores, other suites running): the point
# is a wide net over many parsers in under a minute, not depth on one. A deeper run:
# SORTCENTRE_FUZZ_EXAMPLES=2000 (and a longer --timeout), e.g. nightly.
EXAMPLES = int(os.environ.get("SORTCENTRE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=5000, derandomize=EXAMPLES <= 60, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
FEW = settings(FUZZ, max_examples=max(EXAMPLES // 3, 10))

# Text a user's file could hold: printable, control characters, separators, a BOM, non-ASCII.
ANY_TEXT = st.text(
    alphabet=st.one_of(st.characters(), st.sampled_from(list(",|\"'#:-[]{}&*!%@`\n\r\t\x00\x1b\ufeff\u2028"))),
    max_size=300,
)


def check_config_error(exc: ConfigError, source: str | Path, text: str | bytes | None) -> None:
    """A ConfigError names the input it was given, a line when the input has any text, and is
    printable (no raw control bytes reach a terminal)."""
    assert exc.file == str(source), (exc.file, source)
    if text is not None and (text.strip() if isinstance(text, str) else text.strip()):
        assert exc.line is not None and exc.line >= 1, str(exc)
    assert str(exc).isprintable(), repr(str(exc))


def mutate(text: str, rnd: random.Random, n: int) -> str:
    """``text`` with ``n`` edits a hand or a bad export makes: a character or a whole line
    dropped, doubled or replaced, a value swapped for an odd token, bytes truncated."""
    tokens = ["", "-1", "0", "1e309", ".nan", ".inf", "null", "~", "[]", "{}", "'", '"', "\x00", "é", "99999999999999999999",
              "- x", ": :", "&a", "*a", "!!binary x", "!!python/name:os.system", "\t", "2001-02-30", "yes", "0x1F"]
    for _ in range(n):
        lines = text.split("\n")
        i = rnd.randrange(len(lines))
        op = rnd.randrange(7)
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[i])
        elif op == 2 and ":" in lines[i]:
            key = lines[i].split(":", 1)[0]
            lines[i] = f"{key}: {rnd.choice(tokens)}"
        elif op == 3:
            j = rnd.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:j] + rnd.choice(tokens) + lines[i][j:]
        elif op == 4 and lines[i]:
            j = rnd.randrange(len(lines[i]))
            lines[i] = lines[i][:j] + lines[i][j + 1 :]
        elif op == 5:
            lines[i] = " " * rnd.randrange(4) + lines[i]
        else:
            text = text[: rnd.randrange(len(text) + 1)]
            continue
        text = "\n".join(lines)
    return text
