"""Turn a user's description of their data into a sorted list of Samples.

Three layouts: a folder of photos (inputs are made from them), a folder of A|B pair files
(input and target side by side, as in pix2pix), and two parallel folders of inputs and targets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from ..errors import ConfigError, DataError
from .images import IMAGE_SUFFIXES, is_image_file
from .labels import LabelSpec, assign_labels
from .notice import examples, warn_data

DIRECTIONS = ("AtoB", "BtoA")


@dataclass(frozen=True)
class Sample:
    name: str  # path relative to the source root, '/'-separated; the sample's id
    target: Path  # the photo (or the A|B pair file)
    input: Path | None = None  # paired folders: the input file; None otherwise
    half: str | None = None  # A|B pair files: 'left' or 'right' = which half is the TARGET photo
    label: str | None = None

    def absolute(self) -> Sample:
        """This sample with absolute file paths (for a process whose working folder differs)."""
        source = None if self.input is None else self.input.absolute()
        return replace(self, target=self.target.absolute(), input=source)


def _looked_for() -> str:
    return "image files (" + ", ".join(sorted(IMAGE_SUFFIXES)) + ", any case, in any sub-folder)"


def _check_root(root: str | os.PathLike, role: str) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"{path}: {role} not found")
    if not path.is_dir():
        raise DataError(f"{path}: {role} is not a folder")
    return path


def scan_images(root: Path) -> dict[str, Path]:
    """{relative '/'-separated name: path} of all image files under root, hidden entries skipped.

    Follows symlinked folders, but visits each real folder once.
    """
    found: dict[str, Path] = {}
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file in files:
            if file.startswith(".") or not is_image_file(file):
                continue
            path = Path(folder) / file
            found[path.relative_to(root).as_posix()] = path
    return dict(sorted(found.items()))


def _images_in(root: str | os.PathLike, role: str) -> tuple[Path, dict[str, Path]]:
    path = _check_root(root, role)
    found = scan_images(path)
    if not found:
        raise DataError(f"{path}: no {_looked_for()} in this {role}")
    return path, found


def _with_labels(samples: list[Sample], labels: LabelSpec) -> list[Sample]:
    values = assign_labels([s.name for s in samples], labels)
    return [replace(s, label=value) for s, value in zip(samples, values)]


def photo_folder(root: str | os.PathLike, labels: LabelSpec = None) -> list[Sample]:
    """Every image under root (recursively), sorted by relative name."""
    _, found = _images_in(root, "photo folder")
    return _with_labels([Sample(name=name, target=path) for name, path in found.items()], labels)


def _target_half(direction: str) -> str:
    """'AtoB' -> 'right' (B, the right half, is the target); 'BtoA' -> 'left'."""
    by_lower = {d.lower(): d for d in DIRECTIONS}
    canonical = by_lower.get(str(direction).lower())
    if canonical is None:
        raise ConfigError(
            f"pair direction must be 'AtoB' (input left, target right) or 'BtoA' "
            f"(input right, target left), got {direction!r}"
        )
    return "right" if canonical == "AtoB" else "left"


def pair_files(root: str | os.PathLike, direction: str = "BtoA", labels: LabelSpec = None) -> list[Sample]:
    """Files holding two images side by side, A on the left and B on the right.

    direction 'AtoB': input = A (left), target = B (right). 'BtoA': input = B (right),
    target = A (left); the shared edges2shoes/edges2handbags files (photo|edges) need 'BtoA'.
    """
    half = _target_half(direction)
    _, found = _images_in(root, "pair folder")
    return _with_labels([Sample(name=n, target=p, half=half) for n, p in found.items()], labels)


def _by_stem(found: dict[str, Path], root: Path) -> dict[str, tuple[str, Path]]:
    """{name without suffix: (name, path)}; two files differing only in suffix are an error."""
    stems: dict[str, tuple[str, Path]] = {}
    for name, path in found.items():
        stem = str(PurePosixPath(name).with_suffix(""))
        if stem in stems:
            raise DataError(f"{root}: {stems[stem][0]!r} and {name!r} differ only in their suffix; keep one")
        stems[stem] = (name, path)
    return stems


def paired_folders(
    input_root: str | os.PathLike, target_root: str | os.PathLike, labels: LabelSpec = None
) -> list[Sample]:
    """Inputs and targets in two folders, matched by relative path without suffix.

    inputs/a/1.png pairs with targets/a/1.jpg; the sample's name is the target's relative name.
    Unmatched files are dropped with a warning; no match at all is a DataError.
    """
    in_root, inputs = _images_in(input_root, "input folder")
    out_root, targets = _images_in(target_root, "target folder")
    in_stems, out_stems = _by_stem(inputs, in_root), _by_stem(targets, out_root)
    common = sorted(set(in_stems) & set(out_stems))
    if not common:
        raise DataError(
            f"no file in the input folder {in_root} has a partner in the target folder {out_root} "
            f"(files are matched by relative path without suffix; e.g. input {next(iter(inputs))!r}, "
            f"target {next(iter(targets))!r})"
        )
    lone_in = sorted(in_stems[s][0] for s in set(in_stems) - set(out_stems))
    lone_out = sorted(out_stems[s][0] for s in set(out_stems) - set(in_stems))
    if lone_in or lone_out:
        warn_data(
            f"paired folders: {len(lone_in)} of {len(inputs)} inputs and {len(lone_out)} of "
            f"{len(targets)} targets have no partner and are left out"
            + (f"; inputs: {examples(lone_in)}" if lone_in else "")
            + (f"; targets: {examples(lone_out)}" if lone_out else "")
        )
    samples = [Sample(name=out_stems[s][0], target=out_stems[s][1], input=in_stems[s][1]) for s in common]
    samples.sort(key=lambda s: s.name)
    return _with_labels(samples, labels)
