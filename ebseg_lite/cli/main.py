"""The ``ebseg-lite`` command: one file per sub-command in this folder.

    ebseg-lite segment IMAGE --classes "cat,sofa" --out out.png [--preset toy|vit_b] [--checkpoint PATH]
    ebseg-lite eval --dataset ade20k_150 --preset vit_b
    ebseg-lite train --preset toy
    ebseg-lite toyworld demo --out toyworld_report
    ebseg-lite download --preset vit_b
    ebseg-lite benchmark --preset vit_b
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from ebseg_lite.cli import benchmark, download, eval as eval_cmd, segment, toyworld, train
from ebseg_lite.io.files import CheckpointError, WeightsUnavailable

#: Sub-command modules, in the order ``--help`` lists them; each has ``add_parser(subparsers)``.
COMMANDS = (segment, eval_cmd, train, toyworld, download, benchmark)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebseg-lite", description="EBSeg: open-vocabulary semantic segmentation")
    sub = p.add_subparsers(dest="command", required=True)
    for mod in COMMANDS:
        mod.add_parser(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (WeightsUnavailable, CheckpointError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"ebseg-lite: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
