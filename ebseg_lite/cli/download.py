"""``ebseg-lite download --preset vit_b``: fetch the released EBSeg checkpoint (needs internet)."""
from __future__ import annotations

from ebseg_lite.io.official import download_released


def cmd_download(args) -> int:
    print(download_released(args.preset))
    return 0


def add_parser(sub) -> None:
    g = sub.add_parser("download", help="fetch the released EBSeg checkpoint (needs internet)")
    g.add_argument("--preset", default="vit_b", choices=["vit_b", "vit_l"])
    g.set_defaults(func=cmd_download)
