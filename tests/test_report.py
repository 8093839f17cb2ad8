"""``mmhal report RUN``: the page and its figures, the OUT folder rules, missing data and missing matplotlib."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mmhal.cli import main
from mmhal.engine import artifacts, report

NPZ_FIGURES = {"accuracy", "differences", "per_class", "confusion", "curves", "regions"}
PAD_FIGURES = NPZ_FIGURES | {"roc_det"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _report(run: Path, out: Path, *extra: str) -> int:
    return main(["report", str(run), "--out", str(out), "--no-progress", *extra])


def _embedded(page: str) -> dict[str, bytes]:
    """figure name -> the PNG bytes embedded in the page as a data URI."""
    found = re.findall(r"<img id='fig-([a-z_]+)'[^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    return {name: base64.b64decode(data) for name, data in found}


@pytest.fixture(scope="module")
def npz_report(finished_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-npz") / "report"
    assert _report(finished_run, out) == 0
    return out


@pytest.fixture(scope="module")
def pad_report(finished_pad_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-pad") / "report"
    assert _report(finished_pad_run, out) == 0
    return out


def _check_page(out: Path, expected: set[str]) -> str:
    page = (out / report.INDEX).read_text()
    embedded = _embedded(page)
    assert set(embedded) == expected
    for name, png in embedded.items():
        assert png.startswith(PNG_SIGNATURE)
        assert (out / f"{name}.png").read_bytes() == png  # the file beside the page is the embedded figure
    assert sorted(p.name for p in out.iterdir()) == sorted([report.INDEX, report.REPORT_MARKER,
                                                            *(f"{n}.png" for n in expected)])
    # self-contained: nothing is fetched from elsewhere
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page)
    assert "<link" not in page and "<script" not in page
    return page


def test_report_of_a_run_embeds_every_figure_and_names_the_recommendation(npz_report, finished_run):
    page = _check_page(npz_report, NPZ_FIGURES)
    results = artifacts.open_run(finished_run).results
    rec = results["recommendation"]["method"]
    top = page[:page.index("<h2>All methods")]
    assert f"Deploy <b>{rec}</b>" in top
    assert "validation split only" in top and "one network" in top
    vs = results["recommendation"]["vs_unimodal_val"]
    if vs is not None:
        assert f"{100 * vs['mean_diff']:+.2f} points over unimodal on validation" in top
    for name in results["results"]:
        assert f"<td><b>{name}</b></td>" in page  # a row of the plain-language table per method
    assert "Figures left out" not in page


def test_report_of_anti_spoofing_run_has_roc_and_det(pad_report):
    page = _check_page(pad_report, PAD_FIGURES)
    assert "ACER" in page[:page.index("<h2>Run facts")]


def test_report_page_decodes_every_figure_in_headless_chromium(npz_report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium binary on PATH, so the page cannot be rendered here")
    page = (npz_report / report.INDEX).read_text()
    # A probe that writes, once the page has loaded, every image's decoded width into the DOM; the deliberately
    # broken control image proves that an image that does not decode is seen as such.
    probe = ("<img id='control-broken' src='data:image/png;base64,AAAAAAAA'>"
             "<script>window.addEventListener('load', function () { var out = [];"
             "for (var i = 0; i < document.images.length; i++) { var im = document.images[i];"
             "out.push(im.id + '=' + (im.complete && im.naturalWidth > 0 ? im.naturalWidth : 0)); }"
             "document.body.setAttribute('data-decoded', out.join(' ')); });</script>")
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(page.replace("</body>", probe + "</body>"))
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", probe_page.as_uri()], check=False, capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'data-decoded="([^"]*)"', dom)
    assert found, "the page did not finish loading in chromium"
    widths = dict(item.split("=") for item in found.group(1).split())
    assert widths.pop("control-broken") == "0"
    assert set(widths) == {f"fig-{n}" for n in NPZ_FIGURES}
    assert all(int(w) > 0 for w in widths.values()), widths


def test_report_without_the_data_skips_the_region_figure_with_a_note(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("report"))
    cfg_path = run / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["data"]["name"] = str(tmp_path / "moved-away" / "tiny.npz")
    cfg_path.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert _report(run, tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "note: RAD regions: left out" in err and "--data-root" in err
    page = _check_page(tmp_path / "out", NPZ_FIGURES - {"regions"})
    assert "Figures left out" in page and "RAD regions: left out" in page
    # --data-root names where the data went (here: the folder that holds the .npz file): the figure's data is back
    blocks, n, dims, seed = report.region_blocks(report.Evidence(artifacts.open_run(run)), str(finished_run.parent),
                                           log=lambda s: None)
    assert [b["name"] for b in blocks] == ["rad", "mmh"] and dims == 1 and n > 0 and seed == 0
    for b in blocks:
        assert [m.shape for m in b["weights"]] == [(1, 4), (1, 2), (1, 1)]
        total = sum(float(m.sum()) for m in b["weights"])
        assert 0.0 < total <= 1.0 + 1e-6  # weights sum to 1 per sample (0 where the teacher is wrong everywhere)
        assert all(((m >= 0) & (m <= 1)).all() for m in b["agree"])


def test_no_regions_flag_leaves_the_region_figure_out(finished_run, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the data must not be read with --no-regions")

    monkeypatch.setattr(report, "region_blocks", boom)
    files, figures, notes = report.build(artifacts.open_run(finished_run), regions=False, progress=False)
    assert "regions" not in {f.name for f in figures}
    assert any("--no-regions" in n for n in notes)
    assert "--no-regions" in files[report.INDEX].decode()


def test_figures_whose_files_are_missing_or_damaged_are_left_out_with_a_note_naming_them(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("report"))
    res = json.loads((run / "results.json").read_text())
    res["recommendation"]["method"] = "kd"  # the confusion matrices then need every kd student's logits
    (run / "results.json").write_text(json.dumps(res))
    (run / "jobs" / "kd-seed1.pt").unlink()
    (run / "models" / "rad-seed0.pt").write_bytes(b"not a torch file")
    files, figures, notes = report.build(artifacts.open_run(run), regions=False, progress=False)
    assert {f.name for f in figures} == {"accuracy", "differences", "curves"}
    text = "\n".join(notes)
    assert "per-class accuracy: left out" in text and "kd-seed1.pt" in text
    assert "training curves: rad left out" in text and "rad-seed0.pt" in text
    page = files[report.INDEX].decode()
    assert "kd-seed1.pt" in page and set(_embedded(page)) == {"accuracy", "differences", "curves"}


def test_report_of_a_folder_that_is_not_a_run_is_one_sentence(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert _report(tmp_path, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmhal: error: ") and "not a finished mmhal run" in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_report_refuses_an_out_folder_it_did_not_write(finished_run, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert _report(finished_run, out) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmhal: error: ") and "not a report folder" in err and "\n" not in err
    assert (out / "thesis.tex").read_text() == "precious" and sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


def test_report_folder_is_replaced_whole_and_only_when_it_holds_nothing_else(tmp_path):
    out = tmp_path / "report"
    report.write_report(out, {"index.html": b"one", "a.png": b"1"}, tmp_path)
    report.check_out(out)  # a report folder mmhal wrote may be replaced
    report.write_report(out, {"index.html": b"two"}, tmp_path)
    assert (out / "index.html").read_bytes() == b"two" and not (out / "a.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no temporary sibling left
    (out / "my-notes.txt").write_text("mine")
    with pytest.raises(report.UserError, match="my-notes.txt"):
        report.write_report(out, {"index.html": b"three"}, tmp_path)
    assert (out / "index.html").read_bytes() == b"two" and (out / "my-notes.txt").is_file()
    (out / "my-notes.txt").unlink()
    with pytest.raises(TypeError):  # a write that fails halfway leaves the old report whole, and no temporary folder
        report.write_report(out, {"index.html": b"three", "b.png": None}, tmp_path)
    assert (out / "index.html").read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    empty = tmp_path / "empty"
    empty.mkdir()
    report.check_out(empty)  # an empty folder holds nothing to lose
    (tmp_path / "file").write_text("x")
    with pytest.raises(report.UserError, match="is a file"):
        report.check_out(tmp_path / "file")


def test_a_report_that_fails_midway_leaves_the_old_one_whole(finished_run, tmp_path, monkeypatch):
    out = tmp_path / "report"
    report.write_report(out, {"index.html": b"old"}, tmp_path)

    def fail(*a, **k):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(report, "confusion_fig", fail)
    with pytest.raises(RuntimeError):
        _report(finished_run, out, "--no-regions")
    assert (out / "index.html").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_report_without_matplotlib_says_how_to_install_it(finished_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    assert _report(finished_run, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmhal: error: ") and 'pip install "mmhal[report]"' in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_anti_spoofing_report_without_scikit_learn_says_how_to_install_it(finished_pad_run, tmp_path, monkeypatch,
                                                                          capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # the ROC curves need sklearn.metrics.roc_curve
    assert _report(finished_pad_run, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert "scikit-learn" in err and 'pip install "mmhal[report]"' in err and "\n" not in err


def test_a_run_evaluated_on_validation_is_flagged_at_the_top():
    text = report.warnings_html({"evaluated_on": "val", "warnings": ["the teacher is not better"]})
    assert "Evaluated on the validation split" in text and "optimistic" in text
    assert "the teacher is not better" in text
    assert report.warnings_html({"evaluated_on": "test", "warnings": []}) == ""


def test_per_class_accuracy_counts_each_class_and_marks_absent_ones():
    y = np.array([0, 0, 1, 1, 1])
    pred = np.array([0, 1, 1, 1, 0])
    acc = report._per_class(y, pred, 3)
    assert acc[:2].tolist() == [0.5, 2 / 3] and np.isnan(acc[2])


def test_the_decision_box_names_a_better_standard_learner_once(finished_run):
    """The learner's sentence under its bold lead, without the recommendation line's own "but ...:" lead."""
    results = json.loads((finished_run / "results.json").read_text())
    results["recommendation"]["standard_learner"] = {
        "learner": "logreg", "view": "raw", "modalities": ["weak"], "val_accuracy": 0.9,
        "vs_recommended_val": None}
    page = report.decision_html(results, artifacts.open_run(finished_run))
    assert page.count("standard learner") == 1 and "But a standard learner does better on validation</b>: logreg" in page


def test_the_decision_box_says_why_the_best_on_validation_was_passed_over():
    """recommend=significant: the best on validation (mmh, +20 points, not significant) is named; the deployed one is
    unimodal when no gain is significant, else the distilled student whose gain is (rad)."""
    from types import SimpleNamespace

    from test_stats import _report

    from mmhal.engine.results import recommend

    val = {"unimodal": [0.6, 0.6, 0.6], "mmh": [0.9, 0.6, 0.9], "rad": [0.8, 0.8, 0.7]}
    run = SimpleNamespace(seeds=[0, 1, 2], path="/tmp/run")
    for names, deployed in ((("unimodal", "mmh", "rad"), "<b>rad</b>, whose gain is significant, is deployed"),
                            (("unimodal", "mmh"), "the plain student, which needs no teacher, is deployed")):
        res = _report({n: val[n] for n in names}, {n: [0.5] * 3 for n in names})
        page = report.decision_html({"results": res, "recommendation": recommend(res), "evaluated_on": "test"}, run)
        assert "The best on validation, <b>mmh</b>, was +20.00 points" in page and deployed in page
        assert "(<code>recommend=best</code> would take mmh)" in page
