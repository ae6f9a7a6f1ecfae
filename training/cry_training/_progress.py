"""Progress bars on stderr (tqdm), or silent stand-ins where tqdm is not installed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Self


class _Silent:
    """The parts of tqdm's interface the package uses, doing nothing."""

    def __init__(self, iterable: Iterable[Any] | None = None, **_: Any) -> None:
        """Keep the iterable."""
        self._iterable = iterable if iterable is not None else ()

    def __iter__(self) -> Iterator[Any]:
        """Iterate the wrapped items."""
        return iter(self._iterable)

    def __enter__(self) -> Self:
        """Context manager entry."""
        return self

    def __exit__(self, *_: object) -> None:
        """Context manager exit."""

    def update(self, _: int = 1) -> None:
        """Ignore progress."""

    def set_postfix(self, **_: Any) -> None:
        """Ignore the metrics."""

    def write(self, text: str) -> None:
        """Print a line."""
        print(text)


def progress_bar(
    iterable: Iterable[Any] | None = None, *, enabled: bool = True, **options: Any
) -> Any:
    """A tqdm bar (dynamic width, stderr) when enabled and installed, else a silent one."""
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return tqdm(iterable, dynamic_ncols=True, **options)
    return _Silent(iterable)
