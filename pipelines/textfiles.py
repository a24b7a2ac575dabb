"""Reading the text files a user hands the project: lists, vocabularies, JSON, flag files.

Every text file coseg_tf reads goes through here: split lists and labeled-id lists
(one id a line), class-name lists, JSON files (manifests, a run's config.json and
model.json, an export's model.json) and the recipe flag files of train.py, eval.py and
export.py. One rule for all of them:

- UTF-8, with or without a byte-order mark (Windows editors write one: EF BB BF);
- any line ending: LF, CRLF or a lone CR;
- a file in another encoding is refused naming the file: UTF-16 or UTF-32 (told by its
  byte-order mark, as Notepad's "Unicode" writes it), or bytes that are not UTF-8
  (the message gives the line and the byte).

Local paths are read with `open`; a path with a scheme (`gs://...`) through
`tf.io.gfile`, imported only then, so this module stays free of TensorFlow (the
converter's worker processes and the flag parsing import it).
"""

from __future__ import annotations

import codecs
import json

# Byte-order marks of encodings other than UTF-8 (UTF-32 LE first: it starts like UTF-16 LE).
_OTHER_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
               (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def read_bytes(path: str) -> bytes:
    """The bytes of `path` (local, or any `tf.io.gfile` path); OSError naming it."""
    path = str(path)
    if "://" not in path:
        with open(path, "rb") as f:
            return f.read()
    import tensorflow as tf  # lazy: only for gs://, hdfs://, ...

    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()
    except tf.errors.OpError as e:
        raise OSError(f"{path}: {e.message}") from None


def decode_text(data: bytes, source: str) -> str:
    """`data` as text: UTF-8 with or without a byte-order mark.

    Args:
      data: the file's bytes.
      source: the file's name, for the error message.

    Raises:
      ValueError naming `source`: the file is UTF-16/UTF-32, or is not valid UTF-8
      (the line and byte of the first bad byte are given).
    """
    for bom, encoding in _OTHER_BOMS:
        if data.startswith(bom):
            raise ValueError(f"{source} is {encoding} (it starts with the byte-order mark "
                             f"{bom.hex(' ').upper()}); save it as UTF-8")
    try:
        return data.decode("utf-8-sig")  # drops a leading EF BB BF, if any
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(f"{source} is not UTF-8 text: byte 0x{data[e.start]:02X} at "
                         f"offset {e.start} (line {line}) ({e.reason}); save it as "
                         "UTF-8") from None


def read_text(path: str) -> str:
    """The text of `path` (UTF-8, byte-order mark dropped); OSError or ValueError naming it."""
    return decode_text(read_bytes(path), str(path))


def read_lines(path: str) -> list:
    """The lines of `path` without their endings (LF, CRLF or CR), blank ones included,
    so that index i is line i + 1 of the file."""
    text = read_text(path)
    # str.splitlines also splits at form feeds, \\x1c-\\x1e, U+2028...: only real
    # line endings end a line here.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n") if text else []


def read_list(path: str) -> list:
    """The non-blank lines of `path`, stripped: a list of ids or names, one a line."""
    return [line.strip() for line in read_lines(path) if line.strip()]


def read_json(path: str):
    """The JSON content of `path`; ValueError naming it when it is not JSON."""
    text = read_text(path)
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({type(e).__name__}: {e})") from None
