"""Tests of vocabulary (pure stage functions) against small cases worked out by hand.

Expected numbers are written out in the tests (tiny tensors, Python arithmetic), never obtained by
calling the function under test another way. The CLIP-block tests use the random-initialised
``tiny`` preset, built once per module.
"""

import pytest
import torch

from ebseg_lite.shapes import check_shape
from ebseg_lite.vocabulary import parse_class_list, seen_mask, validate_class_names


# ---------------------------------------------------------------- vocabulary and shapes
def test_seen_mask_with_synonyms():
    got = seen_mask(["road, route", "cat", "sky", "sofa, couch"], ["route", "sky, clouds", "chair"])
    assert got.dtype == torch.bool
    assert got.tolist() == [True, False, True, False]


def test_validate_class_names_errors_and_stripping():
    assert validate_class_names([" cat ", "road, route"]) == ["cat", "road, route"]
    with pytest.raises(ValueError, match="empty"):
        validate_class_names([])
    with pytest.raises(ValueError, match="blank"):
        validate_class_names(["cat", "  "])
    with pytest.raises(ValueError, match="duplicate"):
        validate_class_names(["cat", "sofa", " cat"])
    with pytest.raises(ValueError, match="one string"):
        validate_class_names("cat,sofa")
    with pytest.raises(ValueError, match="not a string"):
        validate_class_names(["cat", 3])


def test_parse_class_list_commas_and_semicolons():
    assert parse_class_list("cat, sofa ,,tree") == ["cat", "sofa", "tree"]
    assert parse_class_list("road, route; sofa, couch;") == ["road, route", "sofa, couch"]


def test_check_shape_passes_and_fails_with_message():
    x = torch.zeros(2, 3)
    assert check_shape(x, (2, None)) is x
    assert check_shape(x, (2, 3)) is x
    with pytest.raises(AssertionError, match=r"masks: expected shape \(2, 4\), got \(2, 3\)"):
        check_shape(x, (2, 4), name="masks")
    with pytest.raises(AssertionError, match=r"tensor: expected shape .*got \(2, 3\)"):
        check_shape(x, (2, 3, None))   # a different rank fails even with a wildcard


def test_display_name_is_the_first_synonym():
    from ebseg_lite.vocabulary import display_name
    assert display_name("road, route") == "road"
    assert display_name("  tree ") == "tree"
    assert display_name("person, people, man") == "person"


def test_unknown_word_warning_names_what_a_closed_tokenizer_cannot_spell():
    import open_clip
    from ebseg_lite.toyworld.tokenizer import ToyTokenizer
    from ebseg_lite.vocabulary import unknown_word_warning, warn_unknown_words
    toy = ToyTokenizer.from_world()
    assert unknown_word_warning(toy, ["red solid", "grass"]) is None
    msg = unknown_word_warning(toy, ["red solid", "dog", "orange car"])
    assert msg.startswith("2 class name(s)") and "'dog' (dog)" in msg and "'orange car' (orange, car)" in msg
    assert "red solid" not in msg and toy.vocabulary_note in msg
    many = unknown_word_warning(toy, [f"thing{i}" for i in range(11)], shown=3)
    assert many.startswith("11 class name(s)") and "'thing2'" in many and "'thing3'" not in many and "and 8 more" in many
    # open_clip's BPE spells anything: no method to ask, no warning
    assert unknown_word_warning(open_clip.get_tokenizer("ViT-B-16"), ["xqzzyv", "dog"]) is None
    with pytest.warns(UserWarning, match="'dog'"):
        warn_unknown_words(toy, ["dog"])


def test_the_seen_rule_ignores_case_and_spacing_as_the_tokenizer_does():
    import open_clip
    from ebseg_lite.data.vocabularies import load_class_names, seen_for
    from ebseg_lite.vocabulary import synonym_key
    assert synonym_key("  Road \t Route ") == "road route"
    # open_clip's tokenizer reads these as one text, so the rule must call them one class
    tok = open_clip.get_tokenizer("ViT-B-16")
    assert torch.equal(tok(["a photo of a Sofa."]), tok(["a photo of a  sofa."]))
    assert seen_mask(["Sofa", "Red  Solid", "red solid", "chandelier"], ["sofa, couch", "red solid"]).tolist() == \
        [True, True, True, False]
    assert seen_for(["Sofa", "Chandelier", "road,  Route"]).tolist() == [True, False, True]   # FC-CLIP's COCO lists
    # the official lists and FC-CLIP's training synonyms are lower case with single spaces: the key is the
    # synonym itself, so every result of the rule on them is what exact comparison gave
    from ebseg_lite.data.benchmarks import BENCHMARK_VOCABULARIES
    from ebseg_lite.data.vocabularies import training_synonyms
    from ebseg_lite.vocabulary import synonyms
    official = [s for b in BENCHMARK_VOCABULARIES for n in load_class_names(b) for s in synonyms(n)]
    official += sorted(training_synonyms(load_class_names("coco_stuff_171")))
    assert len(official) > 1800 and all(synonym_key(s) == s for s in official)


def test_names_that_read_the_same_to_clip_are_duplicates():
    from ebseg_lite.data.benchmarks import BENCHMARK_VOCABULARIES
    from ebseg_lite.data.vocabularies import load_class_names
    with pytest.raises(ValueError, match=r"duplicate class names: 'Sofa' = 'sofa', 'cat'; .*case and spacing"):
        validate_class_names(["Sofa", "cat", "sofa ", "SOFA", "cat"])
    with pytest.raises(ValueError, match="'road, route' = 'Road,  route'"):
        validate_class_names(["road, route", "Road,  route"])
    assert validate_class_names(["sofa", "sofa bed", "road,route", "road, route"]) == \
        ["sofa", "sofa bed", "road,route", "road, route"]
    for name in BENCHMARK_VOCABULARIES:                # every official list passes as it is
        names = load_class_names(name)
        assert validate_class_names(names) == list(names)
