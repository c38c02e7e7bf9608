"""Built-in plugin: CUT and FastCUT (Park et al. 2020), one-sided unpaired image-to-image
translation with a patchwise contrastive loss."""
import img2img

from .model import CUT, FastCUT
from .patchnce import ProjectionHead, patch_nce_loss

__all__ = ["CUT", "FastCUT", "ProjectionHead", "patch_nce_loss"]


@img2img.hookimpl
def register_models(register):
    register(CUT)
    register(FastCUT)
