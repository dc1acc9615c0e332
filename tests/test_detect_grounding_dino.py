"""Grounding DINO backend on the tiny random-init model (offline)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from autolabel.errors import InputError, ModelError, ShapeError

BOX_T = 0.6


def _images(n: int, hw: tuple[int, int] = (200, 300), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        y, x = rng.integers(0, hw[0] // 2), rng.integers(0, hw[1] // 2)
        img[y : y + hw[0] // 3, x : x + hw[1] // 3] = rng.integers(0, 256, 3, dtype=np.uint8)
        out.append(img)
    return out


@pytest.fixture(scope="module")
def detector(tiny_models):
    from autolabel.detect import build_detector

    return build_detector(
        "grounding-dino",
        model=str(tiny_models["grounding-dino"]),
        box_threshold=BOX_T,
        text_threshold=0.25,
        device="cpu",
    )


def _assert_same(a, b, tol=1e-4):
    assert len(a) == len(b)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=tol)
    np.testing.assert_allclose(a.score, b.score, atol=tol)
    assert list(a.phrase) == list(b.phrase)
    assert set(a.data) == set(b.data)
    for k in a.data:
        np.testing.assert_allclose(a.data[k], b.data[k], atol=tol, err_msg=k)


def test_protocol_attributes(detector):
    from autolabel.detect import Detector

    assert isinstance(detector, Detector)
    assert detector.name == "grounding-dino"
    assert detector.box_threshold == BOX_T and detector.text_threshold == 0.25
    assert len(detector.model_version) == 16


def test_batched_equals_single_image(detector):
    imgs = _images(3) + _images(1, (260, 180), seed=5)
    prompts = ["red sneaker. bag", "dog", "cat. person. shoe", "red sneaker. bag."]
    batched = detector.detect(imgs, prompts)
    assert sum(len(p) for p in batched) > 0
    for img, prompt, got in zip(imgs, prompts, batched, strict=True):
        _assert_same(got, detector.detect([img], [prompt])[0])


def _assert_all_same(a, b, tol=1e-4):
    """Pairwise equal AND not trivially so: two empty outputs would prove nothing."""
    assert sum(len(x) for x in a) > 0, "no boxes to compare: lower the threshold"
    for x, y in zip(a, b, strict=True):
        _assert_same(x, y, tol=tol)


def test_deterministic(tiny_models):
    from autolabel.detect import build_detector

    det = build_detector(
        "grounding-dino", model=str(tiny_models["grounding-dino"]), box_threshold=0.0, device="cpu"
    )
    imgs = _images(2, seed=3)
    a = det.detect(imgs, ["dog. cat"] * 2)
    b = det.detect(imgs, ["dog. cat"] * 2)
    _assert_all_same(a, b, tol=0)


def test_equals_transformers_post_processing(detector, tiny_models):
    import torch
    from transformers import AutoProcessor, GroundingDinoForObjectDetection

    path = tiny_models["grounding-dino"]
    model = GroundingDinoForObjectDetection.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    img = _images(1, (180, 240), seed=7)[0]
    text = "red sneaker. bag."
    inputs = processor(images=img, text=text, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    ref = processor.post_process_grounded_object_detection(
        out, inputs["input_ids"], threshold=BOX_T, text_threshold=0.25, target_sizes=[(180, 240)]
    )[0]
    got = detector.detect([img], ["Red Sneaker. bag"])[0]
    boxes = ref["boxes"].numpy().copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, 240)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, 180)
    assert len(got) == len(ref["scores"]) > 0
    np.testing.assert_allclose(got.xyxy, boxes, atol=1e-3)
    np.testing.assert_allclose(got.score, ref["scores"].numpy(), atol=1e-5)
    # where transformers' label (tokens above a text threshold) is exactly one phrase, ours is
    # that phrase
    checked = 0
    for tt in (0.5, 0.6, 0.7, 0.8):
        labels = processor.post_process_grounded_object_detection(
            out, inputs["input_ids"], threshold=BOX_T, text_threshold=tt, target_sizes=[(180, 240)]
        )[0]["text_labels"]
        for ours, theirs in zip(got.phrase, labels, strict=True):
            theirs = theirs.replace(".", " ").strip()
            if theirs in ("red sneaker", "bag"):
                assert ours == theirs
                checked += 1
    assert checked > 0
    # signals, recomputed by brute force from the raw outputs
    probs = torch.sigmoid(out.logits[0]).numpy()
    ids = inputs["input_ids"][0].tolist()
    bag_cols = [
        i for i, t in enumerate(ids) if t == processor.tokenizer.convert_tokens_to_ids("bag")
    ]
    is_bag = got.phrase == "bag"
    keep = probs.max(1) > BOX_T
    np.testing.assert_allclose(
        got.data["token_score"][is_bag], probs[keep][is_bag][:, bag_cols].max(1), atol=1e-5
    )
    assert np.all(got.data["second_score"] <= 1.0) and np.all(got.data["n_competing"] >= 0)
    assert np.all((got.data["text_ok"] == 1) == (got.data["token_score"] > 0.25))


def test_equals_zero_shot_pipeline(detector, tiny_models):
    from PIL import Image
    from transformers import pipeline

    path = str(tiny_models["grounding-dino"])
    pipe = pipeline("zero-shot-object-detection", model=path, device="cpu")
    img = _images(1, (160, 220), seed=11)[0]
    # the pipeline runs one forward per candidate label with the label text as given, so it
    # matches a one-phrase prompt (whose text is "dog.")
    ref = pipe(Image.fromarray(img), candidate_labels=["dog."], threshold=BOX_T)
    got = detector.detect([img], ["dog"])[0]
    assert len(ref) == len(got) > 0
    ref_scores = np.sort([r["score"] for r in ref])[::-1]
    np.testing.assert_allclose(np.sort(got.score)[::-1], ref_scores, atol=1e-5)
    for r in ref:  # the pipeline rounds boxes to whole pixels
        b = r["box"]
        d = np.abs(got.xyxy - [b["xmin"], b["ymin"], b["xmax"], b["ymax"]]).max(1)
        assert d.min() <= 1.0


def test_long_prompt_is_chunked_and_merged(detector):
    from autolabel.detect.grounding_dino import normalize_phrases

    words = ["red", "blue", "green", "white", "black", "yellow", "pink", "gray"]
    things = ["shoe", "bag", "cup", "hat", "dog", "cat", "box", "toy", "car", "lamp"]
    phrases = [f"{a} {b} {c}" for a in words for b in words[:4] for c in things][:120]
    prompt = ". ".join(phrases)
    chunks = detector.plan([prompt])[0]
    assert len(chunks) >= 2, "120 three-word phrases exceed 256 tokens"
    assert [p for c in chunks for p in c] == normalize_phrases(prompt)
    for c in chunks:
        n = len(detector.tokenizer(". ".join(c) + ".")["input_ids"])
        assert n <= 256
    img = _images(1, seed=2)[0]
    merged = detector.detect([img], [prompt])[0]
    parts = [detector.detect([img], [". ".join(c)])[0] for c in chunks]
    assert len(merged) == sum(len(p) for p in parts) > 0
    from autolabel.types import Proposals

    _assert_same(merged, Proposals.merge(parts))
    assert set(merged.phrase) <= set(phrases)
    assert {p for c in chunks[1:] for p in c} & set(merged.phrase), "later chunks contribute"


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("Red Sneaker. handbag.", ["red sneaker", "handbag"]),
        ("dog .cat. dog", ["dog", "cat"]),
        ("  a   photo \n of a cat;", ["a photo", "of a cat"]),
        (["Dog", "CAT."], ["dog", "cat"]),
    ],
)
def test_normalize_phrases(prompt, expected):
    from autolabel.detect.grounding_dino import normalize_phrases, prompt_text

    assert normalize_phrases(prompt) == expected
    assert prompt_text(expected).endswith(".")


def test_phrase_too_long_for_the_text_encoder(detector):
    with pytest.raises(InputError, match="too long"):
        detector.plan([" ".join(["red"] * 300)])


@pytest.mark.parametrize(
    ("images", "prompts", "error"),
    [
        ([np.zeros((10, 10), np.uint8)], ["dog"], ShapeError),
        ([np.zeros((10, 10, 3), np.float32)], ["dog"], ShapeError),
        ([np.zeros((10, 10, 3), np.uint8)], ["dog", "cat"], ShapeError),
        ([np.zeros((10, 10, 3), np.uint8)], [" . "], InputError),
    ],
)
def test_bad_inputs(detector, images, prompts, error):
    with pytest.raises(error):
        detector.detect(images, prompts)


def test_threshold_filters_boxes(tiny_models):
    from autolabel.detect import build_detector

    img = _images(1, seed=4)
    lo = build_detector(
        "grounding-dino", model=str(tiny_models["grounding-dino"]), box_threshold=0.0
    )
    hi = build_detector(
        "grounding-dino", model=str(tiny_models["grounding-dino"]), box_threshold=0.7
    )
    a, b = lo.detect(img, ["dog"])[0], hi.detect(img, ["dog"])[0]
    assert len(a) == 20  # every query of the tiny model
    assert len(b) == int((a.score > 0.7).sum()) < 20


def test_model_errors(tmp_path, tiny_models):
    from autolabel.detect import build_detector

    with pytest.raises(ModelError, match="does not exist"):
        build_detector("grounding-dino", model=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a transformers model folder"):
        build_detector("grounding-dino", model=str(tmp_path / "empty"))
    with pytest.raises(ModelError, match=r"mismatched checkpoint.*'sam'"):
        build_detector("grounding-dino", model=str(tiny_models["hf-sam"]))
    with pytest.raises(ModelError, match=r"not available offline.*models pull"):
        build_detector("grounding-dino", model="nobody-here/not-a-model")
    with pytest.raises(ModelError, match="unknown detector"):
        build_detector("yolo")
    with pytest.raises(ModelError, match="float16 needs a GPU"):
        build_detector(
            "grounding-dino",
            model=str(tiny_models["grounding-dino"]),
            dtype="float16",
            device="cpu",
        )


def test_model_version_tracks_weights(tmp_path, tiny_models):
    from autolabel.detect import model_version_of

    src = Path(tiny_models["grounding-dino"])
    copy = tmp_path / "gd"
    shutil.copytree(src, copy)
    assert model_version_of(copy) == model_version_of(src)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["num_queries"] = 21
    (copy / "config.json").write_text(json.dumps(cfg))
    assert model_version_of(copy) != model_version_of(src)
    assert model_version_of("IDEA-Research/grounding-dino-tiny", "abc") == (
        "IDEA-Research/grounding-dino-tiny@abc"
    )


def test_from_model_wraps_a_built_model(tiny_models):
    from transformers import AutoProcessor, GroundingDinoForObjectDetection

    from autolabel.detect import build_detector
    from autolabel.detect.grounding_dino import GroundingDinoDetector

    path = tiny_models["grounding-dino"]
    wrapped = GroundingDinoDetector.from_model(
        GroundingDinoForObjectDetection.from_pretrained(path),
        AutoProcessor.from_pretrained(path),
        box_threshold=0.0,  # every query: the comparison cannot pass on two empty outputs
    )
    built = build_detector("grounding-dino", model=str(path), box_threshold=0.0, device="cpu")
    img = _images(2, seed=9)
    _assert_all_same(wrapped.detect(img, ["shoe. bag"] * 2), built.detect(img, ["shoe. bag"] * 2))
