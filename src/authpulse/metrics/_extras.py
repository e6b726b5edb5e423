"""The optional-import guard: :func:`require` imports an integration's package
or raises :class:`MissingExtraError` naming the extra that installs it."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from .._core.errors import MissingExtraError as _MissingExtraError

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(_MissingExtraError):
    """An integration was used but its package is not installed.

    ``package`` is what is missing; ``extra`` the authpulse extra that
    installs it (``pip install 'authpulse[extra]'``). A kind of
    :class:`authpulse.MissingExtraError`.
    """

    def __init__(self, integration: str, package: str, extra: str) -> None:
        self.integration = integration
        self.package = package
        super().__init__(
            f"authpulse.metrics.{integration} needs the {package!r} package: "
            f"install the {extra!r} extra (pip install 'authpulse[{extra}]')",
            feature=f"authpulse.metrics.{integration}",
            extra=extra,
        )


def require(modules: Iterable[str], *, integration: str, package: str, extra: str) -> None:
    """Import ``modules`` or raise :class:`MissingExtraError`."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise MissingExtraError(integration, package, extra) from exc


# The public names defined here show the module they are imported from.
for _public in (MissingExtraError,):
    _public.__module__ = "authpulse.metrics"
del _public
