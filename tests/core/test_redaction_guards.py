"""Redaction skips a value pattern when a string holds none of its guard texts (issue 17,
docs/performance.md section 18): the guards must be necessary conditions, so that skipping never
lets a secret through. Checked against running every pattern, on text built from the patterns' own
pieces (prefixes, separators, digits, quotes) where secrets and near-misses are common."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tracemem_core import redaction
from tracemem_core.redaction import REDACTED, redact_text

PIECES = [
    "tmem_", "tmpat_", "tmwh_", "sk-", "sk_live_", "rk_test_", "ghp_", "gho_", "ghr_", "github_pat_",
    "xoxb-", "xoxp-", "AKIA", "ASIA", "eyJ", "eyJhbGciOiJIUzI1NiJ9", ".", "-----BEGIN ", "RSA ", "OPENSSH ",
    "PRIVATE KEY-----", "-----END ", "Bearer ", "bearer\t", "https://hooks.slack.com/services/", "AIza",
    "://", "postgres", "https", "user", ":", "@", "/", "?", "#", "password", "PassWord", "pwd", "Secret",
    "token", "api_key", "APIKEY", "=", " = ", " ", "\n", '"', "'", "[redacted]", "4111111111111111",
    "4111 1111 1111 1111", "5500-0000-0000-0004", "-", "_", "&", ";", "abcdefghij", "ABCDEFGHIJKLMNOP",
    "0123456789", "Zz9", "ü", "中",
]  # fmt: skip

text_from_pieces = st.lists(
    st.one_of(st.sampled_from(PIECES), st.text(alphabet="aZ09_-.:=@ /", max_size=6)), max_size=14
).map("".join)


def _every_pattern(text: str, *, colon_pairs: bool) -> str:
    """redact_text as it was: every pattern run over every string, guards ignored."""
    for pattern, _guards in redaction._extra_rules()[1]:
        if colon_pairs or pattern.pattern != redaction._COLON_PAIR:
            text = pattern.sub(redaction._replace_secret, text)
    return redaction._redact_cards(text)


@settings(max_examples=400, deadline=None)
@given(text=text_from_pieces, colon_pairs=st.booleans())
@example(text="DATABASE_URL=postgres://app:s3cr3t-pw@db/x", colon_pairs=False)
@example(text="Authorization: Bearer abcdefghijklmnop0123", colon_pairs=True)
@example(text="key ghp_" + "a" * 24 + " and AKIA" + "A" * 16, colon_pairs=False)
def test_guards_change_nothing(text: str, colon_pairs: bool) -> None:
    assert redact_text(text, colon_pairs=colon_pairs) == _every_pattern(text, colon_pairs=colon_pairs)


def test_every_built_in_pattern_has_guards_it_cannot_match_without() -> None:
    """Each guard list is non-empty, and a pattern's own example secret holds one of its guards
    (a pattern added without a guard, or with a wrong one, fails here or in the property test)."""
    examples = [
        "tmem_" + "a" * 20, "tmpat_" + "a" * 20, "tmwh_" + "a" * 20, "sk-" + "a" * 16, "rk_live_" + "a" * 10,
        "ghs_" + "a" * 20, "github_pat_" + "a" * 20, "xoxa-" + "a" * 10, "ASIA" + "A" * 16,
        "eyJabcde.eyJabcde.x", "-----BEGIN PRIVATE KEY-----\nabc", "bearer " + "a" * 16,
        "https://hooks.slack.com/services/T0/B0", "AIza" + "a" * 35, "redis://u:pw@h", "db_pwd=x",
        "password: hunter2",
    ]  # fmt: skip
    rules = redaction._SECRET_VALUE_RULES
    assert len(examples) == len(rules)
    for (source, guards), secret in zip(rules, examples, strict=True):
        assert guards, source
        assert re.search(source, secret, re.DOTALL), (source, secret)
        assert any(guard in secret for guard in guards), (source, guards)


@pytest.mark.parametrize("extra", [r"ACME-[0-9]{6}"])
def test_an_operators_own_patterns_always_run(settings, extra: str) -> None:
    settings.TRACEMEM_REDACT_EXTRA_PATTERNS = [extra]
    redaction._extra_rules.cache_clear()
    try:
        assert redact_text("order ACME-123456 shipped") == f"order {REDACTED} shipped"
        assert redaction._extra_rules()[1][-1][1] is None
    finally:
        redaction._extra_rules.cache_clear()
