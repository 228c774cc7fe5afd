"""Reading a user's image: path, bytes, PIL image or array -> uint8 (H, W, 3) RGB, with errors a person can act on.

Sizes are checked from the file header before any pixel is decoded, so a huge upload costs nothing to refuse.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MIN_SIDE = 32


def to_model_range(images):
    """uint8 image tensor (any layout) -> float32 in [-1, 1], the range the VAE works in."""
    return images.float() / 127.5 - 1.0


def from_model_range(images):
    """Float image tensor in [-1, 1] -> uint8 tensor (values outside are clipped)."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte()



def load_image(src, max_pixels: int = 40_000_000) -> np.ndarray:
    """Path, bytes, PIL image or array -> uint8 (H, W, 3) RGB, upright (EXIF rotation applied), alpha over white."""
    if isinstance(src, np.ndarray):
        image = _array_to_rgb(src)
    elif isinstance(src, Image.Image):
        _check_size(src.size, max_pixels, "image")
        image = _pil_to_rgb(src)
    elif isinstance(src, (str, os.PathLike, bytes)):
        image = _read_file(src, max_pixels)
    else:
        raise ValueError(
            f"Cannot read an image from a {type(src).__name__}; give a file path, a PIL image or an array."
        )
    _check_size((image.shape[1], image.shape[0]), max_pixels, "image")
    return image


def _read_file(src, max_pixels: int) -> np.ndarray:
    name = "the uploaded image" if isinstance(src, bytes) else f"'{src}'"
    if not isinstance(src, bytes) and not Path(src).is_file():
        raise ValueError(f"Image file {name} does not exist.")
    fp = io.BytesIO(src) if isinstance(src, bytes) else src
    try:
        # `Image.open` only parses the header, so the size check below runs before any pixel is decoded. Pillow's
        # own bomb guard would warn or raise with a message about attacks; ours says what to do instead.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fp) as pil:
                _check_size(pil.size, max_pixels, name)
                pil.load()
                return _pil_to_rgb(pil)
    except Image.DecompressionBombError as error:  # the header claims far more pixels than Pillow will ever decode
        claimed = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(claimed.group(1)):,} pixels" if claimed else "too many pixels"
        raise ValueError(
            f"{name} has {size}, more than the {max_pixels:,} allowed. Downscale it (a 512-2048 px portrait is plenty)."
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as error:
        raise ValueError(
            f"Could not read {name} as an image ({type(error).__name__}: {error}). The file may be corrupt or "
            "truncated; save it again as PNG or JPEG."
        ) from None


def _check_size(size: tuple[int, int], max_pixels: int, name: str) -> None:
    width, height = size
    if min(width, height) < MIN_SIDE:
        raise ValueError(
            f"{name} is {width}x{height} pixels; a portrait needs at least {MIN_SIDE} pixels a side (512 is best)."
        )
    if width * height > max_pixels:
        raise ValueError(
            f"{name} is {width}x{height} = {width * height:,} pixels, more than the {max_pixels:,} allowed. "
            "Downscale it (a 512-2048 px portrait is plenty)."
        )


def _pil_to_rgb(pil: Image.Image) -> np.ndarray:
    pil = ImageOps.exif_transpose(pil)
    if pil.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float grey: rescale rather than clip to 255
        return _array_to_rgb(np.asarray(pil, dtype=np.float64) / max(float(np.asarray(pil).max()), 1.0))
    if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
        rgba = pil.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        pil = Image.alpha_composite(white, rgba)
    return np.ascontiguousarray(np.asarray(pil.convert("RGB"), dtype=np.uint8))


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(
            f"An image array must be (H, W), (H, W, 3) or (H, W, 4); got shape {tuple(array.shape)}."
        )
    if array.dtype == np.uint8:
        pass
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
            raise ValueError("A float image array must hold values in [0, 1]; convert it to uint8 0-255 otherwise.")
        array = np.round(array * 255.0).astype(np.uint8)
    else:
        raise ValueError(f"An image array must be uint8 (0-255) or float in [0, 1]; got dtype {array.dtype}.")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    elif array.shape[-1] == 4:
        alpha = array[..., 3:].astype(np.float32) / 255.0
        array = np.round(array[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(array)
