"""Export geometry (pure) and the crop worker (EXIF orientation, JPEG draft, hash checks)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from autolabel.errors import InputError
from autolabel.export.crops import CropJob, ImageTask, run_task, run_tasks
from autolabel.export.geometry import (
    ORIENTATION_OP,
    corrected_to_raw,
    draft_factor,
    expand_box,
    from_norm1000,
    from_yolo,
    resize_plan,
    to_norm1000,
    to_yolo,
    transform_box,
)
from autolabel.imageio import open_image

OPS = [op for op in ORIENTATION_OP.values() if op is not None]


def _marked(w: int, h: int, box: tuple[int, int, int, int]) -> np.ndarray:
    img = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = 255
    return img


@pytest.mark.parametrize("op", OPS)
def test_transform_box_matches_pil_transpose(op):
    w, h, box = 40, 30, (3, 5, 17, 11)
    out = np.asarray(Image.fromarray(_marked(w, h, box)).transpose(getattr(Image.Transpose, op)))
    ys, xs = np.nonzero(out)
    got = transform_box(box, op, w, h)
    assert got == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_corrected_to_raw_inverts_the_exif_transpose(orientation):
    raw_w, raw_h = 50, 36
    raw_box = (4, 7, 21, 15)
    op = ORIENTATION_OP[orientation]
    raw = Image.fromarray(_marked(raw_w, raw_h, raw_box))
    corrected = raw if op is None else raw.transpose(getattr(Image.Transpose, op))
    ys, xs = np.nonzero(np.asarray(corrected))
    cbox = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert corrected_to_raw(cbox, orientation, *corrected.size) == raw_box


@pytest.mark.parametrize(
    "w, h, mode, out, canvas, error",
    [
        (200, 100, "fit", (448, 224), (448, 224), None),
        (100, 200, "pad", (224, 448), (448, 448), None),
        (200, 100, "short-side", (896, 448), (896, 448), None),
        (448, 448, "fit", (448, 448), (448, 448), None),
        (10, 10, "stretch", None, None, InputError),
        (0, 10, "fit", None, None, InputError),
    ],
)
def test_resize_plan(w, h, mode, out, canvas, error):
    if error is not None:
        with pytest.raises(error):
            resize_plan(w, h, 448, mode)
        return
    plan = resize_plan(w, h, 448, mode)
    assert plan.out_size == out
    assert plan.canvas == canvas
    if mode == "pad":
        assert plan.offset == ((448 - out[0]) // 2, (448 - out[1]) // 2)


def test_expand_box_adds_percent_margin_and_clips():
    assert expand_box((10, 10, 30, 50), 10, 100, 100) == pytest.approx((8, 6, 32, 54))
    assert expand_box((0, 0, 50, 50), 50, 60, 60) == (0, 0, 60, 60)
    with pytest.raises(InputError):
        expand_box((0, 0, 1, 1), -1, 10, 10)


def test_normalised_coordinates_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(200):
        w, h = int(rng.integers(50, 4000)), int(rng.integers(50, 4000))
        x0, x1 = sorted(rng.uniform(0, w, 2))
        y0, y1 = sorted(rng.uniform(0, h, 2))
        box = (x0, y0, x1, y1)
        q = to_norm1000(box, w, h)
        assert all(isinstance(v, int) and 0 <= v <= 1000 for v in q)
        back = from_norm1000(q, w, h)
        assert np.abs(np.array(back) / [w, h, w, h] - np.array(box) / [w, h, w, h]).max() <= 5e-4
        yb = from_yolo(to_yolo(box, w, h), w, h)
        assert yb == pytest.approx(box, abs=1e-6)


def test_draft_factor_never_decodes_below_output_size():
    assert draft_factor(1000, 1000, 448, 448) == 2
    assert draft_factor(4000, 3000, 448, 336) == 8
    assert draft_factor(400, 400, 448, 448) == 1
    assert draft_factor(1800, 900, 448, 224) == 4


# -- crop worker ------------------------------------------------------------------------------
def _photo(w: int, h: int) -> np.ndarray:
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((w, h), Image.Resampling.BILINEAR))


def _save_oriented(path, corrected: np.ndarray, orientation: int) -> None:
    """Store ``corrected`` so that applying the EXIF ``orientation`` gives it back."""
    op = ORIENTATION_OP[orientation]
    inverse = {"ROTATE_90": "ROTATE_270", "ROTATE_270": "ROTATE_90"}.get(op, op)
    im = Image.fromarray(corrected)
    raw = im if inverse is None else im.transpose(getattr(Image.Transpose, inverse))
    exif = Image.Exif()
    exif[0x0112] = orientation
    raw.save(path, quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_crops_of_exif_rotated_jpegs_match_the_corrected_image(tmp_path, orientation):
    corrected = _photo(720, 540)
    src = tmp_path / f"o{orientation}.jpg"
    _save_oriented(src, corrected, orientation)
    ref_img = open_image(src)
    assert ref_img.size == (720, 540)
    jobs, refs = [], []
    # a large region (JPEG draft 2x path) and a small one (full decode)
    for k, region in enumerate([(40.5, 20.25, 700.0, 520.0), (300.0, 100.0, 420.0, 260.0)]):
        plan = resize_plan(region[2] - region[0], region[3] - region[1], 224, "pad")
        jobs.append(
            CropJob(str(tmp_path / f"c{k}.png"), region, plan.out_size, plan.canvas, plan.offset)
        )
        resized = ref_img.resize(plan.out_size, Image.Resampling.LANCZOS, box=region)
        canvas = Image.new("RGB", plan.canvas, (128, 128, 128))
        canvas.paste(resized, plan.offset)
        refs.append(np.asarray(canvas, np.float32))
    res = run_task(ImageTask(str(src), 720, 540, tuple(jobs)))
    assert res.error is None and res.written == 2
    for job, ref in zip(jobs, refs, strict=True):
        got = np.asarray(Image.open(job.out_path), np.float32)
        assert got.shape == ref.shape == (224, 224, 3)
        assert np.abs(got - ref).mean() < 3.0
        # the same crop from the un-rotated pixels would be far off
        wrong = np.asarray(
            Image.fromarray(corrected[::-1, ::-1]).resize(
                job.out_size, Image.Resampling.LANCZOS, box=job.region
            ),
            np.float32,
        )
        x, y = job.offset
        inner = got[y : y + job.out_size[1], x : x + job.out_size[0]]
        assert np.abs(inner - wrong).mean() > 10 * np.abs(got - ref).mean()


def test_draft_is_used_for_big_downscales_and_png_sources_work(tmp_path):
    big = tmp_path / "big.jpg"
    Image.fromarray(_photo(1920, 1080)).save(big, quality=90)
    png = tmp_path / "p.png"
    Image.fromarray(_photo(300, 200)).save(png)
    plan = resize_plan(1800, 1000, 448, "fit")  # 4x smaller -> draft 4
    job = CropJob(str(tmp_path / "b.png"), (60, 40, 1860, 1040), plan.out_size, plan.canvas, (0, 0))
    plan2 = resize_plan(250, 150, 224, "fit")
    job2 = CropJob(
        str(tmp_path / "q.png"), (20, 20, 270, 170), plan2.out_size, plan2.canvas, (0, 0)
    )
    tasks = [ImageTask(str(big), 1920, 1080, (job,)), ImageTask(str(png), 300, 200, (job2,))]
    r1, r2 = run_tasks(tasks, workers=2)
    assert r1.error is None and r1.draft == 4
    assert r2.error is None and r2.draft == 1
    assert Image.open(job.out_path).size == plan.out_size
    ref = open_image(big).resize(plan.out_size, Image.Resampling.LANCZOS, box=job.region)
    got = np.asarray(Image.open(job.out_path), np.float32)
    assert np.abs(got - np.asarray(ref, np.float32)).mean() < 4.0


def test_changed_missing_and_resized_originals_are_reported_not_cropped(tmp_path):
    src = tmp_path / "a.jpg"
    Image.fromarray(_photo(200, 100)).save(src)
    plan = resize_plan(100, 50, 64, "fit")
    job = CropJob(str(tmp_path / "c.png"), (0, 0, 100, 50), plan.out_size, plan.canvas, (0, 0))
    changed = run_task(ImageTask(str(src), 200, 100, (job,), expected_sha256="0" * 64))
    assert changed.error.startswith("changed")
    partial = run_task(ImageTask(str(src), 200, 100, (job,), expected_sha256="head4:abc"))
    assert partial.error is None  # partial hashes are not comparable, so not compared
    resized = run_task(ImageTask(str(src), 100, 200, (job,)))
    assert resized.error.startswith("size-changed")
    missing = run_task(ImageTask(str(tmp_path / "nope.jpg"), 200, 100, (job,)))
    assert missing.error.startswith("not-found") and missing.sha256 is None
