"""Images in and out. The input pipeline: folder scanning and checks (`folders`), decoding
(`decode`), the datasets (`datasets`), the seeded, resumable sampler (`sampler`) and its loader
(`loader`), the augmentation recipes (`augment`, with its OpenCV fast path in `fast_augment`, and
`device_augment` on the training device); `open_dataset` is the front door: it builds the dataset
a model's data kind reads from the folders a user names. Tensor ops on batches (`ops`), writing
images and sample grids (`images`) and atomic file writes (`atomic`) at the other edge."""
from .atomic import write_text
from .augment import AugmentRecipe
from .datasets import ImageFolderDataset, LabelledDataset, PairedDataset, UnpairedDataset, open_dataset
from .decode import IMAGE_EXTENSIONS, read_image, read_native
from .folders import list_images
from .images import grid, to_array, write_image
from .sampler import SeededSampler

__all__ = [
    "IMAGE_EXTENSIONS", "AugmentRecipe", "ImageFolderDataset", "LabelledDataset", "PairedDataset",
    "SeededSampler", "UnpairedDataset", "grid", "list_images", "open_dataset", "read_image",
    "read_native", "to_array", "write_image", "write_text",
]
