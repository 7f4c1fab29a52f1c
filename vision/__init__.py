"""Camera frames to validated parcel identities: decoding pipeline, identity rules, synthetic labels."""

from vision.aggregate import ParcelRead, ParcelStatus, aggregate
from vision.decode import decode_frame
from vision.engines import Read
from vision.labels import BadRead, Identity, parse_identity
from vision.parcel import ParcelDecoder

__all__ = [
    "BadRead",
    "Identity",
    "ParcelDecoder",
    "ParcelRead",
    "ParcelStatus",
    "Read",
    "aggregate",
    "decode_frame",
    "parse_identity",
]
