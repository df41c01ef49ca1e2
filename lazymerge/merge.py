"""The seed's import path: ``from lazymerge.merge import merge``.

The function lives in ``lazymerge.api`` and is ``lazymerge.merge``. Importing this module (which would
rebind the package attribute ``lazymerge.merge`` to the module) leaves ``lazymerge.merge(...)`` working:
the module is callable and calls the function.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from lazymerge.api import merge
from lazymerge.result import MergeResult

__all__ = ["MergeResult", "merge"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> MergeResult:
        return merge(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
