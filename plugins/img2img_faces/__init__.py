"""Built-in plugin: the `face` preset for cyclegan and pix2pix, with its convert pipeline (find,
align, translate and paste back each face of a photo), and `img2img prepare faces`, which crops
aligned faces from photos for training. Detectors load on first use, never here."""
import img2img

from .command import faces_command
from .pipeline import FacePipeline

PIPELINE = FacePipeline()

# Aligned crops are already framed, so the whole 256 px crop is kept and a mild scale jitter
# (zoom by 0.95..1.05, edges replicated) replaces the default 286 -> 256 random crop; flips keep
# faces plausible; colour jitter stays mild so skin tones survive.
TRAINING = {"load_size": 256, "crop_size": 256, "scale_jitter": 0.05, "flip": True,
            "color_jitter": 0.1}


@img2img.hookimpl
def register_presets(register):
    register(img2img.Preset(
        "face", "cyclegan",
        "aligned face crops (img2img prepare faces): 256 px, mild scale jitter, flips, mild "
        "colour jitter, identity loss; convert pastes translated faces back into photos",
        options={"lambda_identity": 0.5}, training=TRAINING, pipeline=PIPELINE))
    register(img2img.Preset(
        "face", "pix2pix",
        "aligned face crops: 256 px, mild scale jitter, flips, mild colour jitter; convert "
        "pastes translated faces back into photos",
        training=TRAINING, pipeline=PIPELINE))


@img2img.hookimpl
def register_prepare_commands(register):
    register(faces_command)
