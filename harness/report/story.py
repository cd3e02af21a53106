"""The sigmoid-then-BCE story, told with a run's own numbers (report.json's
`findings.story`).

Sigmoid then BCE is mathematically the same loss as the logits form, but 1 − sigmoid(x)
rounds to 0 (or sigmoid(x) to 1) once |x| is large, and the log of it is then −∞ or
clamped. Which logits, how many ulps and which checks fail are read from the run's
records, never written in advance: a run whose naive forms pass says so.

Every figure is rounded as the page shows it (harness.report.figures.compact); the
headline sentences are worked out from the unrounded numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from harness.records import NUMERIC_CHECKS
from harness.report.figures import DTYPE_ORDER, compact, fmt, num, ordered

#: sigmoid-then-BCE implementations (README.md's "sigmoid-then-BCE twin, unstable by
#: design") and, per backend, the logits forms to hold them against, preferred first.
NAIVE_IMPLS: dict[str, tuple[str, ...]] = {
    "numpy": ("naive",), "torch": ("sigmoid+bce",), "tensorflow": ("keras-probs",)}
LOGITS_IMPLS: dict[str, tuple[str, ...]] = {
    "numpy": ("formula",), "torch": ("functional", "module"),
    "tensorflow": ("keras", "sigmoid"), "jax": ("jax.nn", "optax")}


def is_naive(backend: str, implementation: str) -> bool:
    """Whether an implementation applies sigmoid first and takes logs of probabilities.

    Named ones come from the shipped backends; a plugin's is recognised by its name
    ("naive", "sigmoid+…", "…probs"), since that is how people label such a twin.
    """
    if implementation in NAIVE_IMPLS.get(backend, ()):
        return True
    low = implementation.lower()
    return low == "naive" or low.startswith("sigmoid+") or low.endswith("probs")


def profile_facts(prof: dict[str, Any]) -> dict[str, Any]:
    """Where along a logit sweep a result leaves its allowance, and how far (unrounded).

    Starting from the swept logit nearest 0, walk outwards to the first point on
    each side whose error exceeds the allowance; also find where the error first
    becomes infinite (a non-finite result where the exact loss is finite).
    """
    xs = [num(v) for v in prof.get("x") or []]
    us = [num(v) for v in prof.get("ulp") or []]
    al = [num(v) for v in prof.get("allowance") or []]
    pts = sorted((x, u, a) for x, u, a in zip(xs, us, al, strict=False)
                 if x is not None and u is not None and math.isfinite(x))
    if not pts:
        return {}

    def bad(u: float, a: float | None) -> bool:
        return math.isnan(u) or (a is not None and not math.isnan(a) and u > a)

    start = min(range(len(pts)), key=lambda i: abs(pts[i][0]))
    hi = next((i for i in range(start, len(pts)) if bad(pts[i][1], pts[i][2])), None)
    lo = next((i for i in range(start, -1, -1) if bad(pts[i][1], pts[i][2])), None)
    finite = [p for p in pts if math.isfinite(p[1])]
    nonfinite = [p[0] for p in pts if not math.isfinite(p[1])]
    breaks = [p for p in (pts[hi] if hi is not None else None,
                          pts[lo] if lo is not None else None) if p is not None]
    return {
        "n": len(pts), "max_ulp": max(p[1] for p in pts),
        "max_finite": max(finite, key=lambda p: p[1]) if finite else None,
        "ok_lo": pts[lo + 1][0] if lo is not None else pts[0][0],
        "ok_hi": pts[hi - 1][0] if hi is not None else pts[-1][0],
        "first_out": min(breaks, key=lambda p: abs(p[0])) if breaks else None,
        "inf_abs": min((abs(x) for x in nonfinite), default=None),
        "inf_hi": min((x for x in nonfinite if x > 0), default=None),
        "inf_lo": max((x for x in nonfinite if x < 0), default=None),
        "bad": sum(1 for p in pts if bad(p[1], p[2])),
    }


def story(results: list[dict[str, Any]]) -> dict[str, Any]:
    """`findings.story`: each naive implementation of the run beside its backend's logits
    form (`pairs`), and the `headline` sentences. docs/report.md lists the fields."""
    impls: dict[str, set[str]] = defaultdict(set)
    for r in results:
        impls[r["backend"]].add(r["implementation"])
    pairs = []
    for backend in sorted(impls, key=lambda b: ([*NAIVE_IMPLS, b].index(b), b)):
        naive = sorted(i for i in impls[backend] if is_naive(backend, i))
        preferred = [i for i in LOGITS_IMPLS.get(backend, ()) if i in impls[backend]]
        others = sorted(i for i in impls[backend] if not is_naive(backend, i))
        logits = (preferred or others or [None])[0]
        for nv in naive:
            pairs.append(_pair(results, backend, nv, logits))
    if not pairs:
        return {"headline": [], "pairs": []}
    return {"headline": _headline(pairs), "pairs": [_figures(p) for p in pairs]}


def _pair(results: list[dict[str, Any]], backend: str, naive: str,
          logits: str | None) -> dict[str, Any]:
    """Counts, sweep facts and the most telling failure of one naive/logits pair."""
    mine = [r for r in results if r["backend"] == backend
            and r["implementation"] in (naive, logits) and r["check"] in NUMERIC_CHECKS]
    per_dtype = {}
    for dt in ordered({r["dtype"] for r in mine}, DTYPE_ORDER):
        row: dict[str, Any] = {}
        for side, impl in (("naive", naive), ("logits", logits)):
            rs = [r for r in mine if r["dtype"] == dt and r["implementation"] == impl
                  and r["status"] in ("pass", "fail", "known", "fixed")]
            ulps = [u for u in (num(r.get("max_ulp")) for r in rs) if u is not None]
            row[side] = {"checks": len(rs),
                         "outside": sum(r["status"] in ("fail", "known") for r in rs),
                         "max_ulp": max(ulps) if ulps else None}
        per_dtype[dt] = row

    prof = [r for r in mine if r.get("profile") and r["check"] == "value"]
    sweeps = []
    for r in prof:
        if r["implementation"] != naive:
            continue
        facts = profile_facts(r["profile"])
        partner = next((p for p in prof if p["implementation"] == logits
                        and p["dtype"] == r["dtype"] and p["case"] == r["case"]
                        and p["device"] == r["device"]), None)
        if facts:
            sweeps.append({"case": r["case"], "dtype": r["dtype"], "device": r["device"],
                           "facts": facts,
                           "partner": profile_facts(partner["profile"]) if partner else {}})

    # the most telling failure: at one element with finite inputs and a finite exact
    # value, where the logits form passes the same check; the largest error wins
    def finite_inputs(r: dict[str, Any]) -> bool:
        w = r.get("worst") or {}
        vals = [num((w.get("inputs") or {}).get(k)) for k in ("input", "target")]
        e = num(w.get("expected"))
        return all(v is not None and math.isfinite(v) for v in vals) and e is not None \
            and math.isfinite(e)

    by_key = {(p["dtype"], p["case"], p.get("reduction"), p["check"], p["device"]): p
              for p in mine if p["implementation"] == logits}

    def partner_of(r: dict[str, Any]) -> dict[str, Any] | None:
        return by_key.get((r["dtype"], r["case"], r.get("reduction"), r["check"], r["device"]))

    bad = [r for r in mine if r["implementation"] == naive and r["status"] in ("fail", "known")
           and finite_inputs(r)]
    example = None
    if bad:
        pref = ("float16", "bfloat16", "float64", "float32")  # the most used dtype wins ties

        def telling(r: dict[str, Any]) -> tuple[bool, float, bool, int, float]:
            p = partner_of(r)
            x = num(r["worst"]["inputs"]["input"]) or 0.0
            return (p is not None and p["status"] == "pass", num(r["worst"].get("ulp")) or 0.0,
                    r["check"] == "value", pref.index(r["dtype"]) if r["dtype"] in pref else -1,
                    -abs(x))

        r = max(bad, key=telling)
        w = r["worst"]
        partner = partner_of(r)
        example = {"check": r["check"], "dtype": r["dtype"], "case": r["case"],
                   "reduction": r.get("reduction", ""),
                   "x": compact(w["inputs"].get("input"), 6),
                   "y": compact(w["inputs"].get("target"), 6),
                   "got": compact(w.get("got"), 8), "expected": compact(w.get("expected"), 8),
                   "ulp": compact(w.get("ulp"), 3),
                   "logits_status": partner["status"] if partner else None,
                   "logits_max_ulp": compact(partner.get("max_ulp"), 3) if partner else None}
    return {"backend": backend, "naive": naive, "logits": logits, "per_dtype": per_dtype,
            "sweeps": sweeps, "example": example}


def _figures(p: dict[str, Any]) -> dict[str, Any]:
    """A pair as `findings.story.pairs` holds it: figures rounded as the page shows them."""
    per_dtype = {dt: {side: {**c, "max_ulp": compact(c["max_ulp"], 3)}
                      for side, c in row.items()} for dt, row in p["per_dtype"].items()}
    sweeps = []
    for s in p["sweeps"]:
        f, partner = s["facts"], s["partner"]
        fo, mf = f["first_out"], f["max_finite"]
        sweeps.append({
            "case": s["case"], "dtype": s["dtype"], "device": s["device"],
            "points": f["n"], "outside": f["bad"], "max_ulp": compact(f["max_ulp"], 3),
            "within": [compact(f["ok_lo"], 4), compact(f["ok_hi"], 4)],
            "first_out": None if fo is None else {"x": compact(fo[0], 4),
                                                  "ulp": compact(fo[1], 3),
                                                  "allowance": compact(fo[2], 3)},
            "inf_hi": compact(f["inf_hi"], 4), "inf_lo": compact(f["inf_lo"], 4),
            "max_finite_ulp": None if mf is None else compact(mf[1], 3),
            "logits_max_ulp": compact(partner["max_ulp"], 3) if partner else None})
    return {"backend": p["backend"], "naive": p["naive"], "logits": p["logits"],
            "per_dtype": per_dtype, "sweeps": sweeps, "example": p["example"]}


def _headline(pairs: list[dict[str, Any]]) -> list[str]:
    """Two or three sentences with the run's own numbers."""
    def total(side: str, what: str) -> int:
        return sum(row[side][what] for p in pairs for row in p["per_dtype"].values())

    names = ", ".join(f"{p['backend']}/{p['naive']}" for p in pairs)
    twins = ", ".join(sorted({f"{p['backend']}/{p['logits']}" for p in pairs if p["logits"]}))
    bad, n = total("naive", "outside"), total("naive", "checks")
    lbad, ln = total("logits", "outside"), total("logits", "checks")
    out = [f"The sigmoid-then-BCE forms in this run ({names}) are outside the allowance in "
           f"{bad} of {n} numeric checks"
           + (f"; their logits-form twins ({twins}) in {lbad} of {ln}." if twins else ".")]
    first_out: dict[str, float] = {}
    inf_at: dict[str, float] = {}
    partner_max: list[float] = []
    for p in pairs:
        for s in p["sweeps"]:
            f = s["facts"]
            if f["first_out"] is not None:
                x = abs(f["first_out"][0])
                first_out[s["dtype"]] = min(first_out.get(s["dtype"], x), x)
            if f["inf_abs"] is not None:
                inf_at[s["dtype"]] = min(inf_at.get(s["dtype"], f["inf_abs"]), f["inf_abs"])
            if s["partner"]:
                partner_max.append(s["partner"]["max_ulp"])
    if first_out:
        order = ordered(set(first_out) | set(inf_at), DTYPE_ORDER)
        leave = ", ".join(f"|x| = {fmt(first_out[d], 4)} in {d}" for d in order if d in first_out)
        s = f"Along the logit sweeps they leave the allowance from {leave}"
        if inf_at:
            s += ("; their error becomes infinite (a NaN, an infinity or a clamped log where the "
                  "exact loss is finite) from " + ", ".join(
                      f"|x| = {fmt(inf_at[d], 4)} ({d})" for d in order if d in inf_at))
        if partner_max:
            s += (f". On the same sweeps the logits forms stay within {fmt(max(partner_max))} "
                  "ulp" if all(math.isfinite(u) for u in partner_max) else
                  ". On the same sweeps some logits forms fail too (see the plots)")
        out.append(s + ".")
    elif any(p["sweeps"] for p in pairs):
        out.append("Along the logit sweeps they stay within the allowance everywhere in this run.")
    else:
        out.append("This run has no logit sweep (a case tagged `sweep`, reduction none) to say "
                   "where along the logits the naive form breaks.")
    return out
