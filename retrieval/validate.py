"""Check a collection before anything is embedded: columns, names, files, decoding, duplicates, licences.

The report keeps what the checks learned (the rows, and per image its digest, pHash and size), so a build
that validates reads metadata.csv once and every image once (`image_pass`)."""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .archive import archive_rows, describe, is_archive
from .collection import (
    ALLOWED_EXTENSIONS, KNOWN_CATEGORIES, METADATA_FILE, _is_document, has_allowed_extension, local_rows,
    read_metadata, scan_files,
)
from .errors import CollectionError
from .image_pass import ImageFacts, ReadImage, phash_bits, read_images
from .schema import FIELDS, REQUIRED_FIELDS

ERROR, WARNING = "error", "warning"
NEAR_DUPLICATE_BITS = 4  # pHash (64 bits) Hamming distance at or below which two images count as near duplicates
UNKNOWN_LICENCES = {"", "unknown", "none", "n/a"}


@dataclass
class Finding:
    level: str  # "error" makes the collection invalid; "warning" is shown but does not block a build
    code: str
    message: str
    file_name: str | None = None
    other: str | None = None  # the second file of a duplicate pair


@dataclass
class ValidationReport:
    root: str
    rows: int = 0
    files: int = 0
    categories: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    records: list = field(default_factory=list, repr=False)  # the collection's rows (collection.Row), as read
    images: dict[str, ImageFacts] = field(default_factory=dict, repr=False)  # file name -> what its read learned

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def invalid_files(self) -> dict[str, str]:
        """file_name -> why, for every row an error names (the rows a build with skip_invalid leaves out)."""
        return {f.file_name: f.message for f in self.errors if f.file_name}

    def pairs(self, code: str) -> list[tuple[str, str]]:
        return [(f.file_name, f.other) for f in self.findings if f.code == code]

    def add(self, level: str, code: str, message: str, file_name: str | None = None, other: str | None = None):
        self.findings.append(Finding(level, code, message, file_name, other))

    def to_json(self) -> str:
        return json.dumps({"root": self.root, "ok": self.ok, "rows": self.rows, "files": self.files,
                           "categories": self.categories, "errors": len(self.errors),
                           "warnings": len(self.warnings), "findings": [asdict(f) for f in self.findings]},
                          indent=2)

    def to_text(self, examples: int = 10) -> str:
        lines = [f"Collection {self.root}: {self.rows} rows, {self.files} image files, "
                 f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)."]
        if self.categories:
            lines.append("Categories: " + ", ".join(f"{c or '(empty)'} {n}" for c, n in
                                                    sorted(self.categories.items())))
        grouped: dict[tuple[str, str], list[Finding]] = defaultdict(list)
        for finding in self.findings:
            grouped[(finding.level, finding.code)].append(finding)
        for (level, code), findings in sorted(grouped.items()):
            lines.append(f"\n{level.upper()} {code} ({len(findings)}):")
            shown = findings if level == ERROR else findings[:examples]
            lines += [f"  - {f.message}" for f in shown]
            if len(shown) < len(findings):
                lines.append(f"  ... and {len(findings) - len(shown)} more (see --json)")
        lines.append("\nVALID" if self.ok else "\nINVALID: fix the errors above, or build with --skip-invalid "
                                                 "to leave those rows out.")
        return "\n".join(lines)


def validate_collection(root: str | Path, near_bits: int = NEAR_DUPLICATE_BITS, workers: int = 2,
                        progress: bool = True) -> ValidationReport:
    """Validate a local collection folder; decodes every image. Never raises for bad content: reports it."""
    report = check_rows(root)
    if report.records:
        check_images(report, near_bits=near_bits, workers=workers, progress=progress)
    return report


def check_rows(root: str | Path) -> ValidationReport:
    """Everything but the pixels: metadata.csv (parsed once), names, files, categories, licences. The rows
    are in `report.records`; none when the metadata cannot be read."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise CollectionError(f"Collection folder {root} does not exist.")
    report = ValidationReport(root=str(root))
    if is_archive(root):
        return _check_archive(root, report)
    files = [name for name in scan_files(root) if not _is_document(name)]
    has_metadata = (root / METADATA_FILE).is_file()
    metadata = None
    if has_metadata:
        metadata = _check_metadata(root, report, set(files))
        if metadata is None:
            return report
    else:
        report.add(WARNING, "no-metadata", f"No {METADATA_FILE}: categories come from sub-folder names and "
                   "the other fields stay empty.")
    rows = local_rows(root, metadata=metadata)
    report.records = rows
    report.rows = len(rows)
    report.categories = dict(Counter(row.category for row in rows))
    _check_categories(rows, report, strict=has_metadata)
    _check_licences(rows, report, has_metadata)
    return report


def _check_archive(root: Path, report: ValidationReport) -> ValidationReport:
    """A DICOM archive: its rows from the headers (ids under a throwaway salt: a build's differ), and the files
    a build would leave out, counted per reason (warnings: nothing there stops a build)."""
    rows, skipped = archive_rows(root, os.urandom(32))
    report.records, report.rows = rows, len(rows)
    report.categories = dict(Counter(row.category for row in rows))
    for reason, count in sorted(skipped.items()):
        report.add(WARNING, "left-out", f"{count} file(s) left out: {describe(reason)}.")
    return report


def check_images(report: ValidationReport, near_bits: int = NEAR_DUPLICATE_BITS, workers: int = 2,
                 progress: bool = True, skip: set[str] = frozenset(), sides=(), thumbnails: bool = False,
                 on_chunk: Callable[[list[ReadImage]], None] | None = None) -> None:
    """Read every present image of `report.records` once (except `skip`): undecodable ones are errors, exact
    and near duplicates warnings; what each read learned lands in `report.images`. `sides`, `thumbnails`
    and `on_chunk` let a build use the same decode (see `image_pass.read_images`)."""
    present = [row for row in report.records if row.file_name not in skip and row.path is not None
               and row.path.is_file()]
    report.files = len(present)
    report.images, problems = read_images(present, sides=sides, thumbnails=thumbnails, workers=workers,
                                          progress=progress, on_chunk=on_chunk)
    for name, problem in problems.items():
        report.add(ERROR, "undecodable", problem, name)
    duplicate_findings(report, [(row.file_name, report.images[row.file_name]) for row in present
                                if row.file_name in report.images], near_bits)


def duplicate_findings(report: ValidationReport, images: list[tuple[str, ImageFacts]], near_bits: int) -> None:
    """Exact duplicates by SHA-256, near duplicates by perceptual hash (warnings)."""
    by_digest: dict[str, str] = {}
    for name, facts in images:
        if facts.sha256 in by_digest:
            report.add(WARNING, "exact-duplicate", f"{name} is byte-identical to {by_digest[facts.sha256]}.", name,
                       by_digest[facts.sha256])
        else:
            by_digest[facts.sha256] = name
    names = [name for name, _ in images]
    hashes = [phash_bits(facts.phash) for _, facts in images]
    for first, second, distance in near_duplicate_pairs(names, hashes, near_bits):
        report.add(WARNING, "near-duplicate", f"{first} and {second} look alike (pHash distance {distance}).",
                   first, second)


def _check_metadata(root: Path, report: ValidationReport, files: set[str]):
    """Columns, names, extensions and the file <-> row correspondence. Returns metadata.csv as parsed
    (records, header), or None when nothing more can be read."""
    try:
        records, header = read_metadata(root)
    except CollectionError as error:
        report.add(ERROR, "bad-metadata", str(error))
        return None
    missing = [name for name in REQUIRED_FIELDS if name not in header]
    if missing:
        report.add(ERROR, "bad-columns", f"{METADATA_FILE} lacks required column(s) {missing}; "
                   f"it has {header}, expected {list(FIELDS)}.")
        return None
    optional = [name for name in FIELDS if name not in header and name not in REQUIRED_FIELDS]
    if optional:
        report.add(WARNING, "missing-columns", f"{METADATA_FILE} has no column(s) {optional}; they stay empty.")
    counts = Counter(record["file_name"] for record in records)
    for position, record in enumerate(records, start=2):  # line 1 is the header
        name = record["file_name"]
        if not name:
            report.add(ERROR, "empty-file-name", f"{METADATA_FILE} line {position}: empty file_name.")
            continue
        if counts[name] > 1:
            report.add(ERROR, "duplicate-name", f"{name}: listed {counts[name]} times in {METADATA_FILE} "
                       f"(line {position}).", name)
        if not has_allowed_extension(name):
            report.add(ERROR, "bad-extension", f"{name}: extension not allowed (allowed: "
                       f"{' '.join(ALLOWED_EXTENSIONS)}).", name)
        elif name not in files:
            report.add(ERROR, "missing-file", f"{name}: listed in {METADATA_FILE} but the file does not exist.",
                       name)
    listed = set(counts)
    for name in sorted(files - listed):
        report.add(WARNING, "unlisted-file", f"{name}: file has no row in {METADATA_FILE}; it is not indexed.",
                   name)
    return records, header


def _check_categories(rows, report: ValidationReport, strict: bool) -> None:
    for row in rows:
        if not row.category:
            level = ERROR if strict else WARNING
            report.add(level, "empty-category", f"{row.file_name}: empty category.", row.file_name)
        elif row.category not in KNOWN_CATEGORIES:
            report.add(WARNING, "unknown-category", f"{row.file_name}: category {row.category!r} is not one of "
                       f"{', '.join(KNOWN_CATEGORIES)}.", row.file_name)


def _check_licences(rows, report: ValidationReport, has_metadata: bool) -> None:
    if not has_metadata:
        return
    unknown = Counter(row.source or "(no source)" for row in rows if row.license.lower() in UNKNOWN_LICENCES)
    for source, count in sorted(unknown.items()):
        report.add(WARNING, "unknown-licence", f"{count} image(s) from {source} state no licence; check the "
                   "source's terms before use beyond research and education.")


def near_duplicate_pairs(names: list[str], hashes: list, max_bits: int) -> list[tuple[str, str, int]]:
    """Pairs whose 64-bit perceptual hashes differ in at most `max_bits` bits (vectorised, O(n^2) bits)."""
    if len(names) < 2:
        return []
    bits = np.asarray(hashes, dtype=np.uint8)  # (n, 64) of 0/1
    packed = np.packbits(bits, axis=1)  # (n, 8)
    pairs = []
    popcount = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1)
    for i in range(len(names) - 1):
        distances = popcount[np.bitwise_xor(packed[i + 1:], packed[i])].sum(axis=1)
        for offset in np.nonzero(distances <= max_bits)[0]:
            j = i + 1 + int(offset)
            pairs.append((names[i], names[j], int(distances[offset])))
    return pairs
