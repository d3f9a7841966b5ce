"""The outcome of an evaluation: per-class AP at every threshold, the averages, table / CSV / JSON."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from pointformer.evaluation.coverage import CoverageResult, nanmean
from pointformer.evaluation.protocol import AP25_COLUMN, AP50_COLUMN, AP_COLUMNS, IOU_THRESHOLDS
from pointformer.io.atomic import atomic_write_text


@dataclass
class EvaluationResult:
    """ScanNet-protocol results.

    ap_matrix: float64 [C, 10] AP per class and IoU threshold (columns follow ``thresholds``:
               0.50..0.90 then 0.25); NaN for a class without GT instances of >= 100 vertices.
    map / map50 / map25: NaN-mean over classes (x the nine thresholds 0.50..0.90 for ``map``).
    ap / ap50 / ap25: per class name (``ap`` is the plain mean over the nine thresholds).
    mean_precision / mean_recall (S3DIS only): at IoU >= 0.5, NaN-mean over classes.
    class_groups: named subsets of ``class_names`` (ScanNet200: head, common, tail); ``group_map``,
                  ``group_map50`` and ``group_map25`` are the same NaN-means over each group's classes.
    coverage: (S3DIS only) the ASIS-style metrics mCov, mWCov, mPrec50, mRec50 and their score threshold.
    """

    dataset: str
    class_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    ap_matrix: np.ndarray
    num_scenes: int
    thresholds: np.ndarray = field(default_factory=lambda: IOU_THRESHOLDS.copy())
    precision: Optional[dict[str, float]] = None
    recall: Optional[dict[str, float]] = None
    class_groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    coverage: Optional[CoverageResult] = None

    @property
    def map(self) -> float:
        return nanmean(self.ap_matrix[:, AP_COLUMNS])

    @property
    def map50(self) -> float:
        return nanmean(self.ap_matrix[:, AP50_COLUMN])

    @property
    def map25(self) -> float:
        return nanmean(self.ap_matrix[:, AP25_COLUMN])

    def _group_means(self, columns: np.ndarray | int) -> dict[str, float]:
        """Per group: the NaN-mean of its classes' rows of ``ap_matrix`` at ``columns``."""
        row = {name: i for i, name in enumerate(self.class_names)}
        return {group: nanmean(self.ap_matrix[[row[n] for n in names]][:, columns])
                for group, names in self.class_groups}

    @property
    def group_map(self) -> dict[str, float]:
        """Per class group (e.g. head/common/tail): mAP over its classes, as ``map`` over all."""
        return self._group_means(AP_COLUMNS)

    @property
    def group_map50(self) -> dict[str, float]:
        return self._group_means(AP50_COLUMN)

    @property
    def group_map25(self) -> dict[str, float]:
        return self._group_means(AP25_COLUMN)

    @property
    def ap(self) -> dict[str, float]:
        per_class = np.mean(self.ap_matrix[:, AP_COLUMNS], axis=1)
        return {name: float(v) for name, v in zip(self.class_names, per_class)}

    @property
    def ap50(self) -> dict[str, float]:
        return {name: float(v) for name, v in zip(self.class_names, self.ap_matrix[:, AP50_COLUMN])}

    @property
    def ap25(self) -> dict[str, float]:
        return {name: float(v) for name, v in zip(self.class_names, self.ap_matrix[:, AP25_COLUMN])}

    @property
    def mean_precision(self) -> Optional[float]:
        return None if self.precision is None else nanmean(np.array(list(self.precision.values())))

    @property
    def mean_recall(self) -> Optional[float]:
        return None if self.recall is None else nanmean(np.array(list(self.recall.values())))

    def table(self) -> str:
        """The per-class table as printed by the official script (plus precision/recall for S3DIS)."""
        pr = self.precision is not None
        name_width = max([15, *map(len, self.class_names)])  # ScanNet200 has names longer than 15
        width = name_width + 49 + (30 if pr else 0)
        head = f"{'what':<{name_width}}:{'AP':>15}{'AP_50%':>15}{'AP_25%':>15}"
        if pr:
            head += f"{'prec_50%':>15}{'rec_50%':>15}"
        lines = ["#" * width, head, "#" * width]
        ap, ap50, ap25 = self.ap, self.ap50, self.ap25
        for name in self.class_names:
            line = f"{name:<{name_width}}:{ap[name]:>15.3f}{ap50[name]:>15.3f}{ap25[name]:>15.3f}"
            if pr:
                line += f"{self.precision[name]:>15.3f}{self.recall[name]:>15.3f}"
            lines.append(line)
        lines.append("-" * width)
        line = f"{'average':<{name_width}}:{self.map:>15.3f}{self.map50:>15.3f}{self.map25:>15.3f}"
        if pr:
            line += f"{self.mean_precision:>15.3f}{self.mean_recall:>15.3f}"
        lines.append(line)
        group_map, group_map50, group_map25 = self.group_map, self.group_map50, self.group_map25
        for group, _ in self.class_groups:
            lines.append(f"{group:<{name_width}}:{group_map[group]:>15.3f}{group_map50[group]:>15.3f}"
                         f"{group_map25[group]:>15.3f}")
        if self.coverage is not None:
            lines.append(f"ASIS metrics: {self.coverage.summary()}")
        return "\n".join(lines)

    def csv_text(self) -> str:
        """The official result file: ``class,class id,ap,ap50,ap25`` (values as Python prints them)."""
        rows = ["class,class id,ap,ap50,ap25"]
        ap, ap50, ap25 = self.ap, self.ap50, self.ap25
        for name, cid in zip(self.class_names, self.class_ids):
            rows.append(",".join([name, str(cid), str(ap[name]), str(ap50[name]), str(ap25[name])]))
        return "\n".join(rows) + "\n"

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write :meth:`csv_text` atomically to ``path``."""
        atomic_write_text(path, self.csv_text())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (NaN stays float NaN; json.dumps writes it as NaN)."""
        out: dict[str, Any] = {
            "dataset": self.dataset, "num_scenes": self.num_scenes,
            "map": self.map, "map50": self.map50, "map25": self.map25,
            "ap": self.ap, "ap50": self.ap50, "ap25": self.ap25,
            "class_ids": dict(zip(self.class_names, self.class_ids)),
        }
        for means, prefix in ((self.group_map, "map"), (self.group_map50, "map50"), (self.group_map25, "map25")):
            out.update({f"{prefix}_{group}": value for group, value in means.items()})
        if self.class_groups:
            out["class_groups"] = {group: list(names) for group, names in self.class_groups}
        if self.precision is not None:
            out.update(mean_precision=self.mean_precision, mean_recall=self.mean_recall,
                       precision=dict(self.precision), recall=dict(self.recall))
        if self.coverage is not None:
            out.update(self.coverage.as_dict())
        return out

