"""Where an input comes from: a listed example (a --val photo or input image, or a bank input), an
uploaded photo or input image, or a drawing; each becomes the model's input signal x."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.images import IMAGE_SUFFIXES, fit_square, load_rgb
from ..data.options import EDGE_SIGNALS, SIGNALS
from ..data.sources import scan_images
from ..errors import ConfigError
from ..numbers import strict_int
from .params import RequestError


def makes_inputs_from_photos(model) -> bool:
    return model.config["signal"] in SIGNALS


def fit_input(model, image: np.ndarray) -> np.ndarray:
    """An image of the model's input kind (RGB uint8, any size) fitted to its input shape."""
    h, _, c = model.input_shape
    x = fit_square(image, h)
    return x.mean(axis=2, keepdims=True).round().astype(np.uint8) if c == 1 else x


def from_photo(model, photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(input made from the photo, the photo fitted to the output size)."""
    try:
        x = model.input_from_photo(photo)
    except ConfigError as exc:
        raise RequestError(f"{exc}; choose 'this is an input' instead") from None
    return x, fit_square(photo, model.model.cfg.size)


def from_drawing(model, drawing: np.ndarray) -> np.ndarray:
    """A drawing (dark strokes on white) as the input: an edge map for edge models, else a photo
    when the model makes inputs from photos (a low-resolution model), else an input image."""
    if model.config["signal"] in EDGE_SIGNALS or not makes_inputs_from_photos(model):
        return fit_input(model, drawing)
    return model.input_from_photo(drawing)


@dataclass(frozen=True)
class Example:
    """A listed input: a file of the --val folder (photo or input image) or a bank exemplar's input."""

    name: str
    kind: str  # 'photo' | 'input' | 'bank'
    path: Path | None = None
    bank_id: int | None = None


class Examples:
    """The inputs the page lists, addressed by position (or by their listed name, looked up here)."""

    def __init__(self, model, val: Path | None, limit: int = 48) -> None:
        self.model = model
        self.items = _from_folder(model, Path(val), limit) if val else _from_bank(model, limit)
        self._by_name = {e.name: i for i, e in enumerate(self.items)}

    def find(self, value: str | None) -> int:
        """An index into the list from a form value: a position, or one of the listed names."""
        if value is not None and value in self._by_name:
            return self._by_name[value]
        try:
            i = strict_int(value)
        except ValueError:
            i = -1
        if 0 <= i < len(self.items):
            return i
        raise RequestError(f"no such example: give a position 0..{len(self.items) - 1} or a listed name", 404)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(the input x, the original photo at output size or None)."""
        e = self.items[i]
        if e.kind == "bank":
            return self.model.bank.gather("x", [e.bank_id])[0], self.model.bank.gather("y", [e.bank_id])[0]
        image = load_rgb(e.path)  # a DataError (400) if the file became unreadable
        return from_photo(self.model, image) if e.kind == "photo" else (fit_input(self.model, image), None)

    def thumbnail(self, i: int) -> np.ndarray:
        """What the list shows: the photo, or the input image (RGB uint8)."""
        e = self.items[i]
        if e.kind == "bank":
            x = self.model.bank.gather("x", [e.bank_id])[0]
            return np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x
        return fit_square(load_rgb(e.path), 96)


def _from_folder(model, root: Path, limit: int) -> list[Example]:
    if not root.is_dir():
        raise ConfigError(f"--val {root}: no such folder")
    files = sorted(scan_images(root).items())[:limit]  # hidden files and folders skipped
    if not files:
        raise ConfigError(f"--val {root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    kind = "photo" if makes_inputs_from_photos(model) else "input"
    return [Example(name, kind, path=p) for name, p in files]


def _from_bank(model, limit: int) -> list[Example]:
    """Without --val: bank inputs spread over the bank (and over its labels, when it has them)."""
    bank = model.bank
    step = max(len(bank) // limit, 1)
    picks = list(range(0, len(bank), step))[:limit]
    return [
        Example(f"bank #{i}" + (f" ({bank.labels[i]})" if bank.labels[i] else ""), "bank", bank_id=i) for i in picks
    ]
