"""Numbers and gateway-side records of the invocation plane (the wire itself: shared/wire.py)."""

from __future__ import annotations

from pydantic import Field

from fnplane.shared.models.compute import WireModel

# NVCF numbers (reference/invocation.md section 4)
DEFAULT_POLL_S = 60
DEFAULT_SSE_POLL_S = 1200
MAX_POLL_S = 3600
MAX_DIRECT_RESPONSE_BYTES = 5 * 1024 * 1024


class AssetRecord(WireModel):
    """Key `asset_key(nca, id)` of ASSET_BUCKET."""

    asset_id: str = Field(alias="assetId")
    nca_id: str = Field(alias="ncaId")
    content_type: str = Field(alias="contentType")
    description: str
    created_at: str = Field(alias="createdAt")
    uploaded: bool = False
    size: int | None = None
