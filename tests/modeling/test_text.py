"""Tests of text (pure stage functions) against small cases worked out by hand.

Expected numbers are written out in the tests (tiny tensors, Python arithmetic), never obtained by
calling the function under test another way. The CLIP-block tests use the random-initialised
``tiny`` preset, built once per module.
"""

import pytest
import torch

from ebseg_lite import build_model
from ebseg_lite.modeling.text import encode_text_trimmed


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("tiny").model.eval()


# ---------------------------------------------------------------- stage 6: text embeddings
def test_encode_text_trimmed_matches_encode_text(tiny, monkeypatch):
    clip = tiny.clip
    prompts = ["cat", "a photo of a large cat in the scene.", "There is a medium road, route in the scene."]
    tokens = tiny.tokenizer(prompts)
    with torch.no_grad():
        ref = clip.encode_text(tokens, normalize=True)
        short = clip.encode_text(tiny.tokenizer(["cat"]), normalize=True)

        def forbidden(*args, **kwargs):
            raise AssertionError("the trimmed path must not fall back to encode_text on the tiny model")

        monkeypatch.setattr(clip, "encode_text", forbidden)
        got = encode_text_trimmed(clip, tokens)
        got_short = encode_text_trimmed(clip, tiny.tokenizer(["cat"]))
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_short, short, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(3))
