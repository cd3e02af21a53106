"""The sweep's parts without Dask: bit patterns and binades, the mirrored reference,
judging and tallying a shard, the document and its page."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness import reference
from harness.backends.numpy_backend import NumpyBackend
from harness.dtypes import FORMATS, numpy_dtype
from harness.protocol import Call, Result
from harness.sweep import exact, html, judging, shard, summary
from harness.sweep.engine import BackendJob, Outcome, Store
from harness.sweep.patterns import PROFILE, Bins, Space, runs, shards
from harness.sweep.plan import Plan, TargetError, default_shard, parse_targets
from harness.verdict import expectations as expect

# ------------------------------------------------------------------ patterns ----


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_every_bit_pattern_is_swept_once(dtype):
    space = Space(dtype)
    got = np.concatenate([space.patterns(s.lo, s.hi) for s in shards(space, 4096)])
    assert got.size == 65536 == space.logits
    assert np.unique(got).size == 65536
    x = space.logits_of(0, space.magnitudes)
    assert np.isnan(x).sum() == (2046 if dtype == "float16" else 254)
    assert (np.isinf(x)).sum() == 2 and (x == 0).sum() == 2
    fmt = FORMATS[dtype]
    sub = (np.abs(x) > 0) & (np.abs(x) < 2.0 ** fmt.emin)
    assert sub.sum() == 2 * (2 ** (fmt.precision - 1) - 1)


def test_shards_hold_both_signs_of_each_magnitude():
    space = Space("float32", stride=4099)
    for s in shards(space, 1000)[:3] + shards(space, 1000)[-2:]:
        x = space.logits_of(s.lo, s.hi)
        half = x.size // 2
        assert np.array_equal(x[half:], -x[:half], equal_nan=True)
        assert not np.signbit(x[:half]).any() and np.signbit(x[half:]).all()


def test_stride_and_limit_count_logits():
    assert Space("float32").logits == 2**32
    assert Space("float32", stride=65537).magnitudes == -(-(2**31) // 65537)
    assert Space("float32", limit=1001).logits == 1002
    assert Space("float16", stride=3, limit=10).logits == 10
    with pytest.raises(ValueError):
        Space("float16", stride=0)
    assert default_shard(65536) == 4096
    assert default_shard(2**32) == 2**21
    assert default_shard(2**20) % 2 == 0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_bins_and_cells_follow_the_value(dtype):
    bins = Bins(dtype)
    desc = bins.describe()
    assert len(desc) == len(bins)
    space = Space(dtype, stride=1 if dtype != "float32" else 65537)
    x = space.logits_of(0, space.magnitudes)
    idx, cell = bins.index(x), bins.cell(x)
    assert np.all(idx[np.isnan(x)] == 0) and desc[0]["class"] == "nan"
    ordinary = np.isfinite(x) & (x != 0)
    order = np.argsort(x[ordinary], kind="stable")
    assert np.all(np.diff(idx[ordinary][order]) >= 0)
    assert np.all(np.diff(cell[ordinary][order]) >= 0)
    assert np.all(cell // PROFILE == idx)
    for v in (1.0, 1.5, -3.0, 2.0 ** FORMATS[dtype].emin):
        d = desc[int(bins.index(np.array([v]))[0])]
        assert d["lo"] <= abs(v) < d["hi"] and d["sign"] == ("-" if v < 0 else "+")
    assert desc[bins.index(np.array([-0.0]))[0]]["label"] == "-0"
    assert desc[bins.index(np.array([np.inf]))[0]]["label"] == "+inf"
    tiny = FORMATS[dtype].tiny_ulp
    assert desc[bins.index(np.array([tiny]))[0]]["class"] == "subnormal"


def test_runs():
    starts, keys = runs(np.array([3, 3, 1, 1, 1, 0, 3]))
    assert starts.tolist() == [0, 2, 5, 6] and keys.tolist() == [3, 1, 0, 3]


# -------------------------------------------------------------------- targets ----

def test_targets_are_rounded_to_the_format_and_named_ends_resolved():
    values, labels = parse_targets("0,1,0.5,0.1,0.9,0+,1-", "float16")
    assert values[:3] == (0.0, 1.0, 0.5)
    assert values[3] == float(np.float16(0.1)) and labels[3].startswith("0.1 (≈")
    assert values[5] == 2.0**-24 and values[6] == 1 - 2.0**-11
    assert parse_targets("0x1p-3, 0.125", "float32") == ((0.125,), ("0x1p-3",))
    with pytest.raises(TargetError):
        parse_targets("zero", "float16")
    with pytest.raises(TargetError):
        parse_targets(" , ", "float16")


# ---------------------------------------------------- the mirrored reference ----

def _direct(x, y, w, p):
    r = reference.evaluate(x, np.full(x.shape, y), None if w is None else np.full(x.shape, w),
                           None if p is None else np.full(x.shape, p), reduction="none",
                           grads=("input",))
    return {q: (r[q].value, r[q].cond) for q in exact.QUANTITIES}


@pytest.mark.parametrize(("dtype", "targets", "weight"), [
    ("float16", (0.0, 1.0, 0.5), None),
    ("float16", (0.0, 0.5, 1.0), 3.0),
    ("bfloat16", (1.0, 0.0), None),
])
def test_mirrored_targets_equal_direct_evaluation_bit_for_bit(dtype, targets, weight):
    space = Space(dtype)
    x = space.logits_of(0, space.magnitudes)
    ref = exact.evaluate(x, targets, weight, None)
    assert len(ref["primary"]) == len(targets) - 1  # one pair
    for t, y in enumerate(targets):
        got, want = exact.for_target(ref, t), _direct(x, y, weight, None)
        for q in exact.QUANTITIES:
            assert np.array_equal(got[q][0], want[q][0], equal_nan=True), (t, q)
            assert np.array_equal(got[q][1], want[q][1], equal_nan=True), (t, q)


def test_mirrored_targets_on_float32_samples():
    rng = np.random.default_rng(7)
    mags = np.sort(rng.integers(0, 2**31, size=4096, dtype=np.int64)).astype(np.uint32)
    bits = np.concatenate([mags, mags | np.uint32(2**31)])
    with np.errstate(invalid="ignore"):
        x = bits.view(np.float32).astype(np.float64)
    ref = exact.evaluate(x, (0.0, 1.0), None, None)
    for t, y in enumerate((0.0, 1.0)):
        got, want = exact.for_target(ref, t), _direct(x, y, None, None)
        for q in exact.QUANTITIES:
            assert np.array_equal(got[q][0], want[q][0], equal_nan=True)
            assert np.array_equal(got[q][1], want[q][1], equal_nan=True)


def test_no_mirror_with_a_pos_weight():
    assert exact.mirror_of((0.0, 1.0, 0.5), 2.0) == [None, None, None]
    assert exact.mirror_of((0.0, 1.0, 0.5, 0.1, 0.9), None) == [None, 0, None, None, None]
    assert exact.mirror_of((0.25, 0.5, 0.75), None) == [None, None, None]
    assert exact.mirror_of((1.0, 0.5, 0.0), None) == [None, None, 0]


# ----------------------------------------------------- judging one shard ----

class Planted(NumpyBackend):
    """numpy's formula with a loss 1/16 too large wherever 2 <= x < 4 (64 ulps of float16)."""

    name = "planted"

    def implementations(self):
        return ["formula"]

    def run(self, call: Call) -> Result:
        r = super().run(call)
        x = np.asarray(call.input)
        v = np.asarray(r.value)
        bad = (x >= 2) & (x < 4)
        with np.errstate(over="ignore"):
            planted = v * np.asarray(1 + 2.0**-4, dtype=v.dtype)
        r.value = np.where(bad, planted, v).astype(v.dtype)
        return r


class RaisesOnNaN(NumpyBackend):
    name = "raises-on-nan"

    def implementations(self):
        return ["formula"]

    def run(self, call: Call) -> Result:
        if np.isnan(np.asarray(call.input)).any():
            raise ValueError("NaN logits are refused")
        return super().run(call)


def _plan(dtype="float16", targets="0,1,0.5", known=(), shipped=False, **kw):
    values, labels = parse_targets(targets, dtype)
    return Plan(dtype=dtype, targets=values, target_labels=labels, known=tuple(known),
                shipped=shipped, **kw)


def _compute(plan, cls, shard_index=None):
    space = plan.space
    out = []
    for s in shards(space, plan.shard_logits):
        if shard_index is not None and s.index != shard_index:
            continue
        ref = shard.reference_shard(plan, s)
        out.append((s, shard.compute(plan, f"plugin:tests.test_sweep:{cls}#{_name(cls)}",
                                     _name(cls), s, ref)))
    return out


def _name(cls):
    return globals()[cls].name


def _bin(dtype, v):
    return int(Bins(dtype).index(np.array([v]))[0])


def test_a_planted_bug_is_counted_in_its_binade_only(tmp_path):
    plan = _plan(shard_logits=16384, chunk=5000)
    done = _compute(plan, "Planted")
    nb = len(Bins("float16"))
    unexpected = np.zeros(nb, dtype=int)
    elements = np.zeros(nb, dtype=int)
    for _, rec in done:
        (impl,) = rec["implementations"]
        assert impl["errors"] == [] and impl["unsupported"] is None
        for t in impl["quantities"]["value"]:
            np.add.at(unexpected, t["bins"], t["unexpected"])
            np.add.at(elements, t["bins"], t["elements"])
        for t in impl["quantities"]["grad.input"]:
            assert sum(t["unexpected"]) == 0 and sum(t["known"]) == 0
    b = _bin("float16", 2.0)
    assert unexpected[b] == elements[b] == 3 * 1024  # every logit in [2, 4), each target
    assert unexpected.sum() == unexpected[b]
    assert elements.sum() == 3 * 65536
    worst = [w for _, rec in done for w in rec["implementations"][0]["worst"]["value"]]
    assert worst and all(2 <= w["logit"] < 4 for w in worst)
    assert all(w["ulp"] > w["allowance"] for w in worst)


def test_an_expectation_makes_the_planted_bug_known(tmp_path):
    known = tmp_path / "known.yaml"
    known.write_text("expectations:\n- backend: planted\n  check: value\n  kind: accuracy\n"
                     "  reason: planted for the test\n  where: input >= 2 and input < 4\n")
    plan = _plan(known=[str(known)], shard_logits=65536)
    ((_, rec),) = _compute(plan, "Planted")
    (impl,) = rec["implementations"]
    value = impl["quantities"]["value"]
    assert sum(sum(t["known"]) for t in value) == 3 * 1024
    assert sum(sum(t["unexpected"]) for t in value) == 0
    (entry,) = impl["expectations"].values()
    assert entry[0] == 3 * 1024  # failing covered; none passing in [2, 4)


def test_weight_and_pos_weight_reach_every_call_and_the_reference():
    plan = _plan(targets="0,0.5,1", shard_logits=65536, weight=0.5, pos_weight=3.0)
    assert exact.mirror_of(plan.targets, plan.pos_weight) == [None, None, None]
    ((_, rec),) = _compute(plan, "Planted")
    (impl,) = rec["implementations"]
    value, grad = impl["quantities"]["value"], impl["quantities"]["grad.input"]
    b = _bin("float16", 2.0)
    for t in value:  # the planted bug, and nothing else, with the weights on
        bad = dict(zip(t["bins"], t["unexpected"], strict=True))
        assert bad[b] == 1024 and sum(bad.values()) == 1024
    assert all(sum(t["unexpected"]) == 0 and sum(t["errors"]) == 0 for t in grad)


def test_a_raising_call_is_an_error_for_its_elements_only(tmp_path):
    plan = _plan(targets="0", shard_logits=65536)
    ((_, rec),) = _compute(plan, "RaisesOnNaN")
    (impl,) = rec["implementations"]
    (t,) = impl["quantities"]["value"]
    errors = dict(zip(t["bins"], t["errors_unexpected"], strict=True))
    assert errors[0] == 2046  # the NaN bin: NaN logits get calls of their own
    assert sum(t["errors_unexpected"]) == 2046
    assert "ValueError: NaN logits are refused" in impl["errors"]
    known = tmp_path / "known.yaml"
    known.write_text("expectations:\n- backend: raises-on-nan\n  kind: raises-on-valid-input\n"
                     "  reason: planted for the test\n  where: input nan\n")
    plan = _plan(targets="0", shard_logits=65536, known=[str(known)])
    ((_, rec),) = _compute(plan, "RaisesOnNaN")
    (t,) = rec["implementations"][0]["quantities"]["value"]
    assert sum(t["errors"]) == 2046 and sum(t["errors_unexpected"]) == 0


def test_tally_matches_a_plain_loop():
    rng = np.random.default_rng(3)
    space = Space("bfloat16", stride=7)
    x = space.logits_of(0, space.magnitudes)
    n = x.size
    el = judging.Elements(n)
    el.ulps = np.where(rng.random(n) < 0.05, np.inf, rng.random(n) * 10)
    el.ulps[rng.random(n) < 0.1] = judging.NOT_MEASURED
    el.code = rng.integers(0, 6, size=n).astype(np.uint8)
    el.ratio = rng.random(n)
    bins = Bins("bfloat16")
    got = judging.tally(el, judging.Layout.of(x, bins), np.zeros(n))
    idx = bins.index(x)
    for pos, b in enumerate(got["bins"]):
        sel = idx == b
        assert got["elements"][pos] == sel.sum()
        assert got["unexpected"][pos] == (sel & (el.code == judging.FAIL)).sum()
        assert got["special"][pos] == (sel & np.isinf(el.ulps)).sum()
        finite = el.ulps[sel & np.isfinite(el.ulps) & (el.ulps >= 0)]
        if finite.size:
            assert got["max_ulp"][pos] == finite.max()
            at = got["max_ulp_logit"][pos]
            i = np.flatnonzero(sel & (el.ulps == finite.max()))
            assert any(x[j] == at or (np.isnan(x[j]) and at == "nan") for j in i)
        else:
            assert got["max_ulp"][pos] is None


# ------------------------------------------------------ document and page ----

def _document(tmp_path, plan, specs):
    store = Store(tmp_path, plan.dtype)
    store.prepare(plan, resume=False)
    jobs, infos = [], []
    for cls in specs:
        spec = f"plugin:tests.test_sweep:{cls}#{_name(cls)}"
        for s, rec in _compute(plan, cls):
            store.write(_name(cls), s, rec)
        jobs.append(BackendJob(_name(cls), spec, 1))
        infos.append(shard.info(spec))
    exps = expect.load(plan.known, shipped=plan.shipped)
    return summary.build(plan, store, jobs, infos, Outcome(tasks=4, computed=4, wall_s=1.0),
                         exps, {"engine": "dask", "scheduler": "test", "workers": 1})


def test_the_document_validates_and_the_page_is_self_contained(tmp_path):
    plan = _plan(targets="0,1", shard_logits=32768)
    doc = _document(tmp_path, plan, ["Planted", "RaisesOnNaN"])
    summary.validate(doc)
    assert doc["schema_version"] == summary.SCHEMA_VERSION
    by = {d["backend"]: d for d in doc["implementations"]}
    assert by["planted"]["status"] == "fail" and by["raises-on-nan"]["status"] == "error"
    worst = by["planted"]["worst"]
    assert 2 <= worst["logit"] < 4 and worst["status"] == "fail" and worst["quantity"] == "value"
    assert worst["ulp"] > worst["allowance"]
    assert doc["summary"]["unexpected"] == 2 * 1024 + 2 * 2 * 2046
    t0 = by["planted"]["quantities"]["value"]["targets"][0]
    assert len(t0["bins"]["elements"]) == len(doc["bins"])
    assert len(t0["profile"]) == len(doc["bins"]) * doc["profile_per_bin"]
    path = tmp_path / "sweep-float16.json"
    summary.write(doc, path)
    assert summary.load(path)["dtype"] == "float16"
    page = html.render(doc)
    assert page.count("<svg") == 2 * 2 + 2 * 2  # charts: 2 quantities × 2 targets; maps
    assert "<script src" not in page and "<link" not in page and "@import" not in page
    assert "planted/formula" in page
    bad = dict(doc, schema_version=2)
    with pytest.raises(Exception, match="2"):
        summary.validate(bad)
    broken = json.loads(json.dumps(doc))
    broken["implementations"][0]["quantities"]["value"]["targets"][0]["bins"]["known"][3] = -1
    with pytest.raises(ValueError, match="known"):
        summary.validate(broken)


def test_the_page_escapes_what_comes_from_outside(tmp_path):
    plan = _plan(targets="0", shard_logits=65536)
    doc = _document(tmp_path, plan, ["Planted"])
    doc["implementations"][0]["implementation"] = "<script>alert(1)</script>"
    doc["implementations"][0]["errors"] = ["</script><b>x"]
    page = html.render(doc)
    assert "<script>alert(1)" not in page and "</script><b>" not in page


def test_a_report_beside_the_page_is_linked(tmp_path):
    plan = _plan(targets="0", shard_logits=65536)
    doc = _document(tmp_path, plan, ["Planted"])
    html.write(doc, tmp_path / "sweep-float16.html")
    assert 'href="report.html"' not in (tmp_path / "sweep-float16.html").read_text()
    (tmp_path / "report.html").write_text("<!doctype html>")
    html.write(doc, tmp_path / "sweep-float16.html")
    assert 'href="report.html"' in (tmp_path / "sweep-float16.html").read_text()


def test_calls_keep_nan_logits_apart():
    x = np.array([1.0, np.nan, 2.0, np.nan, 3.0])
    pieces = shard.calls_of(x, 2)
    assert [p.tolist() for p in pieces] == [[0, 2], [4], [1, 3]]


def test_numpy_dtype_roundtrip_for_bfloat16_logits():
    space = Space("bfloat16")
    x = space.logits_of(0, 8)
    assert np.array_equal(x.astype(numpy_dtype("bfloat16")).astype(np.float64), x)
    assert math.isclose(float(x[1]), 2.0**-133)


def test_store_refuses_another_plan_on_resume(tmp_path):
    from harness.sweep.engine import PlanMismatch

    store = Store(tmp_path, "float16")
    store.prepare(_plan(targets="0,1"), resume=False)
    store.prepare(_plan(targets="0,1"), resume=True)
    with pytest.raises(PlanMismatch, match="targets"):
        store.prepare(_plan(targets="0"), resume=True)
    assert Path(store.root / "plan.json").exists()


def test_store_refuses_a_framework_upgrade_on_resume(tmp_path):
    from harness.sweep.engine import PlanMismatch

    def info(v):
        return [{"name": "numpy", "availability": None, "versions": {"numpy": v}}]

    store = Store(tmp_path, "float16")
    store.prepare(_plan(targets="0"), resume=False)
    store.check_versions(info("2.4"), resume=False)
    (store.root / "numpy").mkdir()
    (store.root / "numpy" / "000000.json").write_text("{}")
    store.check_versions(info("2.4"), resume=True)
    with pytest.raises(PlanMismatch, match="numpy"):
        store.check_versions(info("2.5"), resume=True)
    store.check_versions(info("2.5"), resume=False)  # a fresh sweep starts over


def test_the_page_runs_in_a_browser_and_its_cells_explain_themselves(tmp_path):
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    plan = _plan(targets="0,1", shard_logits=65536)
    doc = _document(tmp_path, plan, ["Planted"])
    page_path = tmp_path / "sweep-float16.html"
    html.write(doc, page_path)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(page_path.as_uri())
        svg = page.locator("svg.heat").first  # planted/formula, the loss
        svg.scroll_into_view_if_needed()
        box = svg.bounding_box()
        col = page.evaluate("JSON.parse(document.getElementById('heat-data').textContent)"
                            ".bins.indexOf('+[2^1, 2^2)')")
        left, cw, top = (float(svg.get_attribute(a)) for a in ("data-left", "data-cw",
                                                                 "data-top"))
        scale = box["width"] / float(svg.get_attribute("viewBox").split()[2])
        page.mouse.move(box["x"] + (left + cw * (col + 0.5)) * scale, box["y"] + (top + 5) * scale)
        tip = page.locator("#tip").inner_text()
        page.locator("input[name=tgt][value='1']").check()
        visible = page.locator(".tgt[data-tgt='1']").is_visible()
        hidden = page.locator(".tgt[data-tgt='0']").is_visible()
        browser.close()
    assert not errors
    assert "1,024 elements" in tip and "1,024 unexpected" in tip and "y = 0" in tip
    assert visible and not hidden
