"""A container's output as ``log`` events: ordered chunks, flushed by size and time, capped.

A reader task moves the runner's frames into a queue (so a flush timer never cancels the
runner's stream mid-read); the pump batches consecutive frames of the same stream into one
event of at most ``log_chunk_bytes``, sent no later than ``log_flush_seconds`` after its first
byte. A change of stream flushes first, so the interleaving of stdout and stderr is kept.
The last line of stderr is kept for the job's error (``last_stderr_line``).
At the end everything held is sent, an unterminated last line and a character cut short
(as U+FFFD) included, before the runner reports the job's end.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
from collections.abc import AsyncIterator

from shoal.executor.engine import Stream
from shoal.executor.events import JobEvents
from shoal.executor.settings import ExecutorSettings
from shoal.units import format_bytes

_END = None
TAIL_BYTES = 8 * 1024
"""Bytes of stderr kept to find the job's last line (for its failure's error)."""
LAST_LINE = 500


class LogPump:
    """Streams one container's output to its job's events."""

    def __init__(self, events: JobEvents, settings: ExecutorSettings) -> None:
        self._events = events
        self._chunk = settings.log_chunk_bytes
        self._interval = settings.log_flush_seconds
        self._limit = settings.job_log_limit
        streams: tuple[Stream, ...] = ("stdout", "stderr")
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")(errors="replace") for name in streams
        }
        self._stream: Stream | None = None
        self._pending = bytearray()
        self._stderr_tail = bytearray()
        self.total = 0
        self.dropped = 0

    def last_stderr_line(self) -> str:
        """The last non-blank line the job wrote to stderr (kept or dropped), at most
        :data:`LAST_LINE` characters; ``""`` when there is none."""
        text = self._stderr_tail.decode(errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1][:LAST_LINE] if lines else ""

    async def run(self, frames: AsyncIterator[tuple[Stream, bytes]]) -> None:
        """Pump until the workload's log stream ``frames`` ends."""
        queue: asyncio.Queue[tuple[Stream, bytes] | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for frame in frames:
                    queue.put_nowait(frame)
            finally:
                queue.put_nowait(_END)

        reader = asyncio.create_task(read())
        try:
            await self._consume(queue)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await asyncio.shield(self._flush(final=True))

    async def _consume(self, queue: asyncio.Queue[tuple[Stream, bytes] | None]) -> None:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(deadline - loop.time(), 0)
            try:
                frame = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                await self._flush()
                deadline = None
                continue
            if frame is _END:
                return
            stream, data = frame
            if self._stream != stream:
                await self._flush()
            self._add(stream, data)
            while len(self._pending) >= self._chunk:
                await self._flush(limit=self._chunk)
            if self._pending and deadline is None:
                deadline = loop.time() + self._interval
            elif not self._pending:
                deadline = None

    def _add(self, stream: Stream, data: bytes) -> None:
        if stream == "stderr":
            self._stderr_tail += data
            del self._stderr_tail[:-TAIL_BYTES]
        room = self._limit - self.total
        if room <= 0:
            self.dropped += len(data)
            return
        kept = data[:room]
        self.dropped += len(data) - len(kept)
        self.total += len(kept)
        self._stream = stream
        self._pending += kept

    async def _flush(self, limit: int | None = None, final: bool = False) -> None:
        if self._pending and self._stream is not None:
            size = limit or len(self._pending)
            piece = bytes(self._pending[:size])
            del self._pending[:size]
            text = self._decoders[self._stream].decode(piece, final=final and not self._pending)
            if text:
                await self._events.log(self._stream, text)
        if final:
            for stream, decoder in self._decoders.items():
                if rest := decoder.decode(b"", final=True):
                    await self._events.log(stream, rest)
        if final and self.dropped:
            dropped, self.dropped = self.dropped, 0
            await self._events.log(
                "stderr",
                f"\n[shoal: output beyond the {format_bytes(self._limit)} log limit was "
                f"dropped ({format_bytes(dropped)})]\n",
            )
