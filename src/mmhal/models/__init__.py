from .network import (
    BACKBONES,
    MultimodalNet,
    NetOutput,
    NetworkBase,
    build_network,
    param_groups,
    trunk_geometry,
)
from .pyramid import num_regions, region_pool

__all__ = [
    "BACKBONES", "MultimodalNet", "NetOutput", "NetworkBase", "build_network", "param_groups", "trunk_geometry",
    "num_regions", "region_pool",
]
