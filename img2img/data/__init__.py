"""The input pipeline: folder scanning and checks (`folders`), decoding (`decode`), the datasets
(`datasets`), the seeded, resumable sampler (`sampler`) and the augmentation recipes (`augment`,
with its OpenCV fast path in `fast_augment`). `open_dataset` is the front door: it builds the
dataset a model's data kind reads from the folders a user names."""
from .augment import AugmentRecipe
from .datasets import ImageFolderDataset, LabelledDataset, PairedDataset, UnpairedDataset, open_dataset
from .decode import IMAGE_EXTENSIONS, read_image, read_native
from .folders import list_images
from .sampler import SeededSampler

__all__ = [
    "IMAGE_EXTENSIONS", "AugmentRecipe", "ImageFolderDataset", "LabelledDataset", "PairedDataset",
    "SeededSampler", "UnpairedDataset", "list_images", "open_dataset", "read_image", "read_native",
]
