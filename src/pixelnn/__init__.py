"""PixelNN: example-based conditional image synthesis.

Stage 1 regresses a smooth image f(x) from an incomplete signal x; stage 2 copies high
frequencies pixel by pixel from training exemplars matched with hypercolumn descriptors.

    import pixelnn
    model = pixelnn.load("runs/celeba")          # a model folder made by `pixelnn train`
    result = model.synthesize(x)                 # x: the input signal, uint8 (h, w, c)
    model.save("models/celeba")                  # a copy that pixelnn.load opens

`import pixelnn` stays light (no torch): the model code is imported on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = [
    "Candidate",
    "ExemplarSet",
    "PixelNN",
    "Request",
    "Result",
    "Spec",
    "list_backbones",
    "load",
    "transfer_labels",
]


def load(path, bank=None, search: str = "auto", device: str = "cpu"):
    """The PixelNN model in the model folder `path` (made by `pixelnn train` or PixelNN.save), with its bank.

    bank: another bank folder (default: the folder's own); search: 'auto', 'exact' or 'fast';
    device: 'cpu', 'cuda', 'cuda:N' or 'auto'. Same as PixelNN.load.
    """
    from .synth.pipeline import PixelNN

    return PixelNN.load(path, bank=bank, search=search, device=device)


def list_backbones() -> list[str]:
    """Names of the pixel-descriptor backbones (`pixelnn train --backbone`), the default first.

    >>> list_backbones()[0]
    'vgg16-hed'
    """
    from .features import BACKBONES

    return list(BACKBONES)


def __getattr__(name):  # lazy: `import pixelnn` stays cheap for the CLI's --help
    if name in ("PixelNN", "Result", "Candidate"):
        from .synth import pipeline as module
    elif name == "Request":
        from .synth import request as module
    elif name in ("ExemplarSet", "transfer_labels"):
        from .synth import control as module
    elif name == "Spec":
        from .synth import grid as module
    else:
        raise AttributeError(f"module 'pixelnn' has no attribute {name!r}")
    return getattr(module, name)
