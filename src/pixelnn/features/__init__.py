"""Pixel and global descriptors computed from images by a pluggable backbone.

The backbones' names live here, importable without PyTorch (so --help is instant); their networks
are in backbones.py.
"""

BACKBONES = ("vgg16-hed", "efficientnet-lite0")  # the default first; the names stored in a bank's manifest
DEFAULT_BACKBONE = BACKBONES[0]
