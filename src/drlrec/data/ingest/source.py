"""Opening a raw log: gzip or plain, the format and header sniffed from its first bytes, line-aligned byte
ranges of a plain file (for partitioned ingest)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from drlrec.errors import ConfigError, InputError
from drlrec.schema import (
    HEADER_ALIASES,
    RAW_COLUMNS,
)

_GZIP_MAGIC = b"\x1f\x8b"

_PEEK_BYTES = 1 << 16

#: Input formats of `ingest.format`.
FORMATS: tuple[str, ...] = ("taobao", "diginetica")

#: Header of Diginetica's train-item-views.csv (required, in this order; sessionId etc. are accepted too).
DIGINETICA_COLUMNS: tuple[str, ...] = ("session_id", "user_id", "item_id", "timeframe", "eventdate")

#: category_id of every Diginetica row: its categories are in another file, not read here.
DIGINETICA_CATEGORY = 0

_DELIMITER = {"taobao": ",", "diginetica": ";"}


@dataclass(frozen=True)
class _Source:
    """An opened, sniffed input: how to stream it and what its first line said."""

    path: Path
    compressed: bool
    header: bool
    column_names: tuple[str, ...]
    size: int
    format: str = "taobao"

    @property
    def delimiter(self) -> str:
        return _DELIMITER[self.format]


def _peek(path: Path, compressed: bool) -> bytes:
    try:
        if compressed:
            stream = pa.CompressedInputStream(pa.OSFile(str(path)), "gzip")
            with stream:
                return stream.read(_PEEK_BYTES)
        with open(path, "rb") as fh:
            return fh.read(_PEEK_BYTES)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: cannot read ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from exc


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    control = sum(head.count(bytes([c])) for c in range(32) if c not in (9, 10, 13))
    return control > 0.05 * max(len(head), 1)


def sniff(path: str | Path, fmt: str = "taobao") -> _Source:
    """Check that `path` is a readable, non-empty, text CSV in the log schema of `fmt` (FORMATS); find its
    header and codec."""
    if fmt not in FORMATS:
        raise ConfigError(f"ingest.format {fmt!r} is not one of {', '.join(FORMATS)}")
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: file is empty")
    with open(path, "rb") as fh:
        compressed = fh.read(2) == _GZIP_MAGIC
    head = _peek(path, compressed)
    if not head.strip():
        raise InputError(f"{path}: file is empty (no data rows)")
    if _looks_binary(head):
        raise InputError(f"{path}: binary data, not a CSV behaviour log")
    first_line = head.split(b"\n", 1)[0].strip().lstrip(b"\xef\xbb\xbf")
    rest = head.split(b"\n", 1)[1] if b"\n" in head else b""
    if fmt == "diginetica":
        names = _header_names(first_line, ";")
        if not _is_diginetica_header(names):
            raise InputError(
                f"{path}: not a Diginetica train-item-views file: header {';'.join(names)[:200]!r}, "
                f"expected {';'.join(DIGINETICA_COLUMNS)!r}"
            )
        if not rest.strip():
            raise InputError(f"{path}: file has a header but no data rows")
        return _Source(path, compressed, True, DIGINETICA_COLUMNS, size, "diginetica")
    first_field = first_line.split(b",", 1)[0].strip().strip(b'"')
    if first_field.isdigit() or first_field.startswith(b"-"):
        return _Source(path, compressed, False, RAW_COLUMNS, size)
    names = _header_names(first_line, ",")
    if _is_diginetica_header(_header_names(first_line, ";")):
        raise InputError(
            f"{path}: header names other columns {names}: a Diginetica file; set ingest.format=diginetica"
        )
    mapped = [HEADER_ALIASES.get(n) for n in names]
    if None in mapped or sorted(mapped) != sorted(RAW_COLUMNS):
        raise InputError(
            f"{path}: header names other columns {names}; expected {', '.join(RAW_COLUMNS)} "
            "(or no header, as in the original UserBehavior.csv)"
        )
    if not rest.strip():
        raise InputError(f"{path}: file has a header but no data rows")
    return _Source(path, compressed, True, tuple(mapped), size)  # type: ignore[arg-type]


def _header_names(first_line: bytes, delimiter: str) -> list[str]:
    return [n.strip().strip('"').lower() for n in first_line.decode("utf-8", "replace").split(delimiter)]


def _is_diginetica_header(names: list[str]) -> bool:
    """`session_id;...` (SR-GNN's copy) or `sessionId;...` (the CIKM Cup file), already lower-cased."""
    return [n.replace("_", "") for n in names] == [c.replace("_", "") for c in DIGINETICA_COLUMNS]


class ByteRange(io.RawIOBase):
    """A read-only view of bytes [start, end) of a plain file that also counts the newlines it returned
    (a partition of the raw log: line numbers of later ranges are offset by the newlines of earlier ones)."""

    def __init__(self, path: str | Path, start: int, end: int) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 (closed by close())
        self._fh.seek(start)
        self.start, self.end, self.pos = start, end, start
        self.newlines = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.end - self.pos)
        if n <= 0:
            return 0
        data = self._fh.read(n)
        buffer[: len(data)] = data
        self.pos += len(data)
        self.newlines += data.count(b"\n")
        return len(data)

    def tell(self) -> int:
        return self.pos - self.start

    def close(self) -> None:
        self._fh.close()
        super().close()


def line_aligned_ranges(path: str | Path, parts: int) -> list[tuple[int, int]]:
    """Split a plain file into up to `parts` byte ranges that start at line starts (empty ones dropped)."""
    size = Path(path).stat().st_size
    starts = [0]
    with open(path, "rb") as fh:
        for k in range(1, parts):
            nominal = size * k // parts
            if nominal <= starts[-1]:
                continue
            fh.seek(nominal - 1)
            while True:  # the first line start at or after `nominal`
                block = fh.read(1 << 16)
                if not block:
                    starts.append(size)
                    break
                at = block.find(b"\n")
                if at >= 0:
                    starts.append(fh.tell() - len(block) + at + 1)
                    break
    bounds = sorted(set(starts) | {size})
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
