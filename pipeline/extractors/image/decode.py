"""Image decoding in DataLoader workers: Pillow, EXIF orientation, any mode to RGB, bad files to rejects."""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ...errors import BadInput

ImageFile.LOAD_TRUNCATED_IMAGES = False  # truncation is an error, never grey pixels
# Validate before you allocate: decoded pixels (header size) and the resized image (shorter side at
# `resize`) each have a budget; a 60000x1 PNG of 261 bytes would otherwise resize to 15 Gpixel.
MAX_DECODED_PIXELS = 1 << 27  # 134 Mpixel, 400 MB of RGB
MAX_DECODED_BYTES = 1 << 29  # 512 MiB decoded, bit depth and bands included (a 16-bit RGBA image counts 8 bytes/pixel)
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3,
                    "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}
MAX_ASPECT = 16  # the resized image holds at most MAX_ASPECT * resize^2 pixels
_PIL_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def to_rgb(img: Image.Image) -> Image.Image:
    """Palette, alpha, CMYK, grayscale and 16-bit images to 8-bit RGB (alpha composited on white). Deep
    grayscale is scaled in place, in its own width (no float64 copy of a large image)."""
    if img.mode in ("I;16", "I;16B", "I;16L"):
        arr = np.asarray(img).astype(np.uint32)
        arr *= 255
        arr += 32767
        arr //= 65535
        img = Image.fromarray(arr.astype(np.uint8), "L")
    elif img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        hi = 65535.0 if arr.max(initial=0) > 255 else 255.0
        arr *= 255.0 / hi
        arr += 0.5
        np.clip(arr, 0, 255, out=arr)
        img = Image.fromarray(arr.astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "PA", "La"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "RGBa"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def decode(path: str, draft_size: int) -> Image.Image:
    """Open, draft-decode (JPEG at reduced scale when much larger than needed), orient, to RGB."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_DECODED_PIXELS:
                    raise BadInput("image_too_large", f"{img.width}x{img.height} pixels > {MAX_DECODED_PIXELS} "
                                                      "(MAX_DECODED_PIXELS)")
                decoded = img.width * img.height * _BYTES_PER_PIXEL.get(img.mode, 8)
                if decoded > MAX_DECODED_BYTES and img.format != "JPEG":  # JPEGs decode drafted, far smaller
                    raise BadInput("image_too_large", f"{img.width}x{img.height} {img.mode} decodes to {decoded >> 20} "
                                                      f"MiB > {MAX_DECODED_BYTES >> 20} MiB (MAX_DECODED_BYTES)")
                if img.format == "JPEG":
                    img.draft("RGB", (draft_size, draft_size))
                img.load()
                img = ImageOps.exif_transpose(img)
                return to_rgb(img)
    except FileNotFoundError:
        raise BadInput("missing_file", f"{path} does not exist") from None
    except UnidentifiedImageError as exc:
        import os

        if os.path.exists(path) and os.path.getsize(path) == 0:
            raise BadInput("empty_file", "zero-byte file") from None
        raise BadInput("not_an_image", str(exc)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInput("decompression_bomb", str(exc)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated or corrupt data as OSError/SyntaxError/EOFError, bad modes as ValueError.
        reason = "truncated" if "truncated" in str(exc) else "corrupt_image"
        raise BadInput(reason, f"{type(exc).__name__}: {exc}") from None


def resize_crop_pil(img: Image.Image, resize: int, crop: int, interpolation: str) -> torch.Tensor:
    """Resize the shorter side to ``resize``, center-crop ``crop``; uint8 CHW tensor."""
    w, h = img.size
    scale = resize / min(w, h)
    size = (max(crop, round(w * scale)), max(crop, round(h * scale)))
    img = img.resize(size, _PIL_FILTERS[interpolation])
    left, top = (size[0] - crop) // 2, (size[1] - crop) // 2
    img = img.crop((left, top, left + crop, top + crop))
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def decode_item(path: str, resize: int, crop: int, interpolation: str, resize_in_worker: bool) -> torch.Tensor:
    """One file to a uint8 CHW tensor: resized and cropped here, or left whole for the device to resize."""
    img = decode(path, resize)
    w, h = img.size
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise BadInput("image_too_large", f"{w}x{h}: resizing the shorter side to {resize} would exceed "
                                          f"{MAX_ASPECT}x{resize}^2 pixels (aspect ratio over {MAX_ASPECT}:1)")
    if resize_in_worker:
        return resize_crop_pil(img, resize, crop, interpolation)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def stack_images(tensors: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    """One tensor when sizes agree (resized in the workers), else the list (resized on the device)."""
    if tensors and all(t.shape == tensors[0].shape for t in tensors):
        return torch.stack(tensors)
    return tensors


def resize_crop_tensor(images: list[torch.Tensor], resize: int, crop: int, interpolation: str) -> torch.Tensor:
    """The same resize + center crop on uint8 CHW tensors, on whatever device they are on."""
    out = []
    for t in images:
        h, w = t.shape[-2:]
        scale = resize / min(h, w)
        size = (max(crop, round(h * scale)), max(crop, round(w * scale)))
        x = F.interpolate(t[None].float(), size=size, mode=interpolation, antialias=True, align_corners=False)
        top, left = (size[0] - crop) // 2, (size[1] - crop) // 2
        out.append(x[0, :, top:top + crop, left:left + crop])
    return torch.stack(out).clamp_(0, 255)
