"""Find the ink in a photo or scan of paper and stand the writing upright, before glyphs are cut.

`normalize.white_on_black` takes the paper's level from the image border and calls everything a
quarter of the way to the darkest pixel ink: one rule for the whole image. A photo breaks it:
grey paper with sensor noise turns noise into specks that join or split letters, and light that
falls off across the page makes the dark side of the paper darker than the bright side's ink.
Here, for the glyph layout (predict's default) and the character model:

1. Polarity: the paper is the border's median; the ink lies on the side of it where the image
   (lightly blurred, so that a noisy pixel is no extreme) reaches further. Dark ink on light
   paper and light ink on dark paper both work; the image is turned dark-on-light. Images taller
   than MAX_HEIGHT are shrunk to it first.
2. Flattening: the paper's brightness is estimated by a grey closing (a maximum, then a minimum
   filter) over a window wider than any stroke, so that the ink vanishes from it, and the image is
   divided by it. Under any light the paper becomes 1 and the ink its own fraction of the paper's
   brightness (light multiplies paper and ink alike). The closing rides on the brightest noise
   and JPEG ringing, so once the ink is found the paper's level is taken again as the local mean
   of the pixels away from the ink, and the ink found again on that.
3. Noise: paper noisier than NOISE_FLOOR of the ink contrast is blurred (sigma in proportion to
   the noise) before thresholding, specks are dropped, and the grey levels are taken from the
   blurred image. Clean images are not blurred.
4. Ink: Sauvola's local threshold (skimage.filters.threshold_sauvola): a pixel is ink when it is
   darker than m * (1 + k * (s / R - 1)), m and s the mean and standard deviation of a window
   around it. R is half the flattened image's ink contrast (Sauvola's 128 of 255 for black ink on
   white paper), so faint pencil and black ink are found alike. The mask, grown by one pixel to
   keep the anti-aliased edge, selects the ink; inside it the grey levels keep the stroke's
   shading (ink contrast, brightest 1), as `white_on_black` gives them for a clean image.
5. Slant: the lean of the writing is the shear that makes the ink's column profile sharpest (the
   sum of squared column counts, a classic estimate: upright strokes pile into few columns). The
   line is sheared upright when it leans SLANT_MIN degrees or more and that shear sharpens the
   profile SLANT_GAIN times: glyphs that lean every way (EMNISTLines draws each from another
   writer or font, and the models learned them leaning) gain little from any one shear.

docs/decisions.md ("Photos of paper") says why these methods and constants.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.filters import threshold_sauvola

from text_recognizer.reading import normalize

MAX_HEIGHT = 1024  # taller images are shrunk to this height first (the ink is found at that scale)
SAUVOLA_K = 0.2  # Sauvola's k: the published value for documents; higher drops faint ink, lower admits noise
WINDOW_SHARE = 0.5  # the Sauvola window and the paper-estimate window: this share of the image height...
MIN_WINDOW = 11  # ...and at least this many pixels (odd)
NOISE_FLOOR = 0.03  # paper noise (robust sigma) above this fraction of the ink contrast is blurred away...
NOISE_BLUR = 3.0  # ...with a Gaussian of sigma NOISE_BLUR * noise / contrast pixels (0.5 to 3) before thresholding
SPECK_SHARE = 0.1  # on noisy paper, ink specks smaller than (this share of the window)^2 are dropped
NOISY_PEAK = 0.9  # on noisy paper this quantile of the ink's contrast counts as its brightest (1)
PAPER_CELLS = 24  # the paper's level is worked out on blocks of pixels: this many blocks to a window
PAPER_GAP = 2  # the paper's mean level is taken this many pixels away from the ink (JPEG ringing lies closer)
MIN_CONTRAST = 1e-3  # an image whose darkest pixel is this close to its paper holds no ink
MAX_SLANT = 40  # slants from -MAX_SLANT to MAX_SLANT degrees are tried, in steps of 1 degree
SLANT_MIN = 5.0  # a line leaning less than this (degrees) is left as it is: upright font lines measure 0...
SLANT_GAIN = 1.08  # ...and so is one whose profile this shear sharpens less than this (glyphs leaning every way)
SLANT_PIXELS = 40_000  # the slant is measured on at most this many ink pixels (every n-th)


@dataclasses.dataclass(frozen=True)
class Ink:
    """The steps from a photo to the ink that glyphs are cut from (`--show-input` draws them)."""

    mask: np.ndarray  # (H, W) bool: what the threshold calls ink
    ink: np.ndarray  # (H, W) float32, white on black, brightest ink 1, zero off the (grown) mask
    slant: float  # the writing's measured lean in degrees, positive when tops lean right
    upright: np.ndarray  # `ink` sheared upright, or `ink` itself when the line does not clearly lean
    how: str  # how the mask was found, in words (the --show-input picture says it)
    gain: float  # how many times sharper the column profile is at `slant` than upright (estimate_slant)

    @property
    def deslanted(self) -> bool:
        return self.upright is not self.ink


def _odd(n: float) -> int:
    return max(MIN_WINDOW, int(n) | 1)


def dark_ink(gray: np.ndarray) -> bool:
    """Whether the ink is darker than the paper: it lies where the image reaches furthest from the border's level."""
    a = ndimage.gaussian_filter(np.asarray(gray, dtype=np.float32), 1.0)
    g = np.asarray(gray, dtype=np.float32)
    paper = float(np.median(np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])))
    return paper - float(a.min()) >= float(a.max()) - paper


def _shrink(a: np.ndarray, factor: int, how: str) -> np.ndarray:
    """Blocks of factor x factor pixels reduced to one ("max" or "mean"), the edges padded with their own values."""
    if factor == 1:
        return a
    h, w = a.shape
    padded = np.pad(a, ((0, -h % factor), (0, -w % factor)), mode="edge")
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    return blocks.max(axis=(1, 3)) if how == "max" else blocks.mean(axis=(1, 3))


def _grow(small: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """A shrunk smooth image back at full size (bilinear), cropped to `shape`."""
    if factor == 1:
        return small
    big = Image.fromarray(small.astype(np.float32), mode="F").resize(
        (small.shape[1] * factor, small.shape[0] * factor), Image.Resampling.BILINEAR
    )
    return np.asarray(big, dtype=np.float32)[: shape[0], : shape[1]]


def paper_level(gray: np.ndarray, window: int) -> np.ndarray:
    """The paper's brightness under dark-on-light gray: a grey closing over `window` (wider than any stroke,
    so the ink vanishes from it), smoothed. It overestimates a little where noise or JPEG ringing is bright.
    Worked out on blocks of pixels (their brightest) so that a window over PAPER_CELLS blocks wide costs no more."""
    g = np.asarray(gray, dtype=np.float32)
    factor = max(1, window // PAPER_CELLS)
    small = _shrink(g, factor, "max")
    size = max(3, round(window / factor))
    small = ndimage.grey_closing(small, size=(size, size), mode="nearest")  # "reflect" would fill a dark edge
    return _grow(ndimage.gaussian_filter(small, size / 8, mode="nearest"), factor, g.shape)


def paper_mean(gray: np.ndarray, ink: np.ndarray, window: int, rough: np.ndarray) -> np.ndarray:
    """The paper's brightness as the local mean of the pixels away from the ink (Gaussian-weighted, sigma a
    quarter window): unbiased by noise and ringing, unlike the closing (`rough`), which stays where no paper is near."""
    g = np.asarray(gray, dtype=np.float32)
    away = ~ndimage.binary_dilation(ink, structure=normalize.EIGHT_CONNECTED, iterations=PAPER_GAP)
    factor = max(1, window // PAPER_CELLS)
    sigma = window / 4 / factor
    weight = ndimage.gaussian_filter(_shrink(away.astype(np.float32), factor, "mean"), sigma, mode="nearest")
    total = ndimage.gaussian_filter(_shrink(np.where(away, g, 0.0), factor, "mean"), sigma, mode="nearest")
    mean = _grow(total / np.maximum(weight, 1e-6), factor, g.shape)
    return np.where(_grow(weight, factor, g.shape) > 0.05, mean, rough)


def _noise(f: np.ndarray) -> float:
    """Robust sigma of the pixel noise: the median absolute difference from a 3x3 median (0 on clean paper)."""
    return 1.4826 * float(np.median(np.abs(f - ndimage.median_filter(f, size=3))))


def _threshold(f: np.ndarray, window: int, contrast: float, blur: float) -> tuple[np.ndarray, np.ndarray]:
    """(mask, the image it was taken from) of flattened f: Sauvola, after a blur of sigma `blur` (noisy paper)."""
    if blur:
        f = ndimage.gaussian_filter(f, blur)
    mask = f < threshold_sauvola(f, window_size=window, k=SAUVOLA_K, r=contrast / 2)
    if blur:  # specks of noise
        labels, _ = normalize.label_components(mask)
        area = np.bincount(labels.ravel())
        mask = (labels > 0) & (area[labels] > max(3, round((SPECK_SHARE * window) ** 2)))
    return mask, f


def find_ink(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """(mask, ink, how in words) of a grayscale image of either polarity (see the module docstring).

    BlankImageError when it holds no ink.
    """
    g = np.asarray(gray, dtype=np.float32)
    if g.shape[0] > MAX_HEIGHT:  # a phone photo: its line is still tens of pixels high, at a tenth of the cost
        size = (max(1, round(g.shape[1] * MAX_HEIGHT / g.shape[0])), MAX_HEIGHT)
        g = np.asarray(Image.fromarray(g, mode="F").resize(size, Image.Resampling.BOX), dtype=np.float32)
    if not dark_ink(g):
        g = 255.0 - g
    window = _odd(WINDOW_SHARE * g.shape[0])
    rough = np.maximum(paper_level(g, window), 1.0)
    f = g / rough
    contrast = float(np.median(f)) - float(ndimage.gaussian_filter(f, 1.0).min())
    if contrast <= MIN_CONTRAST:
        raise normalize.BlankImageError("the image is blank: no ink found")
    noise = _noise(f) / contrast
    blur = float(np.clip(NOISE_BLUR * noise, 0.5, 3.0)) if noise > NOISE_FLOOR else 0.0
    mask, _ = _threshold(f, window, contrast, blur)
    f = g / np.maximum(paper_mean(g, mask, window, rough), 1.0)  # again, on the paper's mean level
    mask, smooth = _threshold(f, window, contrast, blur)
    if not mask.any():
        raise normalize.BlankImageError("the image is blank: no ink found")
    x = np.where(ndimage.binary_dilation(mask, structure=normalize.EIGHT_CONNECTED), 1.0 - smooth, 0.0)
    # the brightest ink is 1; on noisy paper a noise spike is the brightest, so a quantile of the ink stands for it
    peak = float(np.quantile(x[mask], NOISY_PEAK)) if blur else float(x.max())
    if peak <= 0:
        raise normalize.BlankImageError("the image is blank: no ink found")
    how = f"Sauvola, window {window} px, k {SAUVOLA_K}" + (f", noise blurred (sigma {blur:.1f} px)" if blur else "")
    return mask, (np.clip(x, 0.0, peak) / peak).astype(np.float32), how


def estimate_slant(mask: np.ndarray) -> tuple[float, float]:
    """(the lean of the writing in degrees, positive when tops lean right, from -MAX_SLANT to MAX_SLANT; how many
    times sharper the profile is sheared upright than as it is).

    Each trial shear moves a pixel at row y by (y - centre) * tan(angle), shared between the two
    columns it falls between (so that small lines, where a few degrees move a pixel less than one
    column, still score smoothly); the shear whose column profile has the largest sum of squares
    (the sharpest) wins.
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return 0.0, 1.0
    step = max(1, ys.size // SLANT_PIXELS)
    ys, xs = ys[::step].astype(np.float64), xs[::step].astype(np.float64)
    ys -= ys.mean()
    angles = np.arange(-MAX_SLANT, MAX_SLANT + 1, dtype=np.float64)
    scores = np.empty(angles.size)
    for k, angle in enumerate(angles):
        cols = xs + ys * math.tan(math.radians(angle))
        cols -= cols.min()
        left = np.floor(cols)
        right_share = cols - left
        counts = np.bincount(left.astype(np.int64), weights=1.0 - right_share, minlength=int(left.max()) + 2)
        counts[1:] += np.bincount(left.astype(np.int64), weights=right_share, minlength=counts.size - 1)
        scores[k] = float(np.dot(counts, counts))
    best = int(np.argmax(scores))
    return float(angles[best]), float(scores[best] / scores[angles.size // 2])  # angles.size // 2: 0 degrees


def shear_upright(a: np.ndarray, degrees: float) -> np.ndarray:
    """Float image sheared so that writing leaning `degrees` stands upright, on a canvas widened to hold it."""
    t = math.tan(math.radians(degrees))
    h, w = a.shape
    extra = math.ceil(abs(t) * h)
    # the output pixel (x, y) samples the input at (x - t * y + c, y): rows move by t per row, the canvas by c
    coeffs = (1.0, -t, 0.0 if t >= 0 else -float(extra), 0.0, 1.0, 0.0)
    img = Image.fromarray(np.asarray(a, dtype=np.float32), mode="F")
    out = img.transform((w + extra, h), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=0.0)
    return np.asarray(out, dtype=np.float32)


def read_ink(gray: np.ndarray, *, deslant: bool = True) -> Ink:
    """The ink of a photo or scan (at most MAX_HEIGHT high), and with `deslant` the line stood upright when it
    clearly leans (SLANT_MIN, SLANT_GAIN): one writer's slant, which the models saw little of."""
    mask, ink, how = find_ink(gray)
    slant, gain = estimate_slant(mask) if deslant else (0.0, 1.0)
    upright = shear_upright(ink, slant) if abs(slant) >= SLANT_MIN and gain >= SLANT_GAIN else ink
    return Ink(mask=mask, ink=ink, slant=slant, upright=upright, how=how, gain=gain)


def global_ink(gray: np.ndarray) -> Ink:
    """The older whole-image rule (`normalize.white_on_black`), as steps: for `--layout line`, which keeps it."""
    ink = normalize.white_on_black(gray)
    how = "the whole image's rule (--layout line): a quarter of the darkest ink's contrast to the border"
    return Ink(mask=ink > normalize.INK_THRESHOLD, ink=ink, slant=0.0, upright=ink, how=how, gain=1.0)
