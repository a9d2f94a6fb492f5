"""Ground-truth datasets: one interface (`GroundTruthDataset`), procedural and file ones.

    from fdae.data import get_dataset, list_datasets
    ds = get_dataset("shapes3d-synth")            # or "shapes3d", root="/data"
    ds = get_dataset("folder:/data/my_images")    # your own images (no factors)
    images, factors = ds.sample_batch(64, torch.Generator().manual_seed(0), "cpu")
"""

from fdae.data.base import GroundTruthDataset, uint8_to_signed
from fdae.data.folder import ImageFolder
from fdae.data.registry import DatasetInfo, dataset_info, get_dataset, list_datasets, locate

__all__ = ["GroundTruthDataset", "ImageFolder", "DatasetInfo", "dataset_info", "get_dataset", "list_datasets",
           "locate", "uint8_to_signed"]
