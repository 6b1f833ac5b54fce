"""Bounded output: what an outside process prints is kept as its head and tail, counted in bytes.

One rule for every place that stores such output (a step's live log lines and kept text, a
finding's message, an agent's last words): at most `limit` bytes, the first and the last part,
with one line between saying how many bytes were left out. Bytes, not lines: 50 MB without a
newline is one line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

# A finding's message, or an error quoting what a process printed, keeps at most this much.
MESSAGE_BYTES = 4096
# A finding's details (a traceback, the end of an output) keep at most this much.
DETAILS_BYTES = 8192
# Room kept inside the limit for the omitted line ("\n… 123456789 bytes omitted …\n").
_RESERVE = 48
# What storing one line costs besides its text (a row, a timestamp, a level); charged per newline
# when output is kept as lines, so many short lines cannot outgrow the limit either.
LINE_COST = 64
# A line longer than this is handed on in pieces (the head of one huge line stays readable).
_LONG_LINE = 65536


def omitted_line(count: int) -> str:
    """The line that stands for the bytes left out between head and tail."""
    return f"… {count} bytes omitted …"


class CappedOutput:
    """A byte stream kept as its head and tail within `limit` bytes.

    With `on_line`, complete lines of what is kept are handed on: the head as it arrives, then at
    `close()` the omitted line and the tail. A failing on_line stops the handing on (its error is
    kept in `error`) but never the reading, so a child never blocks on a full pipe.
    """

    def __init__(
        self, limit: int, on_line: Callable[[str], None] | None = None, *, line_cost: int = 0
    ) -> None:
        limit = max(0, limit)
        half = (limit - _RESERVE) // 2 if limit >= 2 * _RESERVE else limit // 4
        self.head_limit, self.tail_limit = half, half
        self.line_cost = max(0, line_cost)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.on_line = on_line
        self.error: Exception | None = None
        self._head_cost = 0
        self._pending = bytearray()

    @property
    def omitted(self) -> int:
        """Bytes received that are in neither the head nor the tail."""
        return self.total - len(self.head) - len(self.tail)

    @property
    def truncated(self) -> bool:
        return self.omitted > 0

    def add(self, chunk: bytes) -> None:
        """Take the next bytes of the stream (only what head and tail keep is copied)."""
        self.total += len(chunk)
        start = 0
        room = self.head_limit - self._head_cost
        if room > 0:
            start = self._fit_forward(chunk, room)
            part = chunk[:start]
            self.head += part
            self._head_cost += self._cost(part)
            self._split(part)
        if start >= len(chunk) or not self.tail_limit:
            return
        view = memoryview(chunk)[start:]
        if len(view) >= self.tail_limit:
            self.tail[:] = view[len(view) - self.tail_limit :]
        else:
            self.tail += view
        drop = self._fit_back(self.tail)
        if drop:
            del self.tail[:drop]

    def close(self) -> None:
        """Hand on what is left: the unfinished head line, the omitted line and the tail."""
        if self.truncated:
            self._flush()
            self._emit(omitted_line(self.omitted).encode())
        self._split(self.tail)
        self._flush()

    def data(self) -> bytes:
        """The kept bytes: the whole stream when it fit, else head, omitted line and tail."""
        if not self.truncated:
            return bytes(self.head + self.tail)
        marker = f"\n{omitted_line(self.omitted)}\n".encode()
        return bytes(self.head) + marker + bytes(self.tail)

    def text(self) -> str:
        """The kept bytes decoded (a character cut at a seam, or bad UTF-8, is replaced)."""
        return self.data().decode("utf-8", errors="replace")

    def _cost(self, data: bytes | bytearray, start: int = 0, end: int | None = None) -> int:
        """What keeping data[start:end] costs: its size, plus line_cost per line (no copy made)."""
        end = len(data) if end is None else end
        lines = data.count(b"\n", start, end) if self.line_cost else 0
        return end - start + self.line_cost * lines

    def _fit_forward(self, data: bytes, room: int) -> int:
        """The longest prefix of data whose cost fits in room."""
        if self._cost(data) <= room:
            return len(data)
        low, high = 0, min(len(data), room)  # the cost of data[:n] grows with n
        while low < high:
            mid = (low + high + 1) // 2
            if self._cost(data, 0, mid) <= room:
                low = mid
            else:
                high = mid - 1
        return low

    def _fit_back(self, data: bytearray) -> int:
        """How many leading bytes to drop so the rest costs at most tail_limit."""
        if self._cost(data) <= self.tail_limit:
            return 0
        low, high = 0, len(data)  # the cost of data[n:] shrinks as n grows
        while low < high:
            mid = (low + high) // 2
            if self._cost(data, mid) <= self.tail_limit:
                high = mid
            else:
                low = mid + 1
        return low

    def _split(self, data: bytes | bytearray) -> None:
        if self.on_line is None:
            return
        self._pending += data
        while (nl := self._pending.find(b"\n")) >= 0:
            self._emit(self._pending[:nl])
            del self._pending[: nl + 1]
        if len(self._pending) > _LONG_LINE:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._emit(self._pending)
            self._pending.clear()

    def _emit(self, raw: bytes | bytearray) -> None:
        if self.on_line is None:
            return
        try:
            self.on_line(bytes(raw).rstrip(b"\r").decode("utf-8", errors="replace"))
        except Exception as exc:  # noqa: BLE001 - kept and raised by the reader once drained
            self.error, self.on_line = exc, None


def cap_bytes(data: bytes, limit: int) -> bytes:
    """`data` when it fits in `limit` bytes, else its head and tail around the omitted line."""
    if len(data) <= limit:
        return data
    capped = CappedOutput(limit)
    capped.add(data)
    return capped.data()


def cap_text(text: str, limit: int) -> str:
    """`text` when its UTF-8 fits in `limit` bytes, else its head and tail around the omitted line."""
    if len(text) * 4 <= limit:  # no character takes more than 4 bytes: it fits, no encoding needed
        return text
    data = text.encode("utf-8", errors="surrogatepass")
    if len(data) <= limit:
        return text
    return cap_bytes(data, limit).decode("utf-8", errors="replace")


def cap_file(path: Path, limit: int) -> bool:
    """Shrink a file past `limit` bytes to its head and tail around the omitted line, reading only
    those two ends; True when it was cut. Called once its parsers have read it whole."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size <= limit:
        return False
    half = max((limit - _RESERVE) // 2, 0)
    with path.open("rb") as handle:
        head = handle.read(half)
        handle.seek(size - half)
        tail = handle.read(half)
    marker = f"\n{omitted_line(size - len(head) - len(tail))}\n".encode()
    path.write_bytes(head + marker + tail)
    return True
