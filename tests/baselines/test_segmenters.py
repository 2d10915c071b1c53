"""The dense-CLIP segmenter's sliding window and SimSeg's two stages on the tiny preset."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ebseg_lite.baselines import METHODS, build_method
from ebseg_lite.baselines.dense_segmenter import DenseClipSegmenter
from ebseg_lite.baselines.dense_clip import dense_features, patch_logits
from ebseg_lite.baselines.simseg import crop_embeddings, crop_probs, masked_crops
from ebseg_lite.baselines.simseg_pipeline import SimSeg

NAMES = ["cat", "dog", "sky"]


def test_sliding_window_averages_overlapping_windows(tiny_model):
    seg = DenseClipSegmenter.from_ebseg(tiny_model, "sclip")  # tiny CLIP input 64: short side 96, 64 every 32
    assert (seg.short_side, seg.window, seg.stride, seg.logit_scale) == (96, 64, 32, 40.0)
    img = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    pred = seg.predict(img, NAMES)
    windows = pred.encoded.windows
    assert windows == [(0, 64, 0, 64), (0, 64, 32, 96), (0, 64, 64, 128), (32, 96, 0, 64), (32, 96, 32, 96),
                       (32, 96, 64, 128)]
    x = ((img.float() - seg.mean) / seg.std)[None]
    text = tiny_model.text_embeddings(NAMES)

    def window_scores(b):  # the window alone through CLIP, cosines resized to the window
        out = dense_features(tiny_model.model.clip.visual, x[:, :, b[0]:b[1], b[2]:b[3]], "sclip")
        return F.interpolate(patch_logits(out, text, "sclip"), size=(64, 64), mode="bilinear")[0]

    win = {b: window_scores(b) for b in windows}
    # pixel (40, 40) lies in the four windows starting at y in {0, 32} and x in {0, 32}
    at = [win[b][:, 40 - b[0], 40 - b[2]] for b in windows if b[0] <= 40 < b[1] and b[2] <= 40 < b[3]]
    assert len(at) == 4
    torch.testing.assert_close(pred.logits[:, 40, 40], torch.stack(at).mean(0))
    torch.testing.assert_close(pred.logits[:, 5, 5], win[(0, 64, 0, 64)][:, 5, 5])  # one window only
    torch.testing.assert_close(pred.probs, (40.0 * pred.logits).softmax(0))
    assert pred.labels.equal(pred.logits.argmax(0))  # already at the original size
    whole = DenseClipSegmenter.from_ebseg(tiny_model, "sclip", sliding=False).predict(img, NAMES)
    assert whole.encoded.windows == [(0, 96, 0, 128)] and not torch.allclose(whole.logits, pred.logits)


def test_dense_segmenter_resizes_and_returns_original_size(tiny_model):
    seg = DenseClipSegmenter.from_ebseg(tiny_model, "naclip")
    pred = seg.predict(torch.zeros(3, 50, 70, dtype=torch.uint8), NAMES, seen=[True, False, True])
    assert pred.encoded.input_size == (96, 134) and pred.labels.shape == (50, 70)
    assert pred.seen.tolist() == [True, False, True] and pred.encoded.attention.shape == (4, 65, 65)
    assert len(pred.encoded.windows) == 8  # 96 x 134: rows at 0, 32; columns at 0, 32, 64, 70
    again = seg.classify(pred.encoded, ["sky", "cat"])  # a new vocabulary, no CLIP run
    torch.testing.assert_close(again.logits, pred.logits[[2, 0]])
    assert seg.logit_scale == 40.0
    assert DenseClipSegmenter.from_ebseg(tiny_model, "surgery").logit_scale == pytest.approx(
        float(tiny_model.model.clip.logit_scale.exp()))
    with pytest.raises(ValueError, match="unknown dense-CLIP method"):
        DenseClipSegmenter.from_ebseg(tiny_model, "gem")


def test_simseg_at_w1_with_every_class_seen_is_ebsegs_a_classifier(tiny_model, rgb_image):
    seen = [True, True, True]
    pred = SimSeg(tiny_model, w=1.0).predict(rgb_image, NAMES, seen=seen)
    enc = tiny_model.encode(rgb_image, keep_intermediates=False)
    ref = tiny_model.classify(enc, NAMES, seen=seen, w_seen=(1, 0, 0), w_new=(1, 0, 0))
    assert pred.labels.equal(ref.labels)
    torch.testing.assert_close(pred.p_trained, ref.probs["A"])


def test_simseg_crop_scores_are_clip_on_zsseg_crops(tiny_model, rgb_image):
    seen = [True, False, True]
    pred = SimSeg(tiny_model, fill="zero").predict(rgb_image, NAMES, seen=seen)
    cfg = tiny_model.cfg.clip
    crops, valid, _ = masked_crops(rgb_image, pred.masks.sigmoid(), size=64, mean=cfg.mean, std=cfg.std, fill="zero")
    clip = tiny_model.model.clip
    want = crop_probs(crop_embeddings(clip.visual, crops), tiny_model.text_embeddings(NAMES), float(clip.logit_scale.exp()))
    assert pred.valid.equal(valid) and pred.crops.shape == crops.shape
    torch.testing.assert_close(pred.p_clip[valid], want)
    torch.testing.assert_close(pred.class_probs.sum(-1), 1 - tiny_model.classify(
        tiny_model.encode(rgb_image, keep_intermediates=False), NAMES, seen=seen).p_void, atol=1e-5, rtol=1e-4)
    raw = SimSeg(tiny_model, renormalize=False).predict(rgb_image, NAMES, seen=seen)
    assert not torch.allclose(raw.class_probs, pred.class_probs)


class TwoMasks:
    """Stands in for SamAutomaticMaskGenerator: the top-left and bottom-right quarters."""

    def generate(self, image: np.ndarray):
        h, w = image.shape[:2]
        a, b = np.zeros((h, w), bool), np.zeros((h, w), bool)
        a[: h // 2, : w // 2] = True
        b[h // 2:, w // 2:] = True
        return [{"segmentation": a}, {"segmentation": b}]


def test_simseg_sam_labels_each_mask_by_its_crop(tiny_model, rgb_image):
    pred = SimSeg(tiny_model, proposals="sam", mask_generator=TwoMasks()).predict(rgb_image, NAMES)
    assert pred.masks.shape == (3,) + tuple(rgb_image.shape[-2:]) and pred.p_trained is None
    best = pred.p_clip.argmax(-1)
    assert pred.labels[0, 0] == best[0] and pred.labels[-1, -1] == best[1] and pred.labels[0, -1] == best[2]
    with pytest.raises(ValueError, match="mask_generator"):
        SimSeg(tiny_model, proposals="sam")


def test_build_method_covers_every_method(tiny_model):
    assert METHODS == ("ebseg", "simseg", "simseg-sam", "maskclip", "sclip", "naclip", "clearclip", "surgery")
    assert build_method("ebseg", tiny_model) is tiny_model
    assert build_method("simseg", tiny_model).proposals == "ebseg"
    assert build_method("clearclip", tiny_model).method == "clearclip"
    assert build_method("simseg-sam", tiny_model, mask_generator=TwoMasks()).proposals == "sam"
    with pytest.raises(ValueError, match="simseg-sam needs"):
        build_method("simseg-sam", tiny_model)
    with pytest.raises(ValueError, match="unknown method"):
        build_method("pnp", tiny_model)


class Scenes:
    """Two random images with labels: enough for the evaluation loop."""
    class_names, ignore_value = NAMES, 255

    def __len__(self):
        return 2

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"image": torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8, generator=g),
                "label": torch.randint(0, 3, (64, 80), generator=g)}


@pytest.mark.parametrize("method", ["simseg", "clearclip"])
def test_the_evaluation_loop_runs_baselines_unchanged(tiny_model, method):
    from ebseg_lite.eval.loop import evaluate
    from ebseg_lite.eval.metrics import SemSegEvaluator
    seg = build_method(method, tiny_model)
    seen = [True, False, True]
    res = evaluate(seg, Scenes(), seen=seen, progress=False, balancing="official")
    ev = SemSegEvaluator(3, seen=seen)
    for item in (Scenes()[0], Scenes()[1]):
        ev.update(seg.predict(item["image"], NAMES, seen=seen).labels, item["label"])
    want = ev.compute()
    assert res["mIoU"] == pytest.approx(want["mIoU"]) and res["mIoU_new"] == pytest.approx(want["mIoU_new"])


def test_load_sam_reads_weights_only(tmp_path, monkeypatch):
    import segment_anything
    from ebseg_lite.baselines import load_sam
    from ebseg_lite.io.files import CheckpointError
    from ebseg_lite.toyworld.pretrain_sam import build_toy_sam
    monkeypatch.setitem(segment_anything.sam_model_registry, "toy", lambda checkpoint=None: build_toy_sam())
    torch.manual_seed(3)
    src = build_toy_sam()
    torch.save(src.state_dict(), tmp_path / "sam.pth")
    got = load_sam(str(tmp_path / "sam.pth"), "toy")
    w = "mask_decoder.iou_prediction_head.layers.0.weight"
    assert torch.equal(got.state_dict()[w], src.state_dict()[w]) and not got.training
    torch.save({"weights": src.state_dict(), "hook": print}, tmp_path / "code.pth")  # a pickled global
    with pytest.raises(CheckpointError):
        load_sam(str(tmp_path / "code.pth"), "toy")


def test_simseg_sam_with_segment_anythings_generator(tiny_model):
    """The real SamAutomaticMaskGenerator (a random toy SAM, filters off) feeds SimSeg's crops."""
    from segment_anything import SamAutomaticMaskGenerator
    from ebseg_lite.toyworld.pretrain_sam import build_toy_sam
    torch.manual_seed(0)
    gen = SamAutomaticMaskGenerator(build_toy_sam().eval(), points_per_side=4, pred_iou_thresh=-1e9,
                                    stability_score_thresh=-1e9, box_nms_thresh=1.0)
    img = torch.randint(0, 256, (3, 128, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    records = gen.generate(img.permute(1, 2, 0).numpy())
    pred = build_method("simseg-sam", tiny_model, mask_generator=gen).predict(img, NAMES)
    assert pred.masks.shape == (len(records) + 1, 128, 128) and len(records) > 0
    assert pred.labels.shape == (128, 128) and pred.valid.sum() >= 1
