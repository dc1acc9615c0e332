"""SAM refiners (segment_anything and transformers) on the tiny random-init models."""

from __future__ import annotations

import numpy as np
import pytest

from autolabel.errors import ModelError


def _image(h: int = 180, w: int = 260) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.full((h, w, 3), 230, np.uint8)
    img[40:120, 30:140] = rng.integers(0, 256, (80, 110, 3), dtype=np.uint8)
    img[20:170, 160:250] = (200, 30, 30)
    return img


def _proposals():
    from autolabel.types import Proposals

    return Proposals(
        xyxy=[[30, 40, 140, 120], [160, 20, 250, 170], [0, 0, 260, 180]],
        score=[0.9, 0.8, 0.3],
        phrase=["a", "b", "c"],
        data={"token_score": [0.5, 0.6, 0.7]},
    )


@pytest.fixture(scope="module", params=["sam", "hf-sam"])
def refiner(request, tiny_models):
    from autolabel.detect import build_refiner

    return build_refiner(request.param, model=str(tiny_models[request.param]), device="cpu")


def test_refine_outputs_masks_tight_boxes_and_signals(refiner):
    from autolabel.detect import Refiner

    assert isinstance(refiner, Refiner)
    img = _image()
    props = _proposals()
    out = refiner.refine(img, props)
    assert len(out) == 3 and out.mask.shape == (3, 180, 260) and out.mask.dtype == bool
    assert np.all(out.xyxy[:, [0, 2]] >= 0) and np.all(out.xyxy[:, [0, 2]] <= 260)
    assert np.all(out.xyxy[:, [1, 3]] >= 0) and np.all(out.xyxy[:, [1, 3]] <= 180)
    assert np.all(out.xyxy[:, 2] >= out.xyxy[:, 0]) and np.all(out.xyxy[:, 3] >= out.xyxy[:, 1])
    for m, b, before in zip(out.mask, out.xyxy, props.xyxy, strict=True):
        if m.any():  # the tight box holds every mask pixel and touches it on each side
            ys, xs = np.nonzero(m)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == tuple(b.astype(int))
        else:
            np.testing.assert_array_equal(b, before)
    np.testing.assert_array_equal(out.data["box_before_refine"], props.xyxy)
    np.testing.assert_array_equal(out.score, props.score)
    assert list(out.phrase) == ["a", "b", "c"]
    np.testing.assert_array_equal(out.data["token_score"], props.data["token_score"])
    assert np.all((out.data["sam_stability"] >= 0) & (out.data["sam_stability"] <= 1))
    assert np.all(np.isfinite(out.data["sam_iou"]))
    assert len(refiner.model_version) == 16


def test_batched_boxes_equal_one_by_one(refiner):
    img = _image()
    props = _proposals()
    together = refiner.refine(img, props)
    for i in range(len(props)):
        alone = refiner.refine(img, props[i])
        assert (alone.mask[0] != together.mask[i]).mean() < 1e-3
        np.testing.assert_allclose(
            alone.data["sam_iou"], together.data["sam_iou"][i : i + 1], atol=1e-4
        )


def test_empty_proposals(refiner):
    from autolabel.types import Proposals

    out = refiner.refine(_image(), Proposals.empty())
    assert len(out) == 0 and out.mask.shape == (0, 180, 260)


def test_segment_anything_dims_are_read_from_the_state_dict(tiny_models):
    import torch

    from autolabel.detect.sam import _arch_name, sam_dims_from_state_dict
    from autolabel.detect.tiny import tiny_sam_dims

    sd = torch.load(tiny_models["sam"], map_location="cpu", weights_only=True)
    dims = sam_dims_from_state_dict(sd)
    for k, v in tiny_sam_dims().items():
        assert dims[k] == v, k
    assert dims["global_attn_indexes"] == (1,)
    assert _arch_name(dims).startswith("custom")
    vit_b = {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn_indexes": (2, 5, 8, 11)}
    assert _arch_name(vit_b) == "vit_b"


def test_tight_boxes_and_stability_are_pure_functions():
    from autolabel.detect.sam import stability_scores, tight_boxes

    m = np.zeros((2, 10, 12), bool)
    m[0, 2:5, 3:9] = True
    out = tight_boxes(m, np.array([[0, 0, 1, 1], [1, 2, 3, 4]], np.float32))
    assert out.tolist() == [[3, 2, 9, 5], [1, 2, 3, 4]]
    logits = np.zeros((2, 4, 4), np.float32)
    logits[0] = 5.0  # confidently inside everywhere -> stable
    logits[1, :2] = 0.5  # barely above 0 -> thresholds at -1/+1 disagree
    s = stability_scores(logits)
    assert s[0] == 1.0 and s[1] == 0.0


def test_refiner_errors(tmp_path, tiny_models):
    from autolabel.detect import build_refiner

    with pytest.raises(ModelError, match="not found"):
        build_refiner("sam", model=str(tmp_path / "missing.pth"))
    with pytest.raises(ModelError, match="not a segment_anything SAM checkpoint"):
        build_refiner("sam", model=str(tiny_models["grounding-dino-original"]))
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read"):
        build_refiner("sam", model=str(bad))
    with pytest.raises(ModelError, match="mismatched checkpoint"):
        build_refiner("hf-sam", model=str(tiny_models["grounding-dino"]))
    with pytest.raises(ModelError, match="unknown refiner"):
        build_refiner("sam2")
