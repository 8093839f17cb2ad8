from .base import DATASETS, MultimodalData, input_kind, load_dataset, register_dataset

__all__ = ["DATASETS", "MultimodalData", "input_kind", "load_dataset", "register_dataset"]
