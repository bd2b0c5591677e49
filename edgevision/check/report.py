"""Matrix reports: report.md, a self-contained report.html (plots embedded), junit.xml for CI systems."""

from __future__ import annotations

import base64
import html
import json
import shutil
from pathlib import Path
from xml.etree import ElementTree as ET

import cv2
import numpy as np

from edgevision.hardware import cpu_line
from edgevision.bundle import atomic_write_json, atomic_write_text


def _plot_accuracy_vs_latency(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgevision.tasks import get_task

    fig, ax = plt.subplots(figsize=(8, 4.2))
    targets = sorted({r["target"] for r in rows})
    colours = {t: plt.cm.tab10(i) for i, t in enumerate(targets)}
    for r in rows:
        delta = r["report"]["metrics"].get("delta", {}).get(r["metric"])
        if delta is None:
            continue
        ms = r["bench"]["latency"]["artifact"]["median_ms"]
        marker = get_task(r["report"]["bundle"]["task"]).plot_marker if "task" in r["report"]["bundle"] else "o"
        ax.scatter(ms, delta, color=colours[r["target"]], marker=marker, s=50)
        ax.annotate(f"{r['model']} {r['precision']}", (ms, delta), fontsize=7, xytext=(4, 3), textcoords="offset points")
    for t, c in colours.items():
        ax.scatter([], [], color=c, label=t)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("artifact latency, median ms (log)")
    ax.set_ylabel("primary metric delta vs FP32 (points)")
    ax.set_title("accuracy vs latency per target")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _overlay_worst(row: dict, path: Path) -> bool:
    """Reference (left) and artifact (right) on the image where they disagree most."""
    from edgevision.bundle import load_bundle
    from edgevision.check.reference import reference_runner
    from edgevision.data.synthetic import SceneSpec, render_scene
    from edgevision.models.registry import bundle_scene_size, get_variant
    from edgevision.pipeline.render import draw_result
    from edgevision.predictor import Predictor

    worst = row["report"].get("worst_images") or []
    if not worst or not worst[0]["image"].startswith("scene-"):
        return False
    bundle = load_bundle(row["bundle"])
    seed = int(worst[0]["image"].split("-", 1)[1])
    variant = get_variant(bundle.meta.model)
    s = bundle_scene_size(bundle.meta)
    image = render_scene(seed, SceneSpec(size=(s, s), grid=max(1, s // variant.stride))).image
    art = Predictor(bundle)
    ref = Predictor(bundle, runner=reference_runner(bundle))
    panels = []
    for name, p in (("FP32 reference", ref), (f"{bundle.meta.precision} artifact", art)):
        canvas = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        draw_result(canvas, p.predict(image), p.labels)
        canvas = cv2.resize(canvas, (320, 320), interpolation=cv2.INTER_NEAREST)
        cv2.putText(canvas, name, (6, 314), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        panels.append(canvas)
    cv2.imwrite(str(path), np.hstack(panels))
    return True


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" style="max-width:100%">'


def _fmt(v) -> str:
    return "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))


def write_reports(report_dir: Path, rows: list[dict], summary: dict) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    images: list[tuple[str, Path]] = []
    acc_plot = report_dir / "accuracy_vs_latency.png"
    _plot_accuracy_vs_latency(rows, acc_plot)
    images.append(("Accuracy vs latency per target", acc_plot))
    for r in rows:
        stem = f"{r['model']}-{r['target']}-{r['precision']}"
        layers = r["report"].get("per_layer")
        if layers and Path(layers["plot"]).is_file():
            dst = report_dir / f"per_layer-{stem}.png"
            shutil.copyfile(layers["plot"], dst)
            images.append((f"Per-layer SQNR along the network: {stem}", dst))
        overlay = report_dir / f"worst-{stem}.png"
        if r["precision"] != "fp32" and _overlay_worst(r, overlay):
            images.append((f"Largest disagreement, {stem}: {r['report']['worst_images'][0]['image']}", overlay))

    header = ["model", "target", "precision", "metric", "reference", "artifact", "delta", "agreement", "latency ms",
              "speed-up", "result"]
    table = []
    for r in rows:
        rep, m = r["report"], r["report"]["metrics"]
        lat = r["bench"]["latency"]["artifact"]["median_ms"]
        table.append([r["model"], r["profile"], r["precision"], r["metric"],
                      _fmt(m.get("reference", {}).get(r["metric"])), _fmt(m.get("artifact", {}).get(r["metric"])),
                      _fmt(m.get("delta", {}).get(r["metric"])),
                      " ".join(f"{v:.1f}" for v in rep["agreement"].values() if v is not None),
                      f"{lat:.2f}", f"{r['bench']['ratios'].get('speedup_vs_pytorch', 0):.1f}x",
                      "pass" if rep["passed"] else "FAIL"])
    failures = [(r, f) for r in rows for f in r["report"]["failures"]]

    cpu = cpu_line(summary.get("cpu"))
    md = ["# edgevision regression report", "",
          f"{summary['cells']} cells: {summary['passed']} passed, {summary['failed']} failed; "
          f"{summary['exported']} bundles exported, {summary['reused']} reused.", "", f"Machine: {cpu}", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(row) + " |" for row in table]
    if failures:
        md += ["", "## Failures", ""] + [f"- {r['model']} {r['profile']} {r['precision']}: {f['message']}"
                                         for r, f in failures]
    md += ["", "## Plots", ""] + [f"![{alt}]({p.name})" for alt, p in images]
    atomic_write_text(report_dir / "report.md", "\n".join(md) + "\n")

    rows_html = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table)
    fail_html = "".join(f"<li>{html.escape(r['model'])} {html.escape(r['profile'])} {r['precision']}: "
                        f"{html.escape(f['message'])}</li>" for r, f in failures)
    figs = "".join(f"<figure>{_img_tag(p, alt)}<figcaption>{html.escape(alt)}</figcaption></figure>"
                   for alt, p in images)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>edgevision regression report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}figure{{margin:1.5em 0}}</style></head><body>
<h1>edgevision regression report</h1>
<p>{summary['cells']} cells: {summary['passed']} passed, {summary['failed']} failed;
{summary['exported']} bundles exported, {summary['reused']} reused.</p>
<p>Machine: {html.escape(cpu)}</p>
<table><tr>{''.join(f'<th>{h}</th>' for h in header)}</tr>{rows_html}</table>
{'<h2>Failures</h2><ul>' + fail_html + '</ul>' if failures else ''}
<h2>Plots</h2>{figs}</body></html>"""
    atomic_write_text(report_dir / "report.html", page)

    suite = ET.Element("testsuite", name="edgevision-matrix", tests=str(len(rows)),
                       failures=str(sum(not r["report"]["passed"] for r in rows)))
    for r in rows:
        case = ET.SubElement(suite, "testcase", classname=f"edgevision.{r['model']}",
                             name=f"{r['profile']}-{r['precision']}",
                             time=f"{r['bench']['latency']['artifact']['median_ms'] / 1000:.4f}")
        for f in r["report"]["failures"]:
            ET.SubElement(case, "failure", message=f["message"], type="AccuracyRegression").text = \
                json.dumps(f, default=str)
    ET.indent(suite)
    atomic_write_text(report_dir / "junit.xml", ET.tostring(suite, encoding="unicode", xml_declaration=True))
    atomic_write_json(report_dir / "summary.json", {**summary, "rows": [
        {k: v for k, v in r.items() if k not in ("report", "bench")} | {"passed": r["report"]["passed"]}
        for r in rows]})
