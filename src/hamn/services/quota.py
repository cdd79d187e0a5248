"""Storage quotas (SPEC §5.3): each registry may hold as many bytes as its SKU includes.

Usage is the bytes of the distinct blobs the registry's manifests reference, kept
exact by the metadata store in the same transaction as every manifest write or
delete. A push is checked twice: each new blob before it is published (so a 1 GiB
layer that cannot fit is refused before it is stored), and the manifest when it is
stored (the exact check: it alone makes the blobs count). A refused push stores
nothing that counts; blobs it uploaded before the refusal are unreferenced and are
not counted.
"""

from __future__ import annotations

from collections.abc import Mapping

from hamn.errors import QUOTA_EXCEEDED, HamnError
from hamn.metadata.models import Registry
from hamn.metadata.store import QuotaExceeded

#: A quota in bytes per SKU (``Settings.storage_quotas``).
Quotas = Mapping[str, int]

_UNITS = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def human(size: int) -> str:
    """``size`` bytes in the largest binary unit that keeps it at least 1 (e.g. 1.5 GiB)."""
    for unit, scale in _UNITS:
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def quota_for(quotas: Quotas, registry: Registry) -> int | None:
    """The registry's quota in bytes (None when its SKU has none configured)."""
    return quotas.get(registry.sku)


def quota_error(registry: Registry, exc: QuotaExceeded) -> HamnError:
    """QUOTA_EXCEEDED naming the limit, the usage and what to do."""
    return HamnError(
        QUOTA_EXCEEDED,
        f"registry {registry.name!r} ({registry.sku}) holds {human(exc.usage)} of its "
        f"{human(exc.quota)} quota; this push would add {human(exc.adding)}. Delete what "
        f"you no longer need ('hamn repository delete -n {registry.name} ...', 'hamn purge') "
        f"or move to a larger SKU ('hamn update -n {registry.name} --sku Standard')",
        detail={"usage": exc.usage, "adding": exc.adding, "quota": exc.quota},
    )
