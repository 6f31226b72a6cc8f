"""Data sources. Every source yields an in-memory uint8 tensor [N, C, H, W] at the resolution asked for;
batches become floats in [-1, 1] only when the loop takes them (see `ImageData.batch`)."""
from .sources import DATASETS, ImageData, data_status, load_data, prepare  # noqa: F401
