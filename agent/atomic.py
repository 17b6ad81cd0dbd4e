"""Writing a file so that its real name only ever holds a complete file.

Models, manifests and reports are written beside a temporary name and renamed
into place: a crash or an interrupt leaves the old file (or none), never half
of a new one, and a cache that checks for a file's presence stays truthful.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`; what the block writes there replaces `path` when the block
    completes, and is removed if it raises."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    with replacing(path) as tmp:
        tmp.write_text(text)
    return Path(path)
