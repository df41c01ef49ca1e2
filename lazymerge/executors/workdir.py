"""Checking a Spec's work_dir before any task runs."""

from __future__ import annotations

import uuid
from pathlib import Path

from lazymerge.errors import WorkDirError


def check_work_dir(work_dir: str | None) -> None:
    """Write and delete a probe under ``work_dir`` (local path or object-store URL).

    Raises WorkDirError naming the directory and the reason. ``None`` (a temp dir) is always fine.
    """
    if not work_dir:
        return
    text = str(work_dir)
    probe = f".lazymerge-probe-{uuid.uuid4().hex}"
    if "://" in text and not text.startswith("file://"):
        from obstore.store import from_url

        try:
            store = from_url(text)
            store.put(probe, b"")
            store.delete(probe)
        except Exception as exc:  # obstore raises its own error types per scheme
            raise WorkDirError(
                f"work_dir {text!r} is not writable: {exc}; pass a bucket/prefix the workers can write to"
            ) from exc
        return
    path = Path(text.removeprefix("file://")).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / probe).write_bytes(b"")
        (path / probe).unlink()
    except OSError as exc:
        raise WorkDirError(
            f"work_dir {text!r} is not writable ({exc.strerror}); pass a directory you can write to"
        ) from exc
