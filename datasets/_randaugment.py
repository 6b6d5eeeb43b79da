"""ALBEF's ``RandomAugment(2, 7)`` as the IGM code applies it to the image-text training images, rewritten.

IGM (``datasets/__init__.py`` 22-29) runs ``RandomResizedCrop(224, scale=(0.5, 1), bicubic)``, a horizontal flip,
then ALBEF's ``RandomAugment(2, 7, isPIL=True, augs=[...10 ops...])`` (``datasets/randaugment.py``, OpenCV on a
uint8 HxWx3 array). What it does, and what this module reproduces:

* draws (numpy's legacy generator): ``N`` op indices with replacement from the 10 ops, in the release's order;
  then, per op, one uniform number -- the op is skipped when it is above 0.5 -- and, for the signed ops, one
  more for the sign (shear / translate: negative when above 0.5; rotate: negative when below 0.5);
* magnitudes at level ``M`` of 10: enhance factor ``M/10 * 1.8 + 0.1`` (1.36 at 7, never below 1: the
  image is always brightened / sharpened), shear ``M/10 * 0.3`` (0.21), translation ``M/10 * 10`` pixels (7),
  rotation ``M/10 * 30`` degrees (21); no Color, Contrast, Solarize, Posterize or Cutout;
* warps (shear, translate, rotate): inverse-mapped bilinear sampling with pixel centres on integer coordinates
  (OpenCV ``warpAffine``), rotation about ``(W/2, H/2)``, grey fill (128, 128, 128) outside the image;
* Sharpness blends with a 3x3 smoothing (centre 5/13, neighbours 1/13) on the interior only (the one-pixel
  border is kept); Equalize and AutoContrast work per channel with lookup tables.

Two quirks of the release are part of the official behaviour (``corrected=True`` removes both):

* AutoContrast computes its offset as ``-low * scale`` with ``low`` a numpy uint8, whose negation wraps to
  ``256 - low``: every channel whose minimum is above 0 saturates to 255;
* Sharpness casts the blended float image to uint8 without clipping; numpy on x86 truncates and wraps modulo
  256 (``-3.2 -> 253``, ``260.7 -> 4``), which we do explicitly so that the result does not depend on the CPU.

Our warps compute in floating point and round half up; OpenCV computes in fixed point (1/32-pixel coordinates
up to 4.10; float kernels since 4.11), so a warped pixel may differ from the release's by a few levels
(measured in ``tests/test_golden_datasets.py``). Every other op is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

OPS = (
    "Identity",
    "AutoContrast",
    "Equalize",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
)
FILL = (128, 128, 128)


@dataclass(frozen=True)
class AppliedOp:
    """One op that ran: its name and its signed argument (factor, shear, pixels or degrees; None if it has none)."""

    name: str
    value: float | None = None


class AlbefRandomAugment:
    """``RandomAugment(n, m)`` with the IGM op list; ``sample`` draws the ops, ``apply`` runs them."""

    def __init__(self, n: int = 2, m: int = 7, max_level: int = 10, corrected: bool = False) -> None:
        self.n, self.m, self.max_level, self.corrected = n, m, max_level, corrected

    def sample(self, rng: np.random.RandomState) -> list[AppliedOp]:
        """The ops that will run, drawn in the release's order from a numpy ``RandomState``."""
        level = self.m / self.max_level
        picked = rng.choice(len(OPS), self.n)
        out = []
        for k in picked:
            name = OPS[int(k)]
            if rng.random_sample() > 0.5:  # each op runs with probability 0.5
                continue
            value: float | None = None
            if name in ("Brightness", "Sharpness"):
                value = level * 1.8 + 0.1
            elif name in ("ShearX", "ShearY"):
                value = level * 0.3
                value = -value if rng.random_sample() > 0.5 else value
            elif name in ("TranslateX", "TranslateY"):
                value = level * 10.0
                value = -value if rng.random_sample() > 0.5 else value
            elif name == "Rotate":
                value = level * 30.0
                value = -value if rng.random_sample() < 0.5 else value
            out.append(AppliedOp(name, value))
        return out

    def apply(self, img: np.ndarray, ops: list[AppliedOp]) -> np.ndarray:
        """Run ``ops`` on a uint8 (H, W, 3) array."""
        for op in ops:
            img = apply_op(img, op, self.corrected)
        return img

    def __call__(self, img: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        return self.apply(img, self.sample(rng))


def apply_op(img: np.ndarray, op: AppliedOp, corrected: bool = False) -> np.ndarray:
    """One op on a uint8 (H, W, 3) array."""
    name, v = op.name, op.value
    if name == "Identity":
        return img
    if name == "AutoContrast":
        return np.stack([_autocontrast(img[..., c], corrected) for c in range(img.shape[2])], axis=-1)
    if name == "Equalize":
        return np.stack([_equalize(img[..., c]) for c in range(img.shape[2])], axis=-1)
    if name == "Brightness":
        lut = (np.arange(256, dtype=np.float32) * v).clip(0, 255).astype(np.uint8)
        return lut[img]
    if name == "Sharpness":
        return _sharpness(img, float(v), corrected)
    if name == "ShearX":
        return warp_affine(img, np.array([[1, v, 0], [0, 1, 0]], dtype=np.float32))
    if name == "ShearY":
        return warp_affine(img, np.array([[1, 0, 0], [v, 1, 0]], dtype=np.float32))
    if name == "TranslateX":
        return warp_affine(img, np.array([[1, 0, -v], [0, 1, 0]], dtype=np.float32))
    if name == "TranslateY":
        return warp_affine(img, np.array([[1, 0, 0], [0, 1, -v]], dtype=np.float32))
    if name == "Rotate":
        return warp_affine(img, rotation_matrix(img.shape[1] / 2, img.shape[0] / 2, float(v)))
    raise ValueError(f"unknown RandomAugment op {name!r}; expected one of {OPS}")


def _autocontrast(ch: np.ndarray, corrected: bool) -> np.ndarray:
    lo, hi = int(ch.min()), int(ch.max())
    if hi <= lo:
        return ch
    scale = 255 / (hi - lo)
    minus_lo = -lo if corrected else (-lo) % 256  # the release negates a uint8 scalar: -lo wraps to 256 - lo
    lut = np.arange(256) * scale + minus_lo * scale
    return lut.clip(0, 255).astype(np.uint8)[ch]


def _equalize(ch: np.ndarray) -> np.ndarray:
    hist = np.bincount(ch.ravel(), minlength=256).astype(np.float32)
    used = hist[hist != 0]
    step = used[:-1].sum(dtype=np.float32) // np.float32(255)
    if step == 0:
        return ch
    shifted = np.concatenate([np.array([step // 2], dtype=np.float32), hist[:-1]])
    lut = (np.cumsum(shifted, dtype=np.float32) // step).clip(0, 255).astype(np.uint8)
    return lut[ch]


def _smooth(img: np.ndarray) -> np.ndarray:
    """3x3 filter (centre 5/13, others 1/13), reflect-101 border, rounded to uint8 (OpenCV filter2D)."""
    p = np.pad(img.astype(np.int32), ((1, 1), (1, 1), (0, 0)), mode="reflect")
    h, w = img.shape[:2]
    total = sum(p[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) + 4 * img.astype(np.int32)
    return np.clip(np.rint(total / 13.0), 0, 255).astype(np.uint8)  # k/13 is never a tie


def _sharpness(img: np.ndarray, factor: float, corrected: bool) -> np.ndarray:
    smooth = _smooth(img)
    if factor == 0.0:
        return smooth
    if factor == 1.0:
        return img
    out = img.astype(np.float32)
    inner = smooth[1:-1, 1:-1].astype(np.float32)
    out[1:-1, 1:-1] = inner + np.float32(factor) * (out[1:-1, 1:-1] - inner)
    if corrected:
        return out.clip(0, 255).astype(np.uint8)
    return (np.trunc(out).astype(np.int64) & 0xFF).astype(np.uint8)  # the release's unclipped cast (x86)


def rotation_matrix(cx: float, cy: float, degrees: float) -> np.ndarray:
    """OpenCV's ``getRotationMatrix2D((cx, cy), degrees, 1)``: counter-clockwise on screen for positive angles."""
    a, b = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[a, b, (1 - a) * cx - b * cy], [-b, a, b * cx + (1 - a) * cy]], dtype=np.float64)


def warp_affine(img: np.ndarray, forward: np.ndarray, fill: tuple[int, ...] = FILL) -> np.ndarray:
    """``dst(x, y) = src(forward^-1 (x, y))``, bilinear, taps outside the image read ``fill``; uint8 in and out."""
    m = np.asarray(forward, dtype=np.float64)
    lin = np.linalg.inv(m[:, :2])
    inv = np.concatenate([lin, -lin @ m[:, 2:]], axis=1)
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    src = img.astype(np.float64)
    fill_px = np.asarray(fill, dtype=np.float64)

    def tap(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        vals = src[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
        return np.where(inside[..., None], vals, fill_px)

    out = (
        tap(y0, x0) * (1 - fx) * (1 - fy)
        + tap(y0, x0 + 1) * fx * (1 - fy)
        + tap(y0 + 1, x0) * (1 - fx) * fy
        + tap(y0 + 1, x0 + 1) * fx * fy
    )
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)
