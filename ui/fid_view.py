"""How the FID tab shows its results: the summary line, the history table and the plotted metric.

Plain functions of the history records (``ui.history``), without Gradio. Records written before
KID and the other metrics existed show a dash in those columns and are left out of their plots.
"""

from __future__ import annotations

MISSING = "—"
VALUE = "value"  # the plotted column, whatever the metric
PLOTTED = {"FID": "fid", "KID": "kid", "precision": "precision", "recall": "recall",
           "class agreement (%)": "agreement"}  # label -> record key
HEADERS = ["time", "model", "kind", "steps", "guidance", "reference", "N", "FID", "KID ± std", "precision",
           "recall", "class agreement % (judge top-1)", "seconds", "note"]
WIDTHS = ["8%", "9%", "8%", "4%", "5%", "8%", "4%", "5%", "10%", "6%", "5%", "9%", "5%", "14%"]


def _num(value, fmt: str) -> str:
    return MISSING if value is None else format(value, fmt)


def kid_text(record: dict) -> str:
    if record.get("kid") is None:
        return MISSING
    return f"{record['kid']:.4f} ± {record.get('kid_std') or 0.0:.4f}"


def agreement_text(record: dict) -> str:
    if record.get("agreement") is None:
        return MISSING
    judge = record.get("judge_top1")
    return f"{record['agreement']:.1f}" + (f" ({judge:.1f})" if judge is not None else "")


def summary(record: dict) -> str:
    """One line of every metric of a run, e.g. 'FID 41.20 · KID 0.0312 ± 0.0021 · precision ...'."""
    parts = [f"FID {record['fid']:.3f}"]
    if record.get("kid") is not None:
        parts.append(f"KID {kid_text(record)}")
    if record.get("precision") is not None:
        parts.append(f"precision {record['precision']:.3f} · recall {record['recall']:.3f}")
    if record.get("agreement") is not None:
        parts.append(f"class agreement {record['agreement']:.1f} % (judge's test top-1 {record['judge_top1']} %)")
    return " · ".join(parts) + f" — {record['model']}, {record['steps']} step(s), N={record['n']}"


def table(records: list[dict]):
    """The history as readable text columns (``HEADERS``), newest first."""
    import pandas as pd

    rows = [[r.get("time") or MISSING, r.get("model"), r.get("kind"), r.get("steps"), _num(r.get("guidance"), "g"),
             r.get("reference"), r.get("n"), _num(r.get("fid"), ".2f"), kid_text(r), _num(r.get("precision"), ".3f"),
             _num(r.get("recall"), ".3f"), agreement_text(r), _num(r.get("seconds"), ".0f"), r.get("note") or ""]
            for r in reversed(records)]
    return pd.DataFrame(rows, columns=HEADERS)


def plot_frame(records: list[dict], label: str):
    """(steps, model, value) of the runs that have metric ``label`` (a key of ``PLOTTED``). The value
    column keeps one name for every metric: Gradio's scatter plot selects its columns by the y name
    it was built with, so a renamed column would not reach the browser."""
    import pandas as pd

    key = PLOTTED[label]
    rows = [[r.get("steps"), r.get("model"), float(r[key])] for r in records if r.get(key) is not None]
    return pd.DataFrame(rows, columns=["steps", "model", VALUE])
