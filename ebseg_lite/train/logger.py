"""Training logs: JSON lines and CSV in the run folder, and TensorBoard when installed.

On resume the files are cut back to the resumed step (entries written after the checkpoint by the
interrupted run are dropped), so a resumed run's log reads like an uninterrupted one.
"""
from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from typing import Dict, List

from ebseg_lite.io.files import atomic_write


def read_jsonl(path) -> List[Dict]:
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill
            break
    return rows


class RunLogger:
    def __init__(self, out_dir, *, resume_step: int = 0, tensorboard: bool = True):
        self.dir = Path(out_dir)
        self.jsonl = self.dir / "log.jsonl"
        self.csv = self.dir / "log.csv"
        rows = [r for r in read_jsonl(self.jsonl) if r.get("step", 0) <= resume_step] if resume_step else []
        self.rows: List[Dict] = rows
        atomic_write(self.jsonl, lambda tmp: Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in rows)))
        self._rewrite_csv()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(self.dir / "tb"), purge_step=resume_step + 1 if resume_step else None)
            except ImportError:
                warnings.warn("tensorboard is not installed (pip install tensorboard): logging to "
                              f"{self.jsonl} and {self.csv} only", stacklevel=2)

    def _rewrite_csv(self) -> None:
        keys = sorted({k for r in self.rows for k in r}, key=lambda k: (k != "step", k))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        if keys:
            w.writeheader()
            w.writerows(self.rows)
        atomic_write(self.csv, lambda tmp: Path(tmp).write_text(buf.getvalue()))

    def log(self, row: Dict) -> None:
        known = set(self.rows[0]) if self.rows else None
        self.rows.append(row)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        if known is None or set(row) != known:
            self._rewrite_csv()  # new columns: rewrite with the full header
        else:
            with open(self.csv, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=sorted(known, key=lambda k: (k != "step", k))).writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k.replace("loss_", "loss/"), v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
