"""``--after``/``--before``/``-m`` strings read as SimpleBroker 8.7.2's ``broker`` reads them.

Each case is checked against the expected value and, where SimpleBroker is
installed (a test dependency), against its own parser: the same string must
select the same messages, and a bad one fail with the same words.
"""

from __future__ import annotations

import pytest

from sansio_broker import MessageIdError
from sansio_broker.bounds import GUIDANCE, INVALID_MESSAGE_ID, parse_bound, parse_message_id

MASK = ~0xFFF

VALID = {
    "1705329000": (1_705_329_000 * 10**9) & MASK,
    "1705329000s": (1_705_329_000 * 10**9) & MASK,
    "1705329000000ms": (1_705_329_000 * 10**9) & MASK,
    "1705329000000000000ns": (1_705_329_000 * 10**9) & MASK,
    " 1705329000 ": (1_705_329_000 * 10**9) & MASK,
    "١٧٠٥٣٢٩٠٠٠": (1_705_329_000 * 10**9) & MASK,  # Arabic-Indic digits mean the same number
    "20240115": 1_705_276_800 * 10**9,
    "2024-01-15": 1_705_276_800 * 10**9,
    "2024-01-15Z": 1_705_276_800 * 10**9,
    "2024-01-15T10:00:00Z": 1_705_312_800 * 10**9,
    "2024-01-15 10:00:00+02:00": 1_705_305_600 * 10**9,
    "2024-01-15T10:00:00": 1_705_312_800 * 10**9,  # naive: UTC
    "1950-01-01": 0,  # before the epoch: everything
    "0": 0,
    "12s": (12 * 10**9) & MASK,
    "5ns": 0,
    "1705329000123": (1_705_329_000_123 * 10**6) & MASK,  # 13 digits: milliseconds
    "1796424173245018112": 1_796_424_173_245_018_112,  # at or above 2**44: a native ID, unmasked
    "17592186044416": 2**44,
    "20241345": 20_241_345 * 10**9 & MASK,  # not a date: unix seconds
}

INVALID = {
    "": "Invalid timestamp: empty string",
    "   ": "Invalid timestamp: empty string",
    "x" * 129: f"Invalid timestamp: input exceeds 128 Unicode code points; {GUIDANCE}",
    "1e9": f"Invalid timestamp: scientific notation not supported; {GUIDANCE}",
    "1.5": f"Invalid timestamp: 1.5; {GUIDANCE}",
    "-5": f"Invalid timestamp: -5; {GUIDANCE}",
    "abc": f"Invalid timestamp: abc; {GUIDANCE}",
    "ms": f"Invalid timestamp: ms; {GUIDANCE}",
    "abcs": f"Invalid timestamp: abcs; {GUIDANCE}",
    "2024-01-15T10:00:00.5": f"Invalid timestamp: 2024-01-15T10:00:00.5; {GUIDANCE}",
    "2024-13-45": f"Invalid timestamp: 2024-13-45; {GUIDANCE}",
    "T": f"Invalid timestamp: T; {GUIDANCE}",
    "2300-01-01": "Invalid timestamp: too far in future",
    "9999999999999999999ns": "Invalid timestamp: too far in future",
    "99999999999": "Invalid timestamp: 99999999999",  # 11 digits of seconds: beyond 2**63 ns
    "9999999999999": "Invalid timestamp: 9999999999999",  # 13 digits of ms: beyond 2**63 ns
    "99999999999999999999": "Invalid timestamp: exceeds maximum value",
}


@pytest.mark.parametrize(("text", "expected"), VALID.items())
def test_a_bound_reads_as_simplebroker_reads_it(text: str, expected: int) -> None:
    assert parse_bound(text) == expected
    simplebroker_timestamp = pytest.importorskip("simplebroker._timestamp")
    assert simplebroker_timestamp.TimestampGenerator.validate(text) == expected


@pytest.mark.parametrize(("text", "message"), INVALID.items())
def test_a_bad_bound_fails_with_simplebrokers_words(text: str, message: str) -> None:
    with pytest.raises(MessageIdError) as caught:
        parse_bound(text)
    assert str(caught.value) == message
    simplebroker_timestamp = pytest.importorskip("simplebroker._timestamp")
    with pytest.raises(Exception) as theirs:
        simplebroker_timestamp.TimestampGenerator.validate(text)
    assert str(theirs.value) == message


@pytest.mark.parametrize("text", ["1796424173245018112", " 1796424173245018112 ", "0000000000000000001"])
def test_a_message_id_is_nineteen_digits(text: str) -> None:
    assert parse_message_id(text) == int(text)


@pytest.mark.parametrize("text", ["123", "", "17964241732450181120", "9999999999999999999", "179642417324501811x"])
def test_a_bad_message_id_fails_with_simplebrokers_words(text: str) -> None:
    with pytest.raises(MessageIdError) as caught:
        parse_message_id(text)
    assert str(caught.value) == INVALID_MESSAGE_ID
