"""`edge-agent eval`: the real pipeline on labelled real photos, through the command line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from helpers import cli
from PIL import Image

from edge_agent.demo.samples import LABELLED_STILLS


def run_eval(*args: str) -> subprocess.CompletedProcess[str]:
    return cli("eval", *args)


def labelled_folder(tmp_path: Path, media) -> Path:  # type: ignore[no-untyped-def]
    images = tmp_path / "images"
    images.mkdir()
    for name in LABELLED_STILLS:
        (images / name).write_bytes(media(name).read_bytes())
    (images / "mountain.jpg").write_bytes(media("free-mountain-vector-01.jpg").read_bytes())
    return images


def test_eval_reports_every_measure_and_names_bad_lines(tmp_path: Path, media) -> None:
    labelled_folder(tmp_path, media)
    rows = ["image,emotion,split"]
    rows += [f"{name},{emotion},eval" for name, emotion in LABELLED_STILLS.items()]
    rows += ["mountain.jpg,joyful,eval", "missing.jpg,happy,eval", "mountain.jpg,sad,train"]
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    report = tmp_path / "report"
    done = run_eval(str(labels), "--split", "eval", "--json", "--report", str(report))
    assert done.returncode == 0, done.stderr
    assert "labels.csv: line 6: emotion 'joyful' is not one of" in done.stderr
    assert "labels.csv: line 7: image" in done.stderr and "does not exist" in done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["images"] == 4  # the train row is filtered out, the bad rows skipped
    assert summary["faces_found"] == 4
    for key in ("balanced_accuracy", "per_class", "confusion", "ece"):
        assert key in summary
    assert set(summary["per_class"]) == set(LABELLED_STILLS.values())
    assert 0.0 <= summary["uncertain_rate"] <= 1.0 and 0.0 <= summary["stated_accuracy"] <= 1.0
    said = sum(sum(row.values()) for row in summary["confusion"].values())
    assert said == 4
    assert summary["skipped_rows"] == 2
    for png in ("confusion.png", "calibration.png"):
        with Image.open(report / png) as image:
            assert len(image.convert("RGB").getcolors(1 << 16) or ()) > 10, f"{png} is blank"
    assert "balanced accuracy" in (report / "summary.md").read_text()
    assert "Traceback" not in done.stderr


def test_eval_scores_age_and_gender_against_what_analyze_reports(tmp_path: Path, media) -> None:
    """Labels set off from the pipeline's own reading of each still by a known amount: the
    mean absolute age error and the gender accuracy must come out as those offsets say."""
    images = labelled_folder(tmp_path, media)
    offsets = dict(zip(LABELLED_STILLS, (4.0, -6.0, 10.0, 0.0), strict=True))
    rows = ["image,age,gender"]
    for number, (name, offset) in enumerate(offsets.items()):
        analysed = cli("analyze", str(images / name), "--json")
        assert analysed.returncode == 0, analysed.stderr
        faces = json.loads(analysed.stdout)["faces"]
        face = max(faces, key=lambda f: f["box"][2] * f["box"][3])  # the largest, as eval
        gender = face["gender"]
        if number == 0:  # one wrong gender label in four
            gender = "female" if gender == "male" else "male"
        rows.append(f"{name},{face['age'] + offset},{gender}")
    rows.append("mountain.jpg,old,female")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    done = run_eval(str(labels), "--json")
    assert done.returncode == 0, done.stderr
    assert "labels.csv: line 6: age 'old' is not a number" in done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["images"] == 4 and summary["faces_found"] == 4
    assert abs(summary["age_mae"] - 5.0) <= 0.01
    assert summary["gender_accuracy"] == 0.75
    assert "balanced_accuracy" not in summary  # no emotion column, no emotion measures
    table = run_eval(str(labels))
    assert table.returncode == 0, table.stderr
    assert "mean absolute error 5.0 years" in table.stdout
    assert "gender       accuracy 0.750" in table.stdout
    assert "Traceback" not in done.stderr + table.stderr


def test_eval_scores_boxes_as_recall_and_precision(tmp_path: Path, media) -> None:
    labelled_folder(tmp_path, media)
    labels = tmp_path / "labels.csv"
    # A wrong box on a face image, and a face-free image labelled as such (empty cell).
    labels.write_text('image,boxes\n0-f1-su-ph.jpg,"0,0,5,5"\nmountain.jpg,\n')
    done = run_eval(str(labels), "--json")
    assert done.returncode == 0, done.stderr
    detection = json.loads(done.stdout.strip().splitlines()[-1])["detection"]
    assert detection["faces"] == 1 and detection["recall"] == 0.0
    assert detection["found"] >= 1 and detection["precision"] == 0.0


def test_eval_refuses_unusable_input_with_one_line(tmp_path: Path, media) -> None:
    labelled_folder(tmp_path, media)
    missing = run_eval(str(tmp_path / "nope.csv"))
    assert missing.returncode == 66 and "nope.csv: no such file" in missing.stderr
    headless = tmp_path / "headless.csv"
    headless.write_text("0-f1-su-ph.jpg,happy\n")
    no_header = run_eval(str(headless))
    assert no_header.returncode == 65 and "must name the columns" in no_header.stderr
    useless = tmp_path / "useless.csv"
    useless.write_text("image,emotion\nmissing.jpg,happy\n")
    nothing = run_eval(str(useless))
    assert nothing.returncode == 65 and "no usable row" in nothing.stderr
    for done in (missing, no_header, nothing):
        assert "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith("edge-agent: error: ")
