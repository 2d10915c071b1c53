"""Cross-references between notebooks point at the notebook with that content, and no notebook talks
about placeholder weights (the toy models load trained weights).

A reference is "notebook NN" (or "notebooks NN and MM", "NN-MM"). The clause around it (cut at the
sentence, the table cell and the neighbouring references) is searched for topic words; each topic's
home notebooks are the ones whose *title* (first line, "# NN · ...") names it, so the table below
cannot drift from the titles. A clause that names topics must name at least one topic of a referenced
notebook: "the balancing (notebook 07)" fails, since balancing is notebook 09's title.
"""
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("[0-9][0-9]_*.ipynb"))

#: topic: (pattern in the text, pattern in the home notebook's title)
TOPICS = {
    "balancing": (r"balanc", r"balanc"),
    "fusion": (r"\bfus(ion|e|es|ed)\b", r"fusion"),
    "CLIP Surgery": (r"surgery", r"surgery"),
    "AdaB decoder": (r"adab", r"adab"),
    "mask attention, B": (r"mask attention|attention bias|embeddings? b\b", r"mask attention"),
    "SSC loss": (r"\bssc\b|semantic structure", r"\bssc\b"),
    "training": (r"\btraining (run|loop|recipe|curves?)|\btrain(s)? ebseg", r"^\d\d · training"),
    "evaluation": (r"\bevaluation\b|\bablations?\b|\bmiou\b", r"evaluation"),
    "own images": (r"your own (images|pictures|class names)", r"your own"),
    "D, mask pooling": (r"mask[- ]pool|\bpool(s|ed|ing)? (it|them|f_clip|from)|embeddings? d\b", r"mask pooling"),
    "seed baselines": (r"baselines?\b", r"baseline"),
}
REF = re.compile(r"[Nn]otebooks? (\d\d)((?:\s*(?:,|and|-|–|to)\s*\d\d)*)")


def _cells(path):
    return [("".join(c["source"]), c["cell_type"]) for c in json.loads(path.read_text())["cells"]]


def _titles():
    out = {}
    for p in NOTEBOOKS:
        first = _cells(p)[0][0].splitlines()[0]
        m = re.match(r"# (\d\d) · (.+)", first)
        assert m and m.group(1) == p.name[:2], f"{p.name}: the first line must be '# {p.name[:2]} · title'"
        out[m.group(1)] = f"{m.group(1)} · {m.group(2)}".lower()
    return out


def _numbers(m):
    first, rest = m.group(1), m.group(2)
    nums = [first] + re.findall(r"\d\d", rest)
    if re.search(r"-|–|to", rest) and len(nums) == 2:
        nums = [f"{i:02d}" for i in range(int(nums[0]), int(nums[1]) + 1)]
    return nums


def _clause(text, start, end, prev_end, next_start):
    lo, hi = max(prev_end, start - 90), min(next_start, end + 90)
    stop = re.compile(r"(?<!eq)(?<!e\.g)(?<!i\.e)\.\s|\n\n|\||: ")  # a sentence's end ("eq. 8" is none)
    before, after = stop.split(text[lo:start])[-1], stop.split(text[end:hi])[0]
    return (before + " " + after).lower()


def references():
    """(notebook file, cell, referenced numbers, clause) for every reference in every notebook."""
    rows = []
    for p in NOTEBOOKS:
        for i, (text, _) in enumerate(_cells(p)):
            ms = list(REF.finditer(text))
            for j, m in enumerate(ms):
                prev_end = ms[j - 1].end() if j else 0
                next_start = ms[j + 1].start() if j + 1 < len(ms) else len(text)
                rows.append((p.name, i, _numbers(m), _clause(text, m.start(), m.end(), prev_end, next_start)))
    return rows


def test_titles_are_numbered_and_every_topic_has_a_home():
    titles = _titles()
    assert list(titles) == [p.name[:2] for p in NOTEBOOKS]
    for topic, (_, title_pat) in TOPICS.items():
        assert any(re.search(title_pat, t) for t in titles.values()), f"no notebook title names {topic!r}"


def test_every_notebook_reference_points_at_the_notebook_with_that_content():
    titles = _titles()
    refs = references()
    assert len(refs) >= 10, "the notebooks cross-reference each other; the pattern must find them"
    bad = []
    for name, cell, nums, clause in refs:
        for n in nums:
            if n not in titles:
                bad.append(f"{name} cell {cell}: notebook {n} does not exist")
        named = [t for t, (pat, _) in TOPICS.items() if re.search(pat, clause)]
        homes = {t: [n for n, title in titles.items() if re.search(TOPICS[t][1], title)] for t in named}
        if named and not any(set(homes[t]) & set(nums) for t in named):
            bad.append(f"{name} cell {cell}: 'notebook {'/'.join(nums)}' in {clause.strip()!r} is about "
                       + ", ".join(f"{t} (notebook {'/'.join(homes[t])})" for t in named))
    assert not bad, "\n".join(bad)


def test_the_next_steps_table_of_the_tour_lists_every_notebook_in_order():
    text = "\n".join(t for t, kind in _cells(NOTEBOOKS[0]) if kind == "markdown")
    rows = re.findall(r"^\| (\d\d) \| (.+?) \|$", text, flags=re.M)
    titles = _titles()
    want = [n for n in titles if n != "00" and n <= "10"]
    assert [n for n, _ in rows] == want
    for n, what in rows:
        named = [t for t, (pat, _) in TOPICS.items() if re.search(pat, what.lower())]
        for t in named:
            assert re.search(TOPICS[t][1], titles[n]) or t == "fusion" and n == "02", (n, what, t)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_notebook_mentions_placeholder_weights(path):
    for i, (text, _) in enumerate(_cells(path)):
        assert "placeholder" not in text.lower(), f"{path.name} cell {i} mentions placeholder weights"
