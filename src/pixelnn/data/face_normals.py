"""Surface normals of faces estimated from photos, with MediaPipe's face mesh (an optional extra).

The mesh gives 468 landmarks in 3-D per face. They are triangulated on the image plane (Delaunay),
so the visible face is a height field over the triangles; each triangle's normal faces the camera,
each landmark gets the area-weighted mean of its triangles' normals, and every pixel inside the
triangulation the barycentric blend of its triangle's three vertex normals, renormalised. Hair,
background and neck get no normal: they are outside the mask.

Camera frame: x to the right, y up, z towards the viewer (a normal facing the camera has z > 0).
As an input signal, a normal map is stored as RGB uint8, round(255 (n + 1) / 2) per channel where
the mask holds and UNKNOWN (0, 0, 0) elsewhere. No unit vector facing the camera encodes to that
value (its blue channel is at least 128), so stage 1 and the ranking see "no normal here", and
`decode` recovers the mask from the pixels alone.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from tqdm import tqdm

from ..errors import ConfigError

UNKNOWN = (0, 0, 0)  # the encoded value of a pixel without a normal
INSTALL = (
    "surface normals of faces need MediaPipe's face mesh, an optional extra: run `make setup-normals`, or "
    "`pip install 'pixelnn[normals]' && pip install --no-deps mediapipe==0.10.21` "
    "(the last release that bundles its face models)"
)
_LOCK = threading.Lock()  # one FaceMesh per process, and its graph takes one image at a time (the web app's threads)
STATISTICS = ("normal_mean", "normal_median", "normal_rmse", "normal_11", "normal_22", "normal_30")
THRESHOLDS = {"normal_11": 11.25, "normal_22": 22.5, "normal_30": 30.0}  # degrees


@dataclass(frozen=True)
class NormalMaps:
    """Normal maps of N images: normals (N, H, W, 3) float32 unit vectors (0 outside the mask), mask
    (N, H, W) bool, found (N,) bool: whether a face was found at all (no face: an empty mask)."""

    normals: np.ndarray
    mask: np.ndarray
    found: np.ndarray


def available() -> bool:
    """Whether the optional extra (MediaPipe's face mesh) can be imported."""
    try:
        require()
    except ConfigError:
        return False
    return True


def require() -> None:
    """ConfigError saying how to install the optional extra, unless it is installed."""
    _face_mesh_module()


def _face_mesh_module():
    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging: warnings and worse only
    try:
        from mediapipe.python.solutions import face_mesh
    except ImportError as exc:
        raise ConfigError(f"{INSTALL} ({type(exc).__name__}: {exc})") from None
    return face_mesh


@lru_cache(maxsize=1)
def _mesh():
    """One FaceMesh per process, for single photos (static_image_mode: every image detected afresh)."""
    return _face_mesh_module().FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)


def landmarks(image: np.ndarray) -> np.ndarray | None:
    """The 468 face landmarks of an RGB image (H, W, 3) uint8 in the camera frame, in pixels: (468, 3)
    float64 (x right from the left edge, y up from the top edge so negative, z towards the viewer);
    None when no face is found. MediaPipe's z has the scale of its x (image widths)."""
    image = np.ascontiguousarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB image (H, W, 3) uint8, got {image.shape} {image.dtype}")
    with _LOCK:
        found = _mesh().process(image).multi_face_landmarks
    if not found:
        return None
    h, w = image.shape[:2]
    p = np.array([(q.x, q.y, q.z) for q in found[0].landmark], np.float64)  # normalised, z away from camera
    return np.stack([p[:, 0] * w, -p[:, 1] * h, -p[:, 2] * w], axis=1)


def rasterise(points: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertex normals of the landmarks' triangulation, interpolated at pixel centres.

    points (P, 3) in the camera frame of `landmarks`. Returns normals (H, W, 3) float32 (unit inside
    the mask, 0 outside) and mask (H, W) bool: the pixels inside the triangulation.
    """
    from scipy.spatial import Delaunay, QhullError

    xy = np.stack([points[:, 0], -points[:, 1]], axis=1)  # image plane, y down
    try:
        tri = Delaunay(xy)
    except QhullError:  # all landmarks on a line: no surface
        return np.zeros((height, width, 3), np.float32), np.zeros((height, width), bool)
    a, b, c = (points[tri.simplices[:, k]] for k in range(3))  # (T, 3) each
    face = np.cross(b - a, c - a)  # (T, 3), length = twice the area: area-weighted
    face *= np.where(face[:, 2:] < 0, -1.0, 1.0)  # a height field seen from the camera: every normal faces it
    vertex = np.zeros_like(points)
    for k in range(3):
        np.add.at(vertex, tri.simplices[:, k], face)
    vertex /= np.maximum(np.linalg.norm(vertex, axis=1, keepdims=True), 1e-12)
    gy, gx = np.mgrid[0:height, 0:width]
    centres = np.stack([gx.ravel() + 0.5, gy.ravel() + 0.5], axis=1)  # (H W, 2), pixel centres
    simplex = tri.find_simplex(centres)
    inside = simplex >= 0
    T = tri.transform[simplex[inside]]  # (M, 3, 2) affine maps to barycentric coordinates
    bary2 = np.einsum("mij,mj->mi", T[:, :2], centres[inside] - T[:, 2])
    bary = np.concatenate([bary2, 1.0 - bary2.sum(1, keepdims=True)], axis=1)  # (M, 3)
    n = np.einsum("mk,mkd->md", bary, vertex[tri.simplices[simplex[inside]]])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    normals = np.zeros((height * width, 3), np.float32)
    normals[inside] = n
    return normals.reshape(height, width, 3), inside.reshape(height, width)


def estimate(images: np.ndarray, progress: bool = False, desc: str = "face normals") -> NormalMaps:
    """Normal maps of images (N, H, W, 3) uint8, each face found and meshed on its own."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected images (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    n, h, w, _ = images.shape
    normals = np.zeros((n, h, w, 3), np.float32)
    mask = np.zeros((n, h, w), bool)
    found = np.zeros(n, bool)
    for i in tqdm(range(n), desc=desc, unit="img", disable=not progress or n < 50):
        points = landmarks(images[i])
        if points is not None:
            found[i] = True
            normals[i], mask[i] = rasterise(points, h, w)
    return NormalMaps(normals, mask, found)


def encode(normals: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Normal maps (..., H, W, 3) with masks (..., H, W) -> RGB uint8 (..., H, W, 3): (n + 1) / 2 where
    the mask holds, UNKNOWN elsewhere."""
    rgb = np.round(255.0 * (np.clip(normals, -1.0, 1.0) + 1.0) / 2.0).astype(np.uint8)
    rgb[~np.asarray(mask, bool)] = UNKNOWN
    return rgb


def decode(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Encoded normal maps (..., H, W, 3) uint8 -> (unit normals (..., H, W, 3) float32, 0 outside the
    mask; mask (..., H, W) bool): the pixels whose value is not UNKNOWN."""
    x = np.asarray(x)
    mask = np.any(x != np.array(UNKNOWN, np.uint8), axis=-1)
    n = x.astype(np.float32) / 127.5 - 1.0
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)
    return np.where(mask[..., None], n, 0.0).astype(np.float32), mask


def angular_errors(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles in degrees between unit normals a and b (..., 3), elementwise: (...)."""
    cos = np.clip(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64), axis=-1), -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def error_statistics(errors: np.ndarray) -> dict[str, float]:
    """The six statistics of angular errors (degrees) over pixels (P,): mean, median, RMSE (degrees) and
    the percent of pixels within 11.25, 22.5 and 30 degrees; NaN for every one when P = 0."""
    e = np.asarray(errors, np.float64).ravel()
    if e.size == 0:
        return dict.fromkeys(STATISTICS, float("nan"))
    out = {
        "normal_mean": float(e.mean()),
        "normal_median": float(np.median(e)),
        "normal_rmse": float(np.sqrt((e**2).mean())),
    }
    out.update({name: float(100.0 * np.mean(e < t)) for name, t in THRESHOLDS.items()})
    return out


def compare(outputs: NormalMaps, real_normals: np.ndarray, real_mask: np.ndarray) -> dict[str, np.ndarray]:
    """The six statistics of every output (N,) against the real photo's normal map (H, W, 3) and mask
    (H, W), over the pixels where both have a normal; NaN for an output without a face (or without
    overlap). Also 'face_found' (N,) 1.0 / 0.0."""
    out = {name: np.full(len(outputs.found), np.nan) for name in STATISTICS}
    for i in range(len(outputs.found)):
        both = outputs.mask[i] & real_mask
        if not outputs.found[i] or not both.any():
            continue
        for name, value in error_statistics(angular_errors(outputs.normals[i][both], real_normals[both])).items():
            out[name][i] = value
    out["face_found"] = outputs.found.astype(np.float64)
    return out
