"""Raw bytes of a data file: decompressed as they are read (gz, bz2, xz, zip with one member), and
the first bytes that tell a compressed or binary file from text.

``data.compression: auto`` goes by the file's extension; a file whose name promises text but whose
first bytes are a compressed or binary signature gets an error that says what it looks like and
which setting reads it, instead of a decoding error at some byte.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import lzma
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

from tlflow.data.formats.common import DataError, decode_text

#: Extension -> compression, for `data.compression: auto`.
EXTENSIONS = {".gz": "gz", ".bz2": "bz2", ".xz": "xz", ".zip": "zip"}
#: Leading bytes of each compression (bz2: 'BZh', a block-size digit, then the block magic).
COMPRESSED_MAGIC = {"gz": b"\x1f\x8b\x08", "bz2": b"BZh?1AY&SY", "xz": b"\xfd7zXZ\x00", "zip": b"PK\x03\x04"}
#: Leading bytes of binary formats a data file is sometimes mistaken for, and what to say.
BINARY_MAGIC = {
    b"PAR1": "a parquet file: data.format: parquet?",
    b"%PDF": "a PDF document, not a data file",
    b"SQLite format 3\x00": "an SQLite database, not a data file",
    b"\xd0\xcf\x11\xe0": "an old Office document (.xls/.doc): export it as csv",
}
_OPENERS = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}
_CHUNK = 1 << 20


def compression_of(path: str | Path, setting: str = "auto") -> str | None:
    """The compression a file is read with: `setting`, or by extension under 'auto'; None for none."""
    if setting == "none":
        return None
    if setting != "auto":
        return setting
    return EXTENSIONS.get(Path(path).suffix.lower())


def member_name(path: str | Path, compression: str | None) -> str:
    """The file name without its compression extension (``reviews.csv.gz`` -> ``reviews.csv``)."""
    name = Path(path).name
    if compression and Path(name).suffix.lower() in EXTENSIONS:
        return Path(name).stem
    return name


def read_bytes(path: str | Path, source: str, setting: str = "auto") -> bytes:
    """The bytes of a data file, decompressed chunk by chunk when it is compressed (`compression_of`).

    Raises `DataError` (one line naming the file) for a file that cannot be read, a corrupt or
    truncated archive, and a zip that does not hold exactly one file.
    """
    path = Path(path)
    kind = compression_of(path, setting)
    try:
        if kind is None:
            return path.read_bytes()
        if kind == "zip":
            return _read_zip(path, source)
        with _OPENERS[kind](path, "rb") as stream:
            return _drain(stream)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{source}: file not found") from None
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as err:
        reason = getattr(err, "strerror", None) or (str(err).splitlines()[0] if str(err) else type(err).__name__)
        if kind is None:
            raise DataError(f"{source}: cannot read: {reason}") from None
        raise DataError(f"{source}: cannot read as {kind}: {reason}{_other_kind(path, kind)}") from None


def read_text(path: str | Path, source: str, encoding: str, setting: str = "auto") -> str:
    """The text of a data file (`read_bytes`, then `decode_text`). A file that does not decode gets
    `not_text_error`'s message when it has one, instead of the decoding error; one that decodes
    (e.g. as latin-1) but starts with a compressed or binary signature and holds NUL bytes gets it
    too (a NUL byte in an otherwise plain text is left to the readers, which name its line)."""
    raw = read_bytes(path, source, setting)
    try:
        text = decode_text(raw, source, encoding)
    except DataError as err:
        raise not_text_error(raw, source, encoding) or err from None
    if "\x00" in text[:4096] and sniff(raw) is not None:
        raise not_text_error(raw, source, encoding)
    return text


def iter_text(path: str | Path, source: str, encoding: str, setting: str = "auto",
              block: int = _CHUNK) -> Iterator[str]:
    """`read_text` in pieces, each ending at a line end (LF) but the last: the file is read and
    decompressed `block` bytes at a time and decoded incrementally, so neither its bytes nor its
    text is held whole. Errors are `read_text`'s: on any error the file is read again whole to name
    it the same way (the pieces before it have been yielded)."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise DataError(f"{source}: unknown encoding '{encoding}'") from None
    try:
        with ExitStack() as opened:
            stream = _open(Path(path), source, compression_of(path, setting), opened)
            head = stream.read(4096)
            carry = decoder.decode(head).removeprefix("\ufeff")
            if "\x00" in carry and sniff(head) is not None:
                raise not_text_error(head, source, encoding)
            more = bool(head)
            while more:
                raw = stream.read(block)
                more = bool(raw)
                text = carry + decoder.decode(raw, final=not more)
                cut = text.rfind("\n") + 1 if more else len(text)
                if cut:
                    yield text[:cut]
                carry = text[cut:]
            if carry:
                yield carry
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile, UnicodeDecodeError):
        read_text(path, source, encoding, setting)  # names the problem as a whole read does
        raise


def _open(path: Path, source: str, kind: str | None, opened: ExitStack) -> BinaryIO:
    """The decompressed byte stream of a data file, closed (with its archive) by `opened`."""
    if kind is None:
        return opened.enter_context(path.open("rb"))
    if kind == "zip":
        archive = opened.enter_context(zipfile.ZipFile(path))
        return opened.enter_context(archive.open(_zip_member(archive, source)))
    return opened.enter_context(_OPENERS[kind](path, "rb"))


def sniff(raw: bytes) -> str | None:
    """What the first bytes of a file that should be text say it is ('gz-compressed', 'a parquet
    file: ...'), or None when nothing is recognised."""
    for kind, magic in COMPRESSED_MAGIC.items():
        if len(raw) >= len(magic) and all(m == ord("?") or r == m for r, m in zip(raw, magic)):
            return f"{kind}-compressed"
    for magic, what in BINARY_MAGIC.items():
        if raw.startswith(magic):
            return what
    return None


def not_text_error(raw: bytes, source: str, encoding: str) -> DataError | None:
    """The error for bytes that are not text at all (compressed, a known binary format, UTF-16
    read as UTF-8, NUL bytes in the first 4 KiB), with the setting that reads them; None for bytes
    that look like text."""
    found = sniff(raw)
    if found and found.endswith("-compressed"):
        kind = found.removesuffix("-compressed")
        return DataError(f"{source}: looks {found} (the file starts with the {kind} signature): name it "
                         f"{Path(source).name}.{kind} or set data.compression: {kind}")
    if found:
        return DataError(f"{source}: looks like {found}")
    head = raw[:4096]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) and not encoding.lower().replace("-", "").startswith("utf16"):
        return DataError(f"{source}: looks UTF-16 encoded (byte-order mark): data.encoding: utf-16?")
    if b"\x00" in head and not encoding.lower().replace("-", "").startswith(("utf16", "utf32")):
        return DataError(f"{source}: looks binary, not {encoding} text (NUL bytes in the first "
                         f"{len(head):,} bytes)")
    return None


def _read_zip(path: Path, source: str) -> bytes:
    with zipfile.ZipFile(path) as archive, archive.open(_zip_member(archive, source)) as stream:
        return _drain(stream)


def _zip_member(archive: zipfile.ZipFile, source: str) -> zipfile.ZipInfo:
    """The one file a zip data file holds; `DataError` when it holds another number."""
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) != 1:
        names = ", ".join(m.filename for m in members[:5]) + (", ..." if len(members) > 5 else "")
        raise DataError(f"{source}: a zip data file must hold exactly one file, this one holds {len(members)}"
                        + (f" ({names})" if names else ""))
    return members[0]


def _drain(stream) -> bytes:
    out = bytearray()
    for chunk in iter(lambda: stream.read(_CHUNK), b""):
        out += chunk
    return bytes(out)


def _other_kind(path: Path, kind: str | None) -> str:
    """' (it looks bz2-compressed: data.compression: bz2?)' when the bytes say another compression."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return ""
    found = sniff(head)
    if found and found.endswith("-compressed") and found != f"{kind}-compressed":
        other = found.removesuffix("-compressed")
        return f" (it looks {found}: data.compression: {other}?)"
    if found is None:
        return " (it does not look compressed: data.compression: none?)"
    return ""
