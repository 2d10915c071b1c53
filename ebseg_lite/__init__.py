"""ebseg_lite: a teachable re-implementation of EBSeg (CVPR 2024)."""
