"""The paper's claims read off a run's figures (ebseg_lite.toyworld.readings), on hand-made summaries."""
import pytest

from ebseg_lite.toyworld.readings import format_readings, harmonic, paper_readings


def summary(**modes):
    """mode=(all, seen, new) -> the demo's per-seed summary layout."""
    return {m.replace("_", "+").replace("+official", " official").replace("+unbalanced", " unbalanced"):
            {"mIoU": a, "mIoU_seen": s, "mIoU_new": n} for m, (a, s, n) in modes.items()}


def paper_like(a_seen=70.0, shift=0.0):
    # the paper's picture: A best on seen and worst on new, B strongest overall, balance on top
    return summary(A=(30, a_seen, 5 + shift), B=(50, 60, 40 + shift), D=(40, 55, 30 + shift),
                   A_B_D_unbalanced=(45, 62, 35 + shift), A_B_D_official=(52, 66, 42 + shift))


def by_claim(readings):
    return {r["claim"].split(" (")[0]: r for r in readings}


def test_every_claim_holds_on_a_paper_like_run():
    readings = paper_readings([paper_like(), paper_like(72.0)], [paper_like(shift=-10.0)] * 2)
    assert [r["holds"] for r in readings] == [True] * 6
    assert all(r.get("seeds_holding", "2 of 2") == "2 of 2" for r in readings)
    text = format_readings(readings, 2)
    assert text.count("[shown]") == 6 and "[not shown]" not in text


def test_a_not_best_on_seen_is_not_shown_and_counted_per_seed():
    # A best on seen on one seed only, below D on the mean
    runs = [paper_like(a_seen=61.0), paper_like(a_seen=40.0)]
    r = by_claim(paper_readings(runs))["A is the best single embedding on seen classes"]
    assert r["holds"] is False and r["seeds_holding"] == "1 of 2"
    assert "A 50.5, B 60.0, D 55.0" in r["figures"]


def test_h_mean_is_taken_per_seed_then_averaged():
    # seed 1: balance 66/42, D 55/30; seed 2 swaps which one is lopsided. The h-mean of the means
    # would differ from the mean of the per-seed h-means; the reading uses the latter.
    s1 = paper_like()
    s2 = paper_like()
    s2["D"] = {"mIoU": 40, "mIoU_seen": 90.0, "mIoU_new": 10.0}
    r = by_claim(paper_readings([s1, s2]))["the balanced result beats every single embedding on the h-mean of seen and new"]
    expected_d = (harmonic(55, 30) + harmonic(90, 10)) / 2
    assert f"D {expected_d:.1f}" in r["figures"]
    assert f"D {harmonic(72.5, 20.0):.1f}" not in r["figures"]
    assert r["holds"] is True and r["seeds_holding"] == "2 of 2"


def test_ssc_gain_within_the_spread_is_not_shown():
    on = [paper_like(shift=1.0), paper_like(shift=-1.0)]     # new of the balance: 43, 41
    off = [paper_like(shift=0.5), paper_like(shift=-1.5)]    # 42.5, 40.5: a 0.5 gain, spread 1.4
    r = by_claim(paper_readings(on, off))["SSC raises new-class mIoU"]
    assert r["holds"] is False and "+0.5; within the spread 1.4" in r["figures"]
    r = by_claim(paper_readings(on, [paper_like(shift=-5.0)] * 2))["SSC raises new-class mIoU"]
    assert r["holds"] is True and "beyond" in r["figures"]
    assert "SSC raises new-class mIoU" not in by_claim(paper_readings(on))   # no SSC-off runs: no reading
    one = by_claim(paper_readings(on[:1], off[:1]))["SSC raises new-class mIoU"]   # a gain of 0.5 on one seed
    assert one["holds"] is True and "one seed: no spread to compare with" in one["figures"]


def test_b_strongest_uses_all_class_miou_and_missing_modes_are_refused():
    runs = [paper_like()]
    runs[0]["D"]["mIoU"] = 55.0                               # D now above B over all classes
    r = by_claim(paper_readings(runs))["B is the strongest single embedding"]
    assert r["holds"] is False and r["seeds_holding"] == "0 of 1"
    with pytest.raises(ValueError, match="lack the modes"):
        paper_readings([{"A": runs[0]["A"]}])
    with pytest.raises(ValueError, match="at least one"):
        paper_readings([])
