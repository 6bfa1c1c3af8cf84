from __future__ import annotations

import orjson
import pytest

from actionhooks.delivery import wire
from actionhooks.errors import PayloadError


def test_events_encode_to_compact_utf8_json() -> None:
    assert wire.dumps([{"b": "Jürgen", "a": None}]) == '[{"b":"Jürgen","a":null}]'.encode()


def test_sorted_keys_give_one_canonical_encoding_whatever_the_field_order() -> None:
    assert wire.dumps({"b": 1, "a": {"d": 2, "c": 3}}, sort_keys=True) == b'{"a":{"c":3,"d":2},"b":1}'


def test_a_value_json_cannot_hold_is_a_payload_error_that_is_never_retried() -> None:
    with pytest.raises(PayloadError, match="not JSON-serialisable") as caught:
        wire.dumps([{"tags": {"a"}}])
    assert not caught.value.retryable
    assert isinstance(caught.value.__cause__, orjson.JSONEncodeError)


def test_an_excerpt_keeps_short_text_and_marks_where_long_text_was_cut() -> None:
    assert wire.excerpt("short", 10) == "short"
    assert wire.excerpt("x" * 20, 10) == "x" * 10 + "…"
