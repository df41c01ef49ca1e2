"""Executor options from a file: ``--executor-config FILE`` (YAML or JSON mapping of options)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lazymerge.errors import ExecutorConfigError


def load_executor_config(path: str | Path) -> dict[str, Any]:
    """The options mapping in ``path`` (``.json``, else YAML). Raises ExecutorConfigError naming the file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ExecutorConfigError(
            f"executor config {str(p)!r} cannot be read ({exc.strerror}); pass an existing YAML or JSON file"
        ) from exc
    import yaml

    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ExecutorConfigError(f"executor config {str(p)!r} is not valid: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ExecutorConfigError(
            f"executor config {str(p)!r} holds a {type(data).__name__}; it must be a mapping of options"
        )
    return data
