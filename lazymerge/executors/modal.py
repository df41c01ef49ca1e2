"""Modal: Cubed's Modal executor, after checking the credentials it needs (fails fast, never hangs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lazymerge.errors import ExecutorConfigError, ExecutorUnavailableError

# The pins the worker image installs (shared with infra/lithops and infra/modal).
REQUIREMENTS = Path(__file__).resolve().parents[2] / "infra" / "runtime-requirements.txt"


def modal_token() -> tuple[str | None, str | None]:
    """(token_id, token_secret) as the Modal client finds them: env vars, then ~/.modal.toml."""
    import modal.config

    cfg = modal.config.config
    return cfg.get("token_id"), cfg.get("token_secret")


def check_modal_credentials() -> None:
    """Raise ExecutorUnavailableError naming what is missing when Modal cannot authenticate."""
    token_id, token_secret = modal_token()
    missing = [k for k, v in (("MODAL_TOKEN_ID", token_id), ("MODAL_TOKEN_SECRET", token_secret)) if not v]
    if missing:
        raise ExecutorUnavailableError(
            f"the modal executor has no Modal credentials: {' and '.join(missing)} not set. Run "
            "`modal token new` (writes ~/.modal.toml) or export MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"
        )


def modal_executor(
    region: str | None = None,
    memory: str = "2GB",
    secret: str | None = None,
    cloud: str = "aws",
    requirements_file: str | None = None,
    **options: Any,
) -> Any:
    """Cubed's ModalExecutor. Cubed reads region/memory/secret/image from its global config when its Modal
    module is first imported, so they are set there before the import."""
    try:
        import modal  # noqa: F401
    except ImportError as exc:
        raise ExecutorUnavailableError(
            f"the modal executor needs modal: pip install 'lazymerge[modal]' ({exc})"
        ) from exc
    if not region:
        raise ExecutorConfigError(
            "the modal executor needs 'region' (e.g. region: us-east-1 in --executor-config), "
            "the region of the work_dir bucket"
        )
    check_modal_credentials()
    import cloudpickle
    import cubed

    import lazymerge

    # Cubed's Modal image has the pins but not lazymerge: ship the kernel's code with the pickled tasks.
    cloudpickle.register_pickle_by_value(lazymerge)
    req = requirements_file or (str(REQUIREMENTS) if REQUIREMENTS.exists() else None)
    exec_opts = {"region": region, "memory": memory, "cloud": cloud, "requirements_file": req, **options}
    if secret:
        exec_opts["secret"] = secret
    cubed.config.set({"spec.executor_options": exec_opts})
    os.environ.setdefault("CUBED_SPEC__EXECUTOR_OPTIONS__REGION", region)
    from cubed.runtime.executors.modal import ModalExecutor

    from lazymerge.executors.stopping import StopsAtFirstFailure

    # At a failure Cubed leaves ``app.run()``, which stops the app's containers; calls not yet started
    # and running ones stop at their next block (lazymerge.executors.stopping).
    return type("StoppingModalExecutor", (StopsAtFirstFailure, ModalExecutor), {})(**options)
