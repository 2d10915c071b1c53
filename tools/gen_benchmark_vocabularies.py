"""Rebuild ebseg_lite/data/benchmarks/*.json from the official EBSeg and detectron2 repositories.

Developer tool, not part of the package. It reads (never imports, never copies code from) two git
repositories and writes one JSON file per benchmark holding, in label-id order:

* ``prompt``: the string the official model puts into its 14 text templates. The official
  classifier (``ebseg/model/clip_utils/utils.py: get_labelset_from_dataset``) uses
  ``c.strip() for c in MetadataCatalog.get(dataset).stuff_classes``; stuff_classes are those
  registered by ``ebseg/data/datasets/register_*.py`` (COCO-Stuff, ADE20K-847, Pascal Context,
  VOC) or by detectron2 itself for ADE20K-150 (``ADE20K_SEM_SEG_CATEGORIES`` in
  ``detectron2/data/datasets/builtin_meta.py``).
* ``seen``: the official seen mask (``ebseg/model/EBSeg.py``, ``dataset_overlap_maps``): each line of
  ``ebseg/data/datasets/class_names/<dataset>.txt`` (FC-CLIP's synonym lists, ``"<id>:syn,syn"``) is
  split as ``line.split(':')[1].split('\\n')[0].split(',')`` -- synonyms are *not* stripped -- and a
  class is seen when that set meets the union of the COCO-Stuff training lines' synonyms.
* ``synonyms``: those raw synonym tokens, so the rule can be checked again from the file alone.
* ``display``: the first comma-separated part of the prompt, for legends and tables.

Usage (mirrors made by ``git clone --mirror`` or the project's fetch tool)::

    python tools/gen_benchmark_vocabularies.py \\
        --ebseg /work/.mirror/slonetime+EBSeg/repo \\
        --detectron2 /work/.mirror/facebookresearch+detectron2/repo \\
        --out ebseg_lite/data/benchmarks
"""
from __future__ import annotations

import argparse
import ast
import json
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

CLASS_NAME_DIR = "ebseg/data/datasets/class_names"
TRAIN_DATASET = "coco_2017_train_stuff_sem_seg"

#: ebseg_lite name -> (official dataset name, repo key, file, Python symbol holding the categories)
BENCHMARKS: Dict[str, Tuple[str, str, str, str]] = {
    "coco_stuff_171": ("coco_2017_test_stuff_sem_seg", "ebseg",
                       "ebseg/data/datasets/register_coco_stuff_164k.py", "COCO_CATEGORIES"),
    "ade20k_150": ("ade20k_sem_seg_val", "detectron2",
                   "detectron2/data/datasets/builtin_meta.py", "ADE20K_SEM_SEG_CATEGORIES"),
    "ade20k_847": ("ade20k_full_sem_seg_val", "ebseg",
                   "ebseg/data/datasets/register_ade20k_full.py", "ADE20K_SEM_SEG_FULL_CATEGORIES"),
    "pcontext_59": ("pcontext_sem_seg_val", "ebseg",
                    "ebseg/data/datasets/register_pcontext.py", "PCONTEXT_SEM_SEG_CATEGORIES"),
    "pcontext_459": ("pcontext_full_sem_seg_val", "ebseg",
                     "ebseg/data/datasets/register_pcontext.py", "PCONTEXT_FULL_SEM_SEG_CATEGORIES"),
    "voc_20": ("voc_sem_seg_val", "ebseg", "ebseg/data/datasets/register_voc.py", "CLASS_NAMES"),
}
REPO_NAMES = {"ebseg": "slonetime/EBSeg", "detectron2": "facebookresearch/detectron2"}


def git_show(git_dir: Path, commit: str, path: str) -> str:
    return subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"],
                          check=True, capture_output=True, text=True).stdout


def git_commit(git_dir: Path, rev: str) -> str:
    return subprocess.run(["git", f"--git-dir={git_dir}", "rev-parse", rev],
                          check=True, capture_output=True, text=True).stdout.strip()


def literal_assignment(source: str, symbol: str):
    """The value of ``symbol = <literal>`` at module level, read with ``ast`` (nothing executed)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == symbol for t in node.targets):
            return ast.literal_eval(node.value)
    raise KeyError(f"{symbol} is not assigned at module level")


def stuff_classes(categories) -> List[str]:
    """stuff_classes as registered: a list of names, or ``[c["name"] for c in categories]``."""
    return [c["name"] if isinstance(c, dict) else c for c in categories]


def synonym_lines(text: str) -> List[List[str]]:
    """The official parse of an FC-CLIP class-name file, one raw synonym list per line."""
    return [line.split(":")[1].split("\n")[0].split(",") for line in text.splitlines(keepends=True)]


def build(name: str, repos: Dict[str, Tuple[Path, str]], train_synonyms: set) -> dict:
    dataset, repo_key, path, symbol = BENCHMARKS[name]
    git_dir, commit = repos[repo_key]
    prompts = [c.strip() for c in stuff_classes(literal_assignment(git_show(git_dir, commit, path), symbol))]
    ebseg_dir, ebseg_commit = repos["ebseg"]
    syn_path = f"{CLASS_NAME_DIR}/{dataset}.txt"
    syns = synonym_lines(git_show(ebseg_dir, ebseg_commit, syn_path))
    if len(syns) != len(prompts):
        raise ValueError(f"{name}: {len(prompts)} stuff_classes but {len(syns)} synonym lines")
    seen = [not train_synonyms.isdisjoint(s) for s in syns]
    classes = [{"id": i, "prompt": p, "display": p.split(",")[0].strip(), "seen": s, "synonyms": syn}
               for i, (p, s, syn) in enumerate(zip(prompts, seen, syns))]
    return {
        "name": name,
        "official_dataset": dataset,
        "num_classes": len(classes),
        "num_seen": sum(seen),
        "sources": {
            "prompt": {"repo": REPO_NAMES[repo_key], "commit": commit, "path": path, "symbol": symbol,
                       "rule": "stuff_classes as registered, each .strip()-ed"},
            "seen": {"repo": REPO_NAMES["ebseg"], "commit": ebseg_commit, "path": syn_path,
                     "train_path": f"{CLASS_NAME_DIR}/{TRAIN_DATASET}.txt",
                     "rule": "seen = raw synonyms of the class intersect raw synonyms of all training lines"},
        },
        "classes": classes,
    }


def dump(doc: dict) -> str:
    """JSON with one class per line, so a diff shows which class changed."""
    head = {k: v for k, v in doc.items() if k != "classes"}
    text = json.dumps(head, indent=1, ensure_ascii=False)[:-2]
    rows = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in doc["classes"])
    return f'{text},\n "classes": [\n{rows}\n ]\n}}\n'


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ebseg", type=Path, required=True, help="git dir of slonetime/EBSeg")
    ap.add_argument("--detectron2", type=Path, required=True, help="git dir of facebookresearch/detectron2")
    ap.add_argument("--ebseg-rev", default="HEAD")
    ap.add_argument("--detectron2-rev", default="HEAD")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    repos = {"ebseg": (args.ebseg, git_commit(args.ebseg, args.ebseg_rev)),
             "detectron2": (args.detectron2, git_commit(args.detectron2, args.detectron2_rev))}
    train_text = git_show(repos["ebseg"][0], repos["ebseg"][1], f"{CLASS_NAME_DIR}/{TRAIN_DATASET}.txt")
    train_synonyms = {s for line in synonym_lines(train_text) for s in line}
    coco_test = f"{CLASS_NAME_DIR}/{BENCHMARKS['coco_stuff_171'][0]}.txt"
    test_text = git_show(repos["ebseg"][0], repos["ebseg"][1], coco_test)
    if test_text != train_text:  # coco_stuff_171.json's synonyms then double as the training synonyms
        raise ValueError("the COCO-Stuff train and test synonym files differ; store both")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in BENCHMARKS:
        doc = build(name, repos, train_synonyms)
        (args.out / f"{name}.json").write_text(dump(doc), encoding="utf-8")
        print(f"{name}: {doc['num_seen']}/{doc['num_classes']} seen")


if __name__ == "__main__":
    main()
