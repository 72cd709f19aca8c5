"""The look at Arrow's buffers that decides whether a text column needs stripping."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tailor.events.validate import text_may_be_padded


@pytest.mark.parametrize(
    ("values", "padded"),
    [
        (["a", "bc", None, "é"], False),
        (["a", " b"], True),
        (["a", "b "], True),
        (["a", "b\t"], True),
        (["\nb"], True),
        (["x\x1f"], True),
        (["ends in é", "日本"], False),  # multi-byte UTF-8: no byte of it is <= 32
        (["a", ""], False),  # empty: nothing to strip; the empty check rejects it as it is
        ([None, None], False),
    ],
)
def test_detects_surrounding_whitespace(values, padded):
    for kind in (pa.string(), pa.large_string()):
        assert text_may_be_padded(pa.chunked_array([pa.array(values, kind)])) is padded


def test_reads_only_the_slice_and_skips_null_slots():
    array = pa.array([" hidden", "a", "b", "tail "])
    assert text_may_be_padded(pa.chunked_array([array.slice(1, 2)])) is False
    assert text_may_be_padded(pa.chunked_array([array.slice(1, 3)])) is True
    # A null slot keeps whatever bytes its offsets span; they must not count.
    masked = pa.StringArray.from_buffers(
        4, array.buffers()[1], array.buffers()[2], pa.array([False, True, True, False]).buffers()[1]
    )
    assert text_may_be_padded(pa.chunked_array([masked])) is False
    assert text_may_be_padded(pa.chunked_array([pa.array(["a"]), pa.array(["b "])])) is True


def test_other_text_encodings_are_stripped_to_be_safe():
    dictionary = pa.chunked_array([pa.array(["a", "b"]).dictionary_encode()])
    assert text_may_be_padded(dictionary) is True
