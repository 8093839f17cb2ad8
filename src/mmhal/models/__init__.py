from .network import MultimodalNet, NetOutput, build_network, trunk_geometry
from .pyramid import num_regions, region_pool

__all__ = ["MultimodalNet", "NetOutput", "build_network", "trunk_geometry", "num_regions", "region_pool"]
