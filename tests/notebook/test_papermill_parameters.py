"""The notebooks' PROFILE parameters cell works with papermill, as notebooks/README.md shows:
``papermill NB out.ipynb -p PROFILE full`` injects the value right after the tagged cell."""
from pathlib import Path

import nbformat
import papermill
import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 11


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_sets_profile(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: one cell tagged 'parameters', found {len(tagged)}"
    assert "PROFILE = None" in nb.cells[tagged[0]].source
    out = tmp_path / path.name
    papermill.execute_notebook(str(path), str(out), parameters={"PROFILE": "full"}, prepare_only=True,
                               progress_bar=False, kernel_name="python3")
    got = nbformat.read(out, as_version=4)
    injected = got.cells[tagged[0] + 1]
    assert "injected-parameters" in injected.metadata.get("tags", [])
    assert 'PROFILE = "full"' in injected.source
    assert [c.source for c in got.cells[:tagged[0] + 1]] == [c.source for c in nb.cells[:tagged[0] + 1]]
