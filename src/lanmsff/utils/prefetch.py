"""An iterator run ahead in a background thread, so that making the next item overlaps using this one.

Worth it when making and using an item both spend their time outside Python (decoding, a TFLite
interpreter, torch, OpenCV): those release the GIL, so on two cores the two halves run side by side.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")
_ITEM, _END, _ERROR = range(3)
_POLL_S = 0.05  # how often a blocked producer looks whether it was closed


class Prefetched(Generic[T]):
    """Iterate ``items`` in a thread of its own, at most ``depth`` items ahead of the consumer.

    Use it as a context manager: leaving the block (also by an exception or Ctrl+C) stops the producer
    after the item it is making and closes ``items`` in the producer's thread, so a generator's ``finally``
    (releasing a video file, say) runs. An exception raised by ``items`` is raised again by the iteration,
    after the items made before it. Items come in their order; iterate once.
    """

    def __init__(self, items: Iterable[T], *, depth: int = 2, name: str = "prefetch") -> None:
        if depth < 1:
            raise ValueError(f"depth={depth} must be at least 1")
        self._queue: queue.Queue[tuple[int, object]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(iter(items),), name=name, daemon=True)
        self._thread.start()

    def _produce(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                if not self._put(_ITEM, item):
                    return
            self._put(_END, None)
        except BaseException as err:
            self._put(_ERROR, err)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def _put(self, kind: int, value: object) -> bool:
        """Queue an entry, waiting for room; ``False`` when the consumer closed first."""
        while not self._stop.is_set():
            try:
                self._queue.put((kind, value), timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            kind, value = self._queue.get()
            if kind == _END:
                return
            if kind == _ERROR:
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]

    def close(self) -> None:
        """Stop the producer (after the item it is making) and wait for it."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Prefetched[T]:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
