"""The face-normal estimator (data/face_normals.py): its cost and what it finds; prints a table, then one JSON line.

    .venv/bin/python benchmarks/face_normals.py --data ../shared/data/celeba/val --limit 200

Per set of images at the working size (96 by default), made from the first --limit photos of --data:
- photos: the photos themselves (what the normals signal and the metric's reference see);
- 12x12 bicubic: the photos downsampled by 8 and upsampled again (a blurred face);
- noise: the photos' pixels shuffled (the same colours, no face);
it gives the face-found rate, the share of pixels with a normal where a face is found, and the time per
image of the face mesh, of the rasterisation, and of scoring one output (its normal map estimated, then
the six statistics against the photo's). Also the angular error between the normals of a photo and of its
JPEG-compressed copy (quality 75): how far the estimator moves for a change a person does not see.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pixelnn.data import face_normals as fn
from pixelnn.data.images import fit_square, load_rgb
from pixelnn.data.sources import scan_images
from pixelnn.regress.precision import cpu_summary, describe_cpu


def variants(photos: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """The image sets the table measures, each (N, S, S, 3) uint8."""
    S = photos.shape[1]
    small = [Image.fromarray(p).resize((S // 8, S // 8), Image.Resampling.BICUBIC) for p in photos]
    blurred = np.stack([np.asarray(s.resize((S, S), Image.Resampling.BICUBIC)) for s in small])
    rng = np.random.default_rng(seed)
    noise = np.stack([rng.permutation(p.reshape(-1, 3)).reshape(p.shape) for p in photos])
    return {"photos": photos, "12x12 bicubic": blurred, "noise": noise}


def jpeg(image: np.ndarray, quality: int = 75) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def timed_estimate(images: np.ndarray) -> tuple[fn.NormalMaps, float, float]:
    """The normal maps, and the seconds per image of the face mesh and of the rasterisation."""
    n, h, w, _ = images.shape
    normals, mask, found = np.zeros((n, h, w, 3), np.float32), np.zeros((n, h, w), bool), np.zeros(n, bool)
    mesh = raster = 0.0
    for i, im in enumerate(images):
        t0 = time.perf_counter()
        points = fn.landmarks(im)
        t1 = time.perf_counter()
        if points is not None:
            found[i] = True
            normals[i], mask[i] = fn.rasterise(points, h, w)
        mesh, raster = mesh + t1 - t0, raster + time.perf_counter() - t1
    return fn.NormalMaps(normals, mask, found), mesh / n, raster / max(int(found.sum()), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a folder of face photos")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--size", type=int, default=96)
    args = p.parse_args()
    files = sorted(scan_images(args.data).items())[: args.limit]
    photos = np.stack([fit_square(load_rgb(path), args.size) for _, path in files])
    fn.landmarks(photos[0])  # the face mesh's start-up, not counted
    rows = {}
    for name, images in variants(photos).items():
        maps, mesh_s, raster_s = timed_estimate(images)
        covered = float(maps.mask[maps.found].mean()) if maps.found.any() else 0.0
        rows[name] = {
            "found": float(maps.found.mean()),
            "covered": covered,
            "mesh_ms": 1e3 * mesh_s,
            "raster_ms": 1e3 * raster_s,
        }
    reference = fn.estimate(photos)
    t0 = time.perf_counter()
    compressed = fn.estimate(np.stack([jpeg(p) for p in photos]))
    errors = [
        fn.compare(
            fn.NormalMaps(compressed.normals[i : i + 1], compressed.mask[i : i + 1], compressed.found[i : i + 1]),
            reference.normals[i],
            reference.mask[i],
        )
        for i in range(len(photos))
    ]
    score_ms = 1e3 * (time.perf_counter() - t0) / len(photos)
    jpeg_mean = float(np.nanmean([e["normal_mean"][0] for e in errors]))
    jpeg_30 = float(np.nanmean([e["normal_30"][0] for e in errors]))
    print(f"CPU: {describe_cpu()}")
    print(f"{len(photos)} photos of {args.data} at {args.size}x{args.size}\n")
    print("| images | face found | pixels with a normal (faces found) | face mesh ms/image | rasterise ms/face |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['found']:.1%} | {r['covered']:.1%} | {r['mesh_ms']:.1f} | {r['raster_ms']:.1f} |")
    print(f"\nscoring one output (estimate its normals, six statistics against the photo's): {score_ms:.1f} ms")
    print(f"photo against its JPEG (quality 75): mean angular error {jpeg_mean:.2f} deg, within 30 deg {jpeg_30:.1f}%")
    summary = {
        "cpu": cpu_summary(),
        "images": len(photos),
        "size": args.size,
        "sets": rows,
        "score_ms": score_ms,
        "jpeg_mean_deg": jpeg_mean,
        "jpeg_within30": jpeg_30,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
