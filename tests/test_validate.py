"""`validate` reads a collection before anything is embedded and says exactly what is wrong."""

import csv
import json
import subprocess
import sys
from collections import Counter

from conftest import REPO, synthetic_image, write_collection
from retrieval.validate import validate_collection


def codes(report, level=None):
    return {f.code for f in report.findings if level is None or f.level == level}


def test_the_curated_collection_is_valid(collection):
    result = subprocess.run([sys.executable, "-m", "retrieval", "validate", str(collection), "--json"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    with (collection / "metadata.csv").open(newline="") as handle:  # the collection grows: count what is there
        rows = list(csv.DictReader(handle))
    assert report["ok"] and report["rows"] == len(rows) and report["files"] == len(rows)
    assert report["categories"] == dict(Counter(row["category"] for row in rows))


def test_a_good_synthetic_collection_has_no_errors(synthetic_collection):
    report = validate_collection(synthetic_collection, progress=False)
    assert report.ok and report.rows == 6 and report.categories == {"chest": 3, "knee": 3}


def test_missing_files_bad_extensions_duplicates_and_corrupt_images_are_errors(synthetic_collection):
    (synthetic_collection / "knee" / "k2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (synthetic_collection / "chest" / "c1.png").unlink()
    with (synthetic_collection / "metadata.csv").open("a") as handle:
        handle.write("chest/c0.png,chest,,,,synthetic,,CC0-1.0\n")  # duplicate name
        handle.write("notes/readme.txt,chest,,,,synthetic,,CC0-1.0\n")
        handle.write("chest/c9.png,,,,,synthetic,,CC0-1.0\n")  # empty category (and missing)
    report = validate_collection(synthetic_collection, progress=False)
    assert not report.ok
    assert {"missing-file", "undecodable", "duplicate-name", "bad-extension", "empty-category"} <= codes(
        report, "error")
    invalid = report.invalid_files()
    assert "knee/k2.png" in invalid and "chest/c1.png" in invalid
    assert "chest/c2.png" not in invalid


def test_bad_columns_stop_the_validation(tmp_path):
    root = write_collection(tmp_path / "c", [{"file_name": "chest/a.png", "category": "chest"}])
    (root / "metadata.csv").write_text("name,kind\nchest/a.png,chest\n")
    report = validate_collection(root, progress=False)
    assert codes(report, "error") == {"bad-columns"}
    assert "file_name" in report.errors[0].message


def test_duplicates_and_unknown_licences_are_warnings(tmp_path):
    same = synthetic_image("disc", seed=1)
    rows = [{"file_name": "chest/a.png", "category": "chest", "license": "unknown", "source": "S"},
            {"file_name": "chest/b.png", "category": "chest", "license": "CC0-1.0"},
            {"file_name": "knee/c.png", "category": "kneee", "license": "CC0-1.0"}]
    root = write_collection(tmp_path / "c", rows, images={"chest/a.png": same, "chest/b.png": same})
    (root / "extra.png").write_bytes((root / "knee" / "c.png").read_bytes())
    report = validate_collection(root, progress=False)
    assert report.ok
    assert {"exact-duplicate", "near-duplicate", "unknown-licence", "unknown-category", "unlisted-file"} <= codes(
        report, "warning")
    assert ("chest/b.png", "chest/a.png") in report.pairs("exact-duplicate")


def test_a_plain_folder_takes_categories_from_sub_folders(tmp_path):
    rows = [{"file_name": "chest/a.png"}, {"file_name": "dental/b.jpg"}]
    root = write_collection(tmp_path / "plain", rows, metadata=False)
    report = validate_collection(root, progress=False)
    assert report.ok and report.categories == {"chest": 1, "dental": 1}
    assert "no-metadata" in codes(report, "warning")


def test_the_cli_exits_non_zero_and_names_the_corrupt_file(synthetic_collection):
    (synthetic_collection / "chest" / "c0.png").write_bytes(b"not a png at all")
    result = subprocess.run([sys.executable, "-m", "retrieval", "validate", str(synthetic_collection)],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 1
    assert "chest/c0.png" in result.stdout and "INVALID" in result.stdout
