"""The sweep's page: error maps as inline SVG, one self-contained file, nothing fetched.

Two pictures per quantity (the loss and ∂/∂x):

* *ulp error against the logit*, one chart per target, one line per implementation:
  the largest finite error in each eighth of a binade (the document's `profile`),
  on a log scale, the logit axis running by binade from −max to +max;
* a *logit × target heat map* per implementation: one cell per binade and target,
  red where an element is beyond its allowance and no expectation covers it, amber
  where every such element is a known mechanism, purple for errors, and for the
  rest a green whose depth is the share of the allowance used (largest ulp/allowance).
  Each cell's tooltip says how many elements, which counts, and the largest error
  with its logit.

The SVG is built here, the page around it in `sweep.html.j2` (Jinja2, autoescaped).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from harness.records import decode_float

TEMPLATE = "sweep.html.j2"
#: one colour per implementation line (cycled): distinguishable, print-safe
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22", "#393b79", "#637939", "#843c39", "#7b4173")
QUANTITY_NAMES = {"value": "loss", "grad.input": "∂L/∂x"}


def _fmt(v: Any, digits: int = 4) -> str:
    f = decode_float(v)
    if f is None:
        return "—"
    if f == 0 or not math.isfinite(f):
        return str(f)
    return f"{f:.{digits}g}"


# ---------------------------------------------------------------- the x axis ----

def _axis(doc: dict[str, Any], per_side: int = 7) -> tuple[list[int], list[tuple[int, str]]]:
    """Bins along the logit axis (NaN left out) and about `per_side` tick labels per sign,
    at binades whose exponent is a multiple of a round step (0 always labelled)."""
    bins = doc["bins"]
    order = [i for i, b in enumerate(bins) if b["class"] != "nan"]
    exps = [b["exponent"] for b in bins if b["exponent"] is not None]
    span = (max(exps) - min(exps)) if exps else 1
    step = next((s for s in (1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 256, 512)
                 if span / s <= per_side), 1024)
    lowest = min(exps) if exps else 0
    ticks = []
    for pos, i in enumerate(order):
        b = bins[i]
        e = b["exponent"]
        if b["class"] == "zero" and b["sign"] == "+":
            ticks.append((pos, "0"))
        elif e is not None and e % step == 0 and e >= lowest + step / 2:
            ticks.append((pos, f"{'−' if b['sign'] == '-' else ''}2^{e}"))
    return order, ticks


# ------------------------------------------------------------------- charts ----

W, H, ML, MR, MT, MB = 1200, 300, 56, 12, 10, 34
POINTS = 800  # at most, per line


def _series(doc: dict[str, Any], q: str, t: int, impls: list[dict[str, Any]],
            slots: list[tuple[int, int]]) -> list[tuple[list[int], list[tuple[int, float]]]]:
    """Each distinct line (points: slot, finite ulp) with the implementations drawing it:
    implementations with the same numbers everywhere share one path. Slots are taken
    in groups of `step` (the largest of each), so a line has no more points than the
    chart has pixels to show them."""
    step = max(1, math.ceil(len(slots) / POINTS))
    lines: dict[tuple, list[int]] = {}
    for n, d in enumerate(impls):
        prof = d["quantities"][q]["targets"][t]["profile"]
        pts = []
        for k0 in range(0, len(slots), step):
            vals = [decode_float(prof[c]) for _, c in slots[k0:k0 + step]]
            vals = [f for f in vals if f is not None and math.isfinite(f)]
            if vals:
                pts.append((k0 // step, max(vals)))
        lines.setdefault(tuple(pts), []).append(n)
    return [(owners, list(pts)) for pts, owners in lines.items()]


def chart(doc: dict[str, Any], q: str, t: int, impls: list[dict[str, Any]]) -> Markup:
    """Largest ulp error per eighth of a binade, one line per implementation."""
    order, ticks = _axis(doc)
    per = doc["profile_per_bin"]
    bins = doc["bins"]
    # x position of each profile cell: finite binades get `per` slots, the rest one
    slots: list[tuple[int, int]] = []  # (bin, cell index)
    for i in order:
        n = per if bins[i]["exponent"] is not None else 1
        slots.extend((i, i * per + k) for k in range(n))
    step = max(1, math.ceil(len(slots) / POINTS))
    nx = max(1, (len(slots) - 1) // step)
    first_slot: dict[int, float] = {}
    for k, (i, _) in enumerate(slots):
        first_slot.setdefault(i, k / step)
    series = _series(doc, q, t, impls, slots)
    top = max([1.0] + [v for _, pts in series for _, v in pts])
    lo, hi = -2.0, max(1.0, math.ceil(math.log10(top)))

    def y(v: float) -> float:
        lv = lo if v <= 10 ** lo else math.log10(v)
        return MT + (H - MT - MB) * (1 - (lv - lo) / (hi - lo))

    def x(k: float) -> float:
        return ML + (W - ML - MR) * k / nx

    lines = []
    for owners, pts in series:
        if not pts:
            continue
        colour = PALETTE[owners[0] % len(PALETTE)]
        path, prev, prev_y = [], None, None
        for k, v in pts:
            yy = round(y(v), 1)
            if prev is not None and k == prev + 1:
                path.append(f"H{x(k):.0f}" if yy == prev_y else f"L{x(k):.0f} {yy}")
            else:
                path.append(f"M{x(k):.0f} {yy}")
            prev, prev_y = k, yy
        names = ", ".join(f"{impls[n]['backend']}/{impls[n]['implementation']}" for n in owners)
        lines.append(f'<path class="ln" data-impls="{" ".join(map(str, owners))}" '
                     f'd="{"".join(path)}" stroke="{colour}"><title>{escape(names)}</title>'
                     "</path>")
    grid = []
    for e in range(int(lo), int(hi) + 1):
        yy = y(10.0 ** e)
        grid.append(f'<line x1="{ML}" x2="{W - MR}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid"/>'
                    f'<text x="{ML - 4}" y="{yy + 4:.1f}" class="ylab">1e{e}</text>')
    for pos, label in ticks:
        xx = x(first_slot[order[pos]])
        grid.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{MT}" y2="{H - MB}" class="grid"/>'
                    f'<text x="{xx:.1f}" y="{H - MB + 14}" class="xlab">{escape(label)}</text>')
    return Markup(f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" '
                  f'aria-label="largest ulp error against the logit">{"".join(grid)}'
                  f'{"".join(lines)}<text x="{ML}" y="{H - 4}" class="axis">logit x by binade '
                  f'(ulp errors below 1e{int(lo)}, 0 included, drawn at the floor)</text></svg>')


# ---------------------------------------------------------------- heat maps ----

HEAT_FIELDS = ("elements", "unexpected", "known", "errors", "special", "max_ulp",
               "max_ulp_logit", "max_ratio")


def _cell_class(b: dict[str, Any], i: int) -> tuple[str, int]:
    """The cell's colour class and, for a pass, how deep (0..9: the share of the allowance)."""
    if b["elements"][i] == 0:
        return "none", 0
    if b["unexpected"][i] or b["errors_unexpected"][i]:
        return "fail", 0
    if b["errors"][i]:
        return "error", 0
    if b["known"][i]:
        return "known", 0
    if b["unsupported"][i] == b["elements"][i]:
        return "unsupported", 0
    r = decode_float(b["max_ratio"][i]) or 0.0
    return "pass", min(9, max(0, int(r * 10)))


def heatmap(doc: dict[str, Any], d: dict[str, Any], q: str, index: int) -> tuple[Markup, list]:
    """Binade × target for one implementation and quantity (module docstring), and the
    numbers its tooltips show (row by row, cell by cell: HEAT_FIELDS)."""
    order, ticks = _axis(doc)
    order = [*order, 0]  # NaN last
    targets = d["quantities"][q]["targets"]
    cw = max(2.0, min(12.0, 1150 / len(order)))
    ch, left, top = 13, 150, 4
    width = left + cw * len(order) + 20
    height = top + ch * len(targets) + 18
    out, data = [], []
    for r, td in enumerate(targets):
        b = td["bins"]
        yy = top + r * ch
        out.append(f'<text x="{left - 4}" y="{yy + ch - 3}" class="ylab">y = '
                   f'{escape(td["label"])}</text>')
        runs: dict[tuple[str, int], list[str]] = {}
        k = 0
        while k < len(order):
            key = _cell_class(b, order[k])
            end = k + 1
            while end < len(order) and _cell_class(b, order[end]) == key:
                end += 1
            runs.setdefault(key, []).append(
                f"M{left + k * cw:.1f} {yy}h{(end - k) * cw:.1f}v{ch - 1}h{-(end - k) * cw:.1f}z")
            k = end
        for (cls, depth), parts in runs.items():
            style = f' style="fill-opacity:{0.15 + 0.85 * depth / 9:.2f}"' if cls == "pass" else ""
            out.append(f'<path class="c-{cls}"{style} d="{"".join(parts)}"/>')
        data.append([[_compact(b[f][i], 6 if f == "max_ulp_logit" else 4) for f in HEAT_FIELDS]
                     for i in order])
    for pos, label in ticks:
        xx = left + pos * cw + cw / 2
        out.append(f'<text x="{xx:.1f}" y="{height - 4}" class="xlab">{escape(label)}</text>')
    out.append(f'<text x="{left + (len(order) - 0.5) * cw:.1f}" y="{height - 4}" '
               f'class="xlab">NaN</text>')
    svg = Markup(f'<svg class="heat" data-map="{index}" data-left="{left}" data-top="{top}" '
                 f'data-cw="{cw:.4f}" data-ch="{ch}" viewBox="0 0 {width:.0f} {height}" '
                 f'width="{width:.0f}" height="{height}" role="img" aria-label="binade by '
                 f'target">{"".join(out)}</svg>')
    return svg, data


def _compact(v: Any, digits: int) -> Any:
    if isinstance(v, float) and math.isfinite(v) and v != 0.0:
        return float(f"{v:.{digits}g}")
    return v


# --------------------------------------------------------------------- page ----

def render(doc: dict[str, Any], report_link: str | None = None) -> str:
    """The page for a sweep document."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(Path(__file__).parent)),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["num"] = _fmt
    impls = [d for d in doc["implementations"] if d["status"] != "unsupported"]
    targets = doc["plan"]["target_labels"]
    charts = {q: [chart(doc, q, t, impls) for t in range(len(targets))]
              for q in doc["plan"]["quantities"]}
    heat, maps, tables = [], [], []
    seen: dict[str, int] = {}  # implementations that agree everywhere share one table
    for d in impls:
        svgs = {}
        for q in doc["plan"]["quantities"]:
            svg, data = heatmap(doc, d, q, len(maps))
            svgs[q] = svg
            key = json.dumps(data)
            if key not in seen:
                seen[key] = len(tables)
                tables.append(data)
            maps.append({"name": f"{d['backend']}/{d['implementation']} {d['device']}",
                         "q": QUANTITY_NAMES.get(q, q),
                         "targets": [t["label"] for t in d["quantities"][q]["targets"]],
                         "cells": seen[key]})
        heat.append((d, svgs))
    order, _ = _axis(doc)
    heat_data = {"bins": [doc["bins"][i]["label"] for i in [*order, 0]],
                 "fields": list(HEAT_FIELDS), "maps": maps, "tables": tables}
    legend = [(PALETTE[n % len(PALETTE)], f"{d['backend']}/{d['implementation']} {d['device']}")
              for n, d in enumerate(impls)]
    return env.get_template(TEMPLATE).render(
        doc=doc, charts=charts, heat=heat, legend=legend, targets=targets,
        quantity_names=QUANTITY_NAMES, report_link=report_link,
        heat_data=Markup(json.dumps(heat_data, separators=(",", ":"), allow_nan=False)
                         .replace("<", "\\u003c").replace(">", "\\u003e")
                         .replace("&", "\\u0026")))


def write(doc: dict[str, Any], path: Path) -> None:
    """Write the page; link the main report when it lies beside it."""
    path = Path(path)
    link = "report.html" if (path.parent / "report.html").exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(doc, link), encoding="utf-8")
    tmp.replace(path)
