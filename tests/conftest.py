import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# A user's real SAM checkpoint (EBSEG_SAM_CHECKPOINT) must not leak into the tiny models of the tests.
os.environ.pop("EBSEG_SAM_CHECKPOINT", None)
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_model():
    import ebseg_lite
    return ebseg_lite.build_model("tiny", seed=0)


@pytest.fixture
def rgb_image():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, 128, 160), dtype=torch.uint8, generator=g)
