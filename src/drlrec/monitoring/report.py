"""A monitored window on disk: report.html (self-contained), report.json and decision.txt."""

from __future__ import annotations

import html
import json
from pathlib import Path

from drlrec.atomic import atomic_path, write_json, write_text
from drlrec.monitoring.columns import MONITORED_COLUMNS
from drlrec.monitoring.drift import MonitorResult, MonitorRun


def summary_html(result: MonitorResult) -> str:
    """A static HTML block (no script needed to show it): the decision and the per-column drift table."""
    esc = html.escape
    color = {"drift": "#b42318", "no drift": "#067647"}.get(result.status, "#555")
    rows = []
    for name in MONITORED_COLUMNS:
        c = result.columns.get(name)
        if c is None:
            continue
        mark = "DRIFT" if c["drifted"] else "ok"
        style = ' style="background:#fee4e2"' if c["drifted"] else ""
        rows.append(
            f"<tr{style}><td>{esc(name)}</td><td>{esc(str(c['method']))}</td>"
            f"<td>{c['score']:.4f}</td><td>{c['threshold']:g}</td><td><b>{mark}</b></td></tr>"
        )
    extra = []
    if result.prediction:
        p = result.prediction
        extra.append(
            f"<li>prediction drift (served vs interacted categories): {p['score']:.4f} "
            f"({'DRIFT' if p['drifted'] else 'ok'}, {p['method']}, threshold {p['threshold']:g})</li>"
        )
    if result.quality:
        q = result.quality
        hr = "n/a" if q["hr"] is None else f"{q['hr']:.4f}"
        extra.append(f"<li>online HR@{q['k']}: {hr} over {q['lists']} served lists (offline {q['offline_hr']})</li>")
    unknown = result.unknown_item_share
    if unknown:
        extra.append(
            f"<li>unknown items: {unknown['current']:.1%} of the window (reference {unknown['reference']:.1%})</li>"
        )
    return (
        '<div id="drlrec-drift-summary" style="font-family:sans-serif;margin:16px 24px;">'
        f"<h1>drlrec drift report: window {esc(result.window)}</h1>"
        f'<p style="font-size:20px;color:{color}"><b>{esc(result.decision_line())}</b></p>'
        f"<p>reference rows {result.rows['reference']:,}; current rows {result.rows['current']:,}</p>"
        f"<ul>{''.join(extra)}</ul>"
        '<table id="drift-table" border="1" cellpadding="4" style="border-collapse:collapse">'
        "<tr><th>column</th><th>method</th><th>score</th><th>threshold</th><th>drift</th></tr>"
        f"{''.join(rows)}</table></div>"
    )


def write_report(run: MonitorRun, out_root: str | Path) -> Path:
    """Write <out_root>/<window>/{report.html, report.json, decision.txt} (and prediction_drift.html when
    there is one); return the folder. report.html is Evidently's self-contained report with the summary
    and drift table above it."""
    result = run.result
    folder = Path(out_root) / result.window
    folder.mkdir(parents=True, exist_ok=True)
    summary = summary_html(result)
    if run.data_snapshot is not None:
        page = run.data_snapshot.get_html_str(as_iframe=False)
        marker = page.find("<body")
        cut = page.find(">", marker) + 1 if marker >= 0 else 0
        page = page[:cut] + summary + page[cut:]
    else:
        page = f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{summary}</body></html>"
    with atomic_path(folder / "report.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    if run.prediction_snapshot is not None:
        with atomic_path(folder / "prediction_drift.html") as tmp:
            tmp.write_text(run.prediction_snapshot.get_html_str(as_iframe=False), encoding="utf-8")
    payload = result.to_dict()
    if run.data_snapshot is not None:
        payload["evidently"] = json.loads(json.dumps(run.data_snapshot.dict(), default=str))
    write_json(folder / "report.json", payload)
    write_text(folder / "decision.txt", result.decision_line() + "\n")
    return folder
