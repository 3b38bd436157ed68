"""pix2pix checkpoints: the generator, the discriminator and the training state in one safetensors file."""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError
from ...regress.checkpoint import read_checkpoint, write_checkpoint
from .model import Discriminator, Generator, Pix2PixConfig

FORMAT = "pixelnn-pix2pix"
VERSION = 1
FILENAME = "pix2pix.pt"


def save(path: Path, gen: Generator, disc: Discriminator, state: dict) -> None:
    blob = {
        "format": FORMAT,
        "version": VERSION,
        "config": gen.cfg.to_dict(),
        "generator": gen.state_dict(),
        "discriminator": disc.state_dict(),
        **state,
    }
    write_checkpoint(path, blob)  # safetensors with a JSON header (the .pt name is kept for old folders)


def read(path: Path) -> dict:
    path = Path(path)
    return read_checkpoint(path / FILENAME if path.is_dir() else path, FORMAT, VERSION, "pix2pix", "train-pix2pix")


def load_generator(path: Path) -> Generator:
    """The generator of a pix2pix run folder (or checkpoint file), in eval mode."""
    blob = read(path)
    path = Path(path) / FILENAME if Path(path).is_dir() else Path(path)  # messages name the file
    if not isinstance(blob.get("config"), dict) or not isinstance(blob.get("generator"), dict):
        raise ConfigError(f"{path} is damaged: it lacks the generator's configuration or weights")
    try:
        gen = Generator(Pix2PixConfig(**blob["config"]))
        gen.load_state_dict(blob["generator"])
    except (TypeError, ValueError, KeyError, RuntimeError) as e:  # a config or weights that do not fit the network
        raise ConfigError(
            f"{path} is damaged: its weights do not fit its configuration ({e.__class__.__name__})"
        ) from None
    gen.requires_grad_(False)
    return gen.eval()
