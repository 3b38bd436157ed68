"""The normals signal end to end from the command line: train on a folder of face photos (one without a face
is skipped), synthesize from a photo, evaluate with the face metrics; and the errors without a face."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image
from skimage import data

from conftest import face_photos
from pixelnn.cli import main
from pixelnn.data.images import fit_square

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SIZE = 48


@pytest.fixture(scope="module")
def normals_run(tmp_path_factory):
    """`pixelnn train --signal normals` on 8 face photos and a cat: (exit code, photos, model folder, the
    data warnings it gave)."""
    root = tmp_path_factory.mktemp("normals")
    photos = root / "photos"
    photos.mkdir()
    for i, im in enumerate(face_photos(8, 64)):
        Image.fromarray(im).save(photos / f"face{i}.png")
    Image.fromarray(fit_square(data.chelsea(), 64)).save(photos / "zcat.png")
    run = root / "run"
    argv = ["train", "--data", str(photos), "--signal", "normals", "--size", str(SIZE), "--out", str(run)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main([*argv, "--steps", "3", "--width", "8", "--descriptors", "16"])
    return code, photos, run, [str(w.message) for w in caught]


def test_train_on_face_photos_skips_the_one_without_a_face(normals_run):
    code, _, run, said = normals_run
    assert code == 0
    assert any("skipped 1 of 9 photos in which no face was found" in m and "zcat.png" in m for m in said), said
    config = json.loads((run / "config.json").read_text())
    assert config["signal"] == "normals"
    bank = json.loads((run / "bank" / "bank.json").read_text())
    assert bank["count"] == 8  # the cat is not an exemplar


def test_synthesize_from_a_face_photo_shows_the_normal_map_and_its_mask(normals_run, tmp_path):
    code, photos, run, _ = normals_run
    out = tmp_path / "out"
    argv = ["synthesize", "--model", str(run), str(photos / "face3.png"), "--from-photo", "--grid", "1:1:3"]
    assert main([*argv, "--out", str(out)]) == 0
    page = next(out.glob("*/index.html"))
    html = page.read_text()
    assert "surface normals" in html and "mask.png" in html
    x = np.asarray(Image.open(page.parent / "input.png"))
    mask = np.asarray(Image.open(page.parent / "mask.png"))
    has = mask[..., 0] == 255
    assert 0.03 < has.mean() < 0.6  # the face
    assert (x[~has] == 0).all() and (x[has][:, 2] >= 128).all()  # black outside, facing the camera inside


def test_synthesize_from_a_photo_without_a_face_is_a_clear_error(normals_run, tmp_path, capsys):
    code, photos, run, _ = normals_run
    argv = ["synthesize", "--model", str(run), str(photos / "zcat.png"), "--from-photo", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no face found" in err and "Traceback" not in err


def test_evaluate_reports_the_normal_statistics_and_the_face_found_rate(normals_run, tmp_path):
    code, photos, run, _ = normals_run
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(run), "--data", str(photos), "--limit", "2", "--out", str(out)]
    assert main(argv) == 0  # --face-normals auto: on for a normals model
    rep = json.loads((out / "report.json").read_text())
    for method in ("stage1", "global", "pixelnn"):
        row = rep["methods"][method]
        for sel in ("rand1", "top1", "oracle"):
            assert 0.0 <= row[sel]["face_found"] <= 1.0
            if row[sel]["normal_mean"] is not None:
                assert 0.0 <= row[sel]["normal_median"] <= 180.0 and 0.0 <= row[sel]["normal_30"] <= 100.0
        assert 0.0 <= row["face_found_top10"] <= 1.0
    rand, oracle = rep["methods"]["pixelnn"]["rand1"], rep["methods"]["pixelnn"]["oracle"]
    assert oracle["face_found"] >= rand["face_found"]  # the oracle picks, per input, the best for each metric
    if rand["normal_mean"] is not None:
        assert oracle["normal_mean"] <= rand["normal_mean"] and oracle["normal_30"] >= rand["normal_30"]
    assert "normals: mean" in (out / "report.md").read_text()


def test_web_app_turns_an_uploaded_face_photo_into_its_normal_map(normals_run, tmp_path):
    import io

    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    from pixelnn import PixelNN
    from serve_support import FAST_GRID, decode, png, tiny_app

    _, _, run, _ = normals_run
    model = PixelNN.load(run)
    app, _, _ = tiny_app(model, face_photos(4, 64), tmp_path)
    client = app.test_client()

    def post(image: np.ndarray):
        fields = {"source": "upload", "kind": "photo", "grid": FAST_GRID}
        fields["image"] = FileStorage(io.BytesIO(png(image)), filename="me.png")
        boundary, body = encode_multipart(fields)
        return client.post("/api/synthesize", data=body, content_type=f"multipart/form-data; boundary={boundary}")

    face = face_photos(6, 64)[5]
    r = post(face)
    assert r.status_code == 200, r.json
    x = decode(client.get(r.json["input"]).data)
    assert np.array_equal(x, model.input_from_photo(face))  # the normal map made from the photo
    mask = decode(client.get(r.json["mask"]).data)[..., 0] == 255
    assert 0.03 < mask.mean() < 0.6 and (x[~mask] == 0).all()
    assert len(r.json["candidates"]) == 3
    r = post(fit_square(data.chelsea(), 64))
    assert r.status_code == 400 and "no face found" in r.json["error"], r.json
