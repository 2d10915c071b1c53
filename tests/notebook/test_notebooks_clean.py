"""The notebooks in the repository: numbered in order, outputs stripped, a tagged parameters cell,
a first cell that names the paper's equations / figures / tables it explains. (nbval runs them.)"""
import json
import re
from pathlib import Path

import pytest

NB_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))


def test_notebooks_are_numbered_in_order():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS if re.match(r"^\d\d_", p.name)]
    assert len(numbers) == len(NOTEBOOKS) >= 11, [p.name for p in NOTEBOOKS]
    assert numbers == list(range(len(numbers)))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped_and_parameterised(path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has stored outputs: strip them"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"
    first, params = nb["cells"][0], nb["cells"][1]
    assert first["cell_type"] == "markdown"
    text = "".join(first["source"])
    assert re.search(r"\b(eq\.|equation|Eq\.|Fig\.|Figure|Table|table)", text), f"{path.name}: name the paper parts"
    assert params["cell_type"] == "code" and "parameters" in params.get("metadata", {}).get("tags", [])
    assert "PROFILE" in "".join(params["source"])
