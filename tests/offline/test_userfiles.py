"""A user's file that is not text is named with the line and the byte where it stops being UTF-8."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma

import pytest
from hypothesis import given, settings, strategies as st

from sortition.data.files import read_table
from sortition.experiment.persistence import read_state
from sortition.userfiles import first_non_utf8, read_json, read_text


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=st.text(max_size=40), junk=st.binary(min_size=1, max_size=3), tail=st.text(max_size=10),
       chunk=st.integers(1, 9))
def test_the_streamed_place_is_the_place_a_whole_decode_finds(text, junk, tail, chunk):
    data = text.encode() + junk + tail.encode()
    try:
        data.decode("utf-8")
        expected = None
    except UnicodeDecodeError as err:
        expected = (data.count(b"\n", 0, err.start) + 1, err.start, data[err.start])
    # small chunks split multi-byte characters across reads: they must not be taken for bad bytes
    assert first_non_utf8(io.BytesIO(data), chunk=chunk) == expected


def test_a_latin1_csv_names_the_line_not_the_parsers_buffer_offset(tmp_path):
    rows = "arm,city,y\n" + "".join(f"control,Paris,{i}\n" for i in range(5000)) + "treatment,München,1\n"
    plain = tmp_path / "export.csv"
    plain.write_bytes(rows.encode("latin-1"))
    where = "line 5002 holds byte 0xfc"
    with pytest.raises(ValueError, match=f"'export.csv' is not UTF-8 text: {where}.*save it as UTF-8 CSV"):
        read_table(plain)
    for suffix, compress in ((".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)):
        packed = tmp_path / f"export.csv{suffix}"  # the place is found in the decompressed text
        packed.write_bytes(compress(rows.encode("latin-1")))
        with pytest.raises(ValueError, match=f"'export.csv{suffix}' is not UTF-8 text: {where}"):
            read_table(packed)


def test_json_and_state_files_say_where_they_stop_being_text(tmp_path):
    path = tmp_path / "f.json"
    path.write_bytes(b'{"a":\n "\xe9t\xe9"}')
    for read in (read_text, read_json):
        with pytest.raises(ValueError, match=r"flags file '.*f.json' is not UTF-8 text: "
                                              r"line 2 holds byte 0xe9 \(offset 8\); save it as UTF-8"):
            read(path, "flags file")
    with pytest.raises(ValueError, match=r"experiment state '.*f.json' is not UTF-8 text: "
                                          r"line 2 holds byte 0xe9 \(offset 8\); restore '.*f.json.prev'"):
        read_state(path)
    path.write_bytes(b'\xff\xfe{\x00}\x00')  # UTF-16 with its byte order mark: JSON may be that
    assert read_json(path, "flags file") == {}
