"""bridge.imaging.score on a tiny random open_clip model: scores equal a direct open_clip computation, caching, batching,
the combination formula and config validation."""

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
Image = pytest.importorskip("PIL.Image")

from bridge.imaging.score import AestheticHead, CombinedScorer, ScoreBreakdown, ScoreConfig, Scorer

TEXTS = ["a photo of a cat", "a castle on a hill, by greg rutkowski, 8k", "a photo of a cat", "bond"]


def tiny_parts(seed: int = 0):
    from bridge.testing import tiny_open_clip

    return tiny_open_clip(seed=seed)


@pytest.fixture(scope="module")
def parts():
    return tiny_parts()


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(1)
    out = []
    for _ in range(len(TEXTS)):
        pixels = (torch.rand(40, 48, 3, generator=gen) * 255).to(torch.uint8).numpy()
        out.append(Image.fromarray(pixels))
    return out


def direct_features(model, preprocess, tokenizer, texts, images):
    """The reference: encode, normalise, as open_clip's README does."""
    with torch.no_grad():
        text = model.encode_text(tokenizer(texts)).float()
        image = model.encode_image(torch.stack([preprocess(im) for im in images])).float()
    return text / text.norm(dim=-1, keepdim=True), image / image.norm(dim=-1, keepdim=True)


def test_text_image_equals_direct_open_clip(parts, images):
    model, preprocess, tokenizer = parts
    scorer = Scorer(model, preprocess, tokenizer, device="cpu", batch_size=3)
    got = scorer.text_image(TEXTS, images)
    text, image = direct_features(model, preprocess, tokenizer, TEXTS, images)
    want = [float(text[i] @ image[i]) for i in range(len(TEXTS))]
    assert got == pytest.approx(want, abs=1e-5)
    assert len({round(v, 6) for v in got}) > 1  # random features: a constant would mean the test checks nothing


def test_image_image_equals_direct_open_clip(parts, images):
    model, preprocess, tokenizer = parts
    scorer = Scorer(model, preprocess, tokenizer, device="cpu", batch_size=2)
    other = images[1:] + images[:1]
    got = scorer.image_image(images, other)
    _, a = direct_features(model, preprocess, tokenizer, TEXTS[:1], images)
    _, b = direct_features(model, preprocess, tokenizer, TEXTS[:1], other)
    assert got == pytest.approx([float(a[i] @ b[i]) for i in range(len(images))], abs=1e-5)
    assert scorer.image_image(images[:1], images[:1]) == pytest.approx([1.0], abs=1e-5)


def test_text_features_are_encoded_once_per_distinct_text(images):
    model, preprocess, tokenizer = tiny_parts()
    encoded: list[int] = []
    original = model.encode_text

    def counting_encode_text(tokens, *args, **kwargs):
        encoded.append(tokens.shape[0])
        return original(tokens, *args, **kwargs)

    model.encode_text = counting_encode_text
    scorer = Scorer(model, preprocess, tokenizer, device="cpu", batch_size=2)
    first = scorer.text_image(TEXTS, images)
    second = scorer.text_image(TEXTS[::-1], images[::-1])
    assert sum(encoded) == len(set(TEXTS))  # 3 distinct texts, encoded once in all
    assert encoded == [2, 1]  # in batches of batch_size
    assert second == pytest.approx(first[::-1], abs=1e-6)


def test_scores_do_not_depend_on_batch_size(parts, images):
    results = []
    for batch_size in (1, 3, 64):
        scorer = Scorer(*parts, device="cpu", batch_size=batch_size)
        results.append((scorer.text_image(TEXTS, images), scorer.image_image(images, images[::-1])))
    for text_image, image_image in results[1:]:
        assert text_image == pytest.approx(results[0][0], abs=1e-5)
        assert image_image == pytest.approx(results[0][1], abs=1e-5)


def test_scorer_rejects_mismatched_lengths(parts, images):
    scorer = Scorer(*parts, device="cpu")
    with pytest.raises(ValueError, match="same length but have 2 and 1"):
        scorer.text_image(TEXTS[:2], images[:1])
    assert scorer.text_image([], []) == []


def test_from_pretrained_reads_a_local_checkpoint(tmp_path, parts, images):
    from bridge.testing import TINY_OPEN_CLIP_NAME

    model, preprocess, tokenizer = tiny_parts(seed=3)  # registers the tiny config with open_clip
    checkpoint = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    loaded = Scorer.from_pretrained(TINY_OPEN_CLIP_NAME, checkpoint, device="cpu")
    in_memory = Scorer(model, preprocess, tokenizer, device="cpu")
    other_seed = Scorer(*parts, device="cpu")
    assert loaded.text_image(TEXTS, images) == pytest.approx(in_memory.text_image(TEXTS, images), abs=1e-6)
    assert loaded.text_image(TEXTS, images) != pytest.approx(other_seed.text_image(TEXTS, images), abs=1e-3)
    with pytest.raises(ValueError, match="unknown open_clip model 'ViT-Nope'"):
        Scorer.from_pretrained("ViT-Nope")


# ---- the combination


def test_combined_score_is_the_weighted_mean_of_present_signals(parts, images):
    scorer = Scorer(*parts, device="cpu")
    raw_text = scorer.text_image(TEXTS, images)
    sd1 = images[::-1]
    raw_image = scorer.image_image(images, sd1)

    config = ScoreConfig(model="tiny", pretrained=None, source_text_image_weight=2.0, sd1_image_weight=1.0)
    combined = CombinedScorer(config, scorers={"clip": scorer})
    with_sd1 = combined.score(TEXTS, images, sd1_images=sd1)
    for got, t, i in zip(with_sd1, raw_text, raw_image):
        assert isinstance(got, ScoreBreakdown)
        assert got.source_text_image == pytest.approx(t, abs=1e-6)
        assert got.sd1_image == pytest.approx(i, abs=1e-6)
        assert got.aesthetic is None
        assert got.total == pytest.approx((2 * t + i) / 3, abs=1e-6)

    without_sd1 = combined.score(TEXTS, images)  # the optional signal drops out; the scale stays that of a similarity
    assert [b.total for b in without_sd1] == pytest.approx(raw_text, abs=1e-6)
    assert all(b.sd1_image is None for b in without_sd1)

    only_images = CombinedScorer(config.replace(source_text_image_weight=0.0), scorers={"clip": scorer})
    assert [b.total for b in only_images.score(TEXTS, images, sd1)] == pytest.approx(raw_image, abs=1e-6)
    assert only_images.score(TEXTS, images, sd1)[0].source_text_image is None
    with pytest.raises(ValueError, match="no signal to combine"):
        only_images.score(TEXTS, images)


def test_aesthetic_head_from_a_state_dict(tmp_path, parts, images):
    scorer = Scorer(*parts, device="cpu")
    width = scorer.encode_images(images[:1]).shape[1]
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(width, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    path = tmp_path / "aesthetic.pth"
    torch.save(mlp.state_dict(), path)

    config = ScoreConfig(model="tiny", pretrained=None, aesthetic_weight=0.5, aesthetic_head=str(path),
                         aesthetic_model="tiny", aesthetic_pretrained=None)
    combined = CombinedScorer(config, scorers={"clip": scorer})
    got = combined.score(TEXTS, images)
    with torch.no_grad():
        want = mlp.eval()(scorer.encode_images(images))[:, 0].tolist()
    text = scorer.text_image(TEXTS, images)
    assert [b.aesthetic for b in got] == pytest.approx(want, abs=1e-5)
    assert [b.total for b in got] == pytest.approx([(t + 0.5 * a) / 1.5 for t, a in zip(text, want)], abs=1e-5)

    with pytest.raises(ValueError, match=r"expects 3-d image embeddings"):
        AestheticHead([(torch.ones(1, 3), None)])(torch.ones(2, width))
    with pytest.raises(FileNotFoundError, match="aesthetic head not found"):
        AestheticHead.from_file(tmp_path / "missing.pth")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"source_text_image_weight": -1.0}, r"source_text_image_weight has to be a finite number >= 0 but is -1.0"),
        ({"sd1_image_weight": float("nan")}, r"ScoreConfig.sd1_image_weight .* but is nan"),
        ({"aesthetic_weight": "high"}, r"ScoreConfig.aesthetic_weight .* but is 'high'"),
        ({"aesthetic_weight": 0.1}, r"aesthetic_weight is 0.1 but no `aesthetic_head`"),
        ({"source_text_image_weight": 0, "sd1_image_weight": 0}, r"at least one weight above 0"),
        ({"model": ""}, r"ScoreConfig.model has to name an open_clip model"),
        ({"precision": "fp8"}, r"precision must be one of fp32, fp16, bf16 but is 'fp8'"),
        ({"batch_size": 0}, r"batch_size has to be an integer >= 1 but is 0"),
    ],
)
def test_bad_config_values_give_one_line_errors(changes, message):
    with pytest.raises(ValueError, match=message) as info:
        ScoreConfig(**changes)
    assert "\n" not in str(info.value)


def test_config_defaults_name_the_real_models_and_round_trip():
    data = ScoreConfig()
    assert (data.model, data.pretrained) == ("ViT-L-14", "openai")
    evaluation = ScoreConfig.evaluation()
    assert (evaluation.model, evaluation.pretrained) == ("ViT-bigG-14", "laion2b_s39b_b160k")
    assert ScoreConfig.from_dict(evaluation.to_dict()) == evaluation
    with pytest.raises(ValueError, match="unknown ScoreConfig key 'weight'"):
        ScoreConfig.from_dict({"weight": 1})
    with pytest.raises(ValueError, match="unknown scorer role 'main'"):
        CombinedScorer(data, scorers={"main": None})


def test_importing_bridge_score_does_not_import_torch():
    code = "import sys, bridge.imaging.score; print(sorted(m for m in ('torch', 'open_clip', 'PIL') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
