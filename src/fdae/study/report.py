"""The study's table as the field prints it: method x dataset, mean +- std over seeds.

Std is the sample standard deviation over seeds (ddof = 1; blank with one seed). The
header names the protocol and the DCI mode; cells measured under different protocols
or DCI modes are never averaged together (the report refuses). Published numbers can be
added from a YAML file as *quoted* rows: they go in their own block, labelled with
their source, never in the measured block.

    source: FDAE (AAAI 2024), Table 2, mean over 10 seeds
    protocol: paper
    rows:
      - {method: FDAE, dataset: shapes3d, dci: 0.917, factor_vae: 0.987, mig: 0.473}
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from fdae.errors import FdaeError
from fdae.study.cell import RESULTS
from fdae.study.spec import Study

METRICS = {  # column name -> key in a cell's scores
    "dci": "dci.disentanglement",
    "factor_vae": "factor_vae.eval_accuracy",
    "mig": "mig.mig",
    "sap": "sap.sap",
    "modularity": "modularity.modularity",
    "beta_vae": "beta_vae.eval_accuracy",
}
LABELS = {"dci": "DCI", "factor_vae": "FactorVAE", "mig": "MIG", "sap": "SAP", "modularity": "Modularity",
          "beta_vae": "BetaVAE"}


@dataclass
class Row:
    method: str
    dataset: str
    values: dict[str, list[float]] = field(default_factory=dict)  # metric -> one value per seed

    def mean_std(self, metric: str) -> tuple[float, float] | None:
        v = self.values.get(metric)
        if not v:
            return None
        arr = np.asarray(v, dtype=np.float64)
        return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else math.nan


@dataclass
class Report:
    study: str
    protocol: str
    dci_mode: str
    metrics: list[str]
    datasets: list[str]
    methods: list[str]
    rows: dict[tuple[str, str], Row]
    quoted: dict | None = None
    missing: int = 0


def _row_label(result: dict) -> str:
    cell = result["cell"]
    tag = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in (cell.get("grid") or {}).items())
    return cell["method"] + (f" ({tag})" if tag else "")


def collect(study: Study) -> Report:
    """Every finished cell's scores, grouped by (method [grid point], dataset)."""
    rows: dict[tuple[str, str], Row] = {}
    protocols, modes, methods, missing = set(), set(), [], 0
    for cell in study.cells():
        path = study.cell_dir(cell) / RESULTS
        if not path.is_file():
            missing += 1
            continue
        res = json.loads(path.read_text())
        protocols.add(res["protocol"])
        modes.add(res.get("dci_mode", "exact"))
        label = _row_label(res)
        if label not in methods:
            methods.append(label)
        row = rows.setdefault((label, cell.dataset), Row(label, cell.dataset))
        for metric, key in METRICS.items():
            if key in res["scores"]:
                row.values.setdefault(metric, []).append(float(res["scores"][key]))
    if len(protocols) > 1 or len(modes) > 1:
        raise FdaeError(f"study {study.name}: its cells were scored under different protocols {sorted(protocols)} "
                        f"or DCI modes {sorted(modes)}; a table must not mix them. Re-evaluate or split the study.")
    metrics = [m for m in METRICS if any(m in r.values for r in rows.values())]
    return Report(study.name, protocols.pop() if protocols else study.eval.get("protocol", "dlib"),
                  modes.pop() if modes else study.eval.get("dci", "exact"), metrics, list(study.datasets), methods,
                  rows, missing=missing)


def load_reference(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FdaeError(f"reference file {path} not found; give a YAML file of quoted rows (see `fdae study report --help`)")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or "source" not in data or not isinstance(data.get("rows"), list):
        raise FdaeError(f"reference file {path}: expected `source:`, `protocol:` and a list of `rows:` "
                        "({method, dataset, metric: value, ...})")
    for i, row in enumerate(data["rows"]):
        if not isinstance(row, dict) or "method" not in row or "dataset" not in row:
            raise FdaeError(f"reference file {path}: row {i + 1} needs `method` and `dataset` (then metric: value)")
    return data


def _fmt(ms: tuple[float, float] | None) -> str:
    if ms is None:
        return "-"
    mean, std = ms
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def header_line(rep: Report) -> str:
    dci = "" if "dci" not in rep.metrics else f", DCI {rep.dci_mode}"
    return f"study {rep.study}: mean ± std over seeds (protocol {rep.protocol}{dci})"


def markdown(rep: Report) -> str:
    cols = [(d, m) for d in rep.datasets for m in rep.metrics]
    out = [f"**{header_line(rep)}**", "",
           "| method | " + " | ".join(f"{d} {LABELS[m]}" for d, m in cols) + " | seeds |",
           "|---|" + "---|" * len(cols) + "---|"]
    for method in rep.methods:
        seeds = sorted({len(v) for d in rep.datasets if (method, d) in rep.rows
                        for v in rep.rows[(method, d)].values.values()})
        cells = [_fmt(rep.rows[(method, d)].mean_std(m)) if (method, d) in rep.rows else "-" for d, m in cols]
        out.append(f"| {method} | " + " | ".join(cells) + f" | {'/'.join(map(str, seeds))} |")
    if rep.missing:
        out += ["", f"({rep.missing} cells not finished yet: not in the table)"]
    if rep.quoted:
        q = rep.quoted
        out += ["", f"Quoted, not measured here: {q['source']} (protocol {q.get('protocol', '?')})", "",
                "| method (quoted) | dataset | " + " | ".join(LABELS.get(m, m) for m in rep.metrics) + " |",
                "|---|---|" + "---|" * len(rep.metrics)]
        for r in q["rows"]:
            vals = [f"{r[m]:.3f}" if isinstance(r.get(m), (int, float)) else "-" for m in rep.metrics]
            out.append(f"| {r['method']} | {r['dataset']} | " + " | ".join(vals) + " |")
    return "\n".join(out) + "\n"


def csv_text(rep: Report) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["kind", "method", "dataset", "protocol", "dci_mode", "metric", "mean", "std", "n_seeds", "values"])
    for (method, dataset), row in rep.rows.items():
        for m in rep.metrics:
            ms = row.mean_std(m)
            if ms is None:
                continue
            w.writerow(["measured", method, dataset, rep.protocol, rep.dci_mode, m, f"{ms[0]:.6f}",
                        "" if math.isnan(ms[1]) else f"{ms[1]:.6f}", len(row.values[m]),
                        " ".join(f"{v:.6f}" for v in row.values[m])])
    if rep.quoted:
        for r in rep.quoted["rows"]:
            for m in rep.metrics:
                if isinstance(r.get(m), (int, float)):
                    w.writerow([f"quoted: {rep.quoted['source']}", r["method"], r["dataset"],
                                rep.quoted.get("protocol", ""), "", m, f"{r[m]:.6f}", "", "", ""])
    return buf.getvalue()


def _tex(text: str) -> str:
    return text.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&").replace("#", r"\#")


def latex(rep: Report) -> str:
    cols = [(d, m) for d in rep.datasets for m in rep.metrics]
    spec = "l" + "c" * len(cols)
    lines = [r"% " + header_line(rep), r"\begin{tabular}{" + spec + "}", r"\toprule",
             " & ".join(["Method"] + [rf"\multicolumn{{{len(rep.metrics)}}}{{c}}{{{_tex(d)}}}" for d in rep.datasets])
             + r" \\",
             " & ".join([""] + [LABELS[m] for _, m in cols]) + r" \\", r"\midrule"]
    for method in rep.methods:
        vals = []
        for d, m in cols:
            ms = rep.rows[(method, d)].mean_std(m) if (method, d) in rep.rows else None
            vals.append("-" if ms is None else (f"{ms[0]:.3f}" if math.isnan(ms[1]) else
                                                 rf"{ms[0]:.3f} $\pm$ {ms[1]:.3f}"))
        lines.append(" & ".join([_tex(method)] + vals) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if rep.quoted:  # a table of its own: published numbers never sit in the measured columns
        q = rep.quoted
        lines += ["", rf"% Quoted, not measured here: {_tex(q['source'])} (protocol {_tex(str(q.get('protocol', '?')))})",
                  r"\begin{tabular}{ll" + "c" * len(rep.metrics) + "}", r"\toprule",
                  " & ".join(["Method (quoted)", "Dataset"] + [LABELS[m] for m in rep.metrics]) + r" \\",
                  r"\midrule"]
        for r in q["rows"]:
            vals = [f"{r[m]:.3f}" if isinstance(r.get(m), (int, float)) else "-" for m in rep.metrics]
            lines.append(" & ".join([_tex(str(r["method"])), _tex(str(r["dataset"]))] + vals) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def plot(rep: Report, path: str | Path) -> None:
    """One panel per metric: per dataset, the methods side by side, each seed a point,
    the mean a horizontal bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rep.metrics), figsize=(4.5 * len(rep.metrics), 4.2), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.8 / max(1, len(rep.methods))
    for ax, m in zip(axes[0], rep.metrics):
        for i, method in enumerate(rep.methods):
            for j, d in enumerate(rep.datasets):
                row = rep.rows.get((method, d))
                if row is None or m not in row.values:
                    continue
                x = j - 0.4 + width * (i + 0.5)
                vals = row.values[m]
                ax.scatter([x] * len(vals), vals, s=14, color=colours[i % len(colours)],
                           label=method if j == 0 else None, zorder=3)
                ax.hlines(np.mean(vals), x - width * 0.4, x + width * 0.4, color=colours[i % len(colours)], lw=2)
        ax.set_xticks(range(len(rep.datasets)), rep.datasets)
        ax.set_title(LABELS[m])
        ax.set_ylim(-0.02, 1.02)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(header_line(rep) + " (points: seeds, bars: means)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(study: Study, out_dir: str | Path | None = None, reference: str | Path | None = None) -> dict:
    rep = collect(study)
    if reference:
        rep.quoted = load_reference(reference)
    out = Path(out_dir) if out_dir else study.out / "report"
    out.mkdir(parents=True, exist_ok=True)
    files = {"md": out / "table.md", "csv": out / "table.csv", "tex": out / "table.tex"}
    files["md"].write_text(markdown(rep))
    files["csv"].write_text(csv_text(rep))
    files["tex"].write_text(latex(rep))
    if rep.rows:
        files["png"] = out / "scores.png"
        plot(rep, files["png"])
    return {"report": rep, "files": files}
