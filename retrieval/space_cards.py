"""The cards of what `publish` writes: a Space's README (front matter, attribution of every source shown, what
was left out and why, which models ship) and a Hub dataset card, from the kept rows and the `PublishReport` of
publish.py (passed in, so this module needs nothing of it but its fields)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import RetrievalError
from .licences import POLICY_MEANING

if TYPE_CHECKING:
    from .layout import IndexGeneration

SHORT_DESCRIPTION = "Find similar radiographs by text or by example image."


def gradio_pin(requirements: Path) -> str:
    """The version `gradio==X` pins in requirements.txt (the Space's sdk_version must be the same)."""
    for line in requirements.read_text().splitlines():
        match = re.match(r"^\s*gradio\s*==\s*([\w.\-+]+)", line)
        if match:
            return match.group(1)
    raise RetrievalError(f"{requirements} does not pin gradio (gradio==X.Y.Z); the Space's sdk_version needs it.")


def source_table(generation: IndexGeneration) -> dict[str, dict]:
    """Per kept source: images, link and licences (with counts), from the published rows themselves."""
    dataset = generation.load_dataset()
    table: dict[str, dict] = {}
    for name, url, licence in zip(dataset["source"], dataset["source_url"], dataset["license"]):
        entry = table.setdefault(name or "(unnamed source)", {"images": 0, "urls": [], "licenses": Counter()})
        entry["images"] += 1
        if url and url not in entry["urls"]:
            entry["urls"].append(url)
        entry["licenses"][licence or "(none)"] += 1
    return dict(sorted(table.items()))


def sources_file(collection: str | Path | None, name: str, repo: Path) -> Path | None:
    """The collection's SOURCES.md: in `collection` when given, else found from the manifest's collection name
    (a folder of that name here, or beside the checkout in ../shared/)."""
    candidates = [Path(collection).expanduser()] if collection else [
        Path(name).expanduser(), Path.cwd().parent / "shared" / name, repo.parent / "shared" / name]
    for folder in candidates:
        if (folder / "SOURCES.md").is_file():
            return folder / "SOURCES.md"
    return None


def source_sections(sources_md: Path | None, sources: dict[str, dict]) -> list[str]:
    """The `###` sections of SOURCES.md that describe a kept source (they name one of its links)."""
    if sources_md is None:
        return []
    urls = {url.rstrip("/") for entry in sources.values() for url in entry["urls"]}
    sections = [section.strip() for section in re.split(r"(?m)^(?=#{2,3} )", sources_md.read_text())
                if section.startswith("### ")]
    chosen = [section for section in sections if any(url in section for url in urls)]
    # a section that defers to a chosen one ("Same repo ... as `fracatlas` above") describes a kept source too
    names = {re.sub(r"^(\d+\.\s*)?", "", section[4:].split("\n", 1)[0]).split(" (")[0].strip() for section in chosen}
    return [section for section in sections
            if section in chosen or any(f"as `{name}`" in section for name in names if name)]


def _sources_markdown(report, sources: dict[str, dict], sources_md: Path | None) -> str:
    lines = ["| Source | Images | Licence | Link |", "|---|---:|---|---|"]
    for name, entry in sources.items():
        licences = ", ".join(f"{licence} ({count})" if len(entry["licenses"]) > 1 else licence
                             for licence, count in sorted(entry["licenses"].items()))
        links = " ".join(f"<{url}>" for url in entry["urls"])
        lines.append(f"| {_cell(name)} | {entry['images']} | {_cell(licences)} | {links} |")
    sections = source_sections(sources_md, sources)
    if sections:
        lines += ["", "What the collection's `SOURCES.md` says about these sources (rows of other licences "
                      "in a source were left out as counted above):", ""]
        lines += [re.sub(r"(?m)^### ", "#### ", section) + "\n" for section in sections]
    elif sources_md is None:
        lines += ["", "(The collection's SOURCES.md was not found; the table lists each source, link and licence "
                      "as the rows state them.)"]
    return "\n".join(lines)


def _excluded_markdown(report) -> str:
    if not report.excluded:
        return "No image of the index was left out."
    lines = [f"{report.excluded_rows} images of the index were left out by the {report.policy!r} policy:", "",
             "| Source | Licence | Images left out |", "|---|---|---:|"]
    for source, licences in report.excluded.items():
        for licence, count in licences.items():
            lines.append(f"| {_cell(source)} | {_cell(licence or '(none)')} | {count} |")
    return "\n".join(lines)


def _models_markdown(report) -> str:
    lines = [f"Models in the index: {', '.join(f'`{m}`' for m in report.models)}."]
    for decision in report.model_decisions:
        lines.append(f"- `{decision.name}` (trained model, a derivative of its training images): "
                     f"{'included' if decision.ships else 'not included'} — {decision.why}.")
    if not report.model_decisions:
        lines.append("No trained model: the image and text models are pretrained elsewhere, and TF-IDF is "
                     "fitted on the published rows' metadata only.")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _yaml_string(text: str) -> str:
    return json.dumps(str(text), ensure_ascii=False)  # a JSON string is a valid YAML scalar


def space_readme(report, sources: dict[str, dict], sources_md: Path | None, title: str,
                 repo: Path) -> str:
    front = ["---", f"title: {_yaml_string(title)}", "emoji: 🩻", "colorFrom: indigo", "colorTo: gray",
             "sdk: gradio", f"sdk_version: {gradio_pin(repo / 'requirements.txt')}", "app_file: app.py",
             'python_version: "3.11"', *_licence_front_matter(report),
             f"short_description: {_yaml_string(SHORT_DESCRIPTION)}", "---", ""]
    warning = "".join(f"> **Warning:** {w}\n\n" for w in report.warnings)
    body = f"""# {title}

{warning}Search {report.rows} real radiographs by text or by example image; click a result for more like it.

> **Research and education only. Not a diagnostic device.** It finds similar images; it never diagnoses.

Every result shows its source and licence (gallery caption and details panel). The images keep their sources'
licences; the code is MIT.

## What this Space holds

Images published under the **{report.policy}** licence policy: {POLICY_MEANING[report.policy]}.

{_models_markdown(report)}

{_excluded_markdown(report)}

## Image licences and attribution

{_sources_markdown(report, sources, sources_md)}

## How this Space was made

`python -m retrieval publish --index index --out SPACE_DIR --licenses {report.policy}` in the X-Ray Search
repository: a prebuilt index of the kept images (`index/`, named by
`index/CURRENT`), so the Space serves at once. From Python: `gradio_client.Client("owner/space-name")`, endpoints
`/search_text`, `/search_image`, `/similar`, `/models`.
"""
    return "\n".join(front) + "\n" + body


def _licence_front_matter(report) -> list[str]:
    licences = {licence for entry in report.kept.values() for licence in entry}
    single = {"cc-by-4.0": "cc-by-4.0", "cc0-1.0": "cc0-1.0", "cc-by-sa-4.0": "cc-by-sa-4.0"}
    if len(licences) == 1 and next(iter(licences)).lower() in single:
        return [f"license: {single[next(iter(licences)).lower()]}"]
    return ["license: other", "license_name: mixed", "license_link: README.md"]


def dataset_card(report, sources: dict[str, dict], sources_md: Path | None, title: str) -> str:
    citations = [line.split("Citation:", 1)[1].strip() for section in source_sections(sources_md, sources)
                 for line in section.splitlines() if "Citation:" in line]
    citation = "\n".join(f"- {c}" for c in citations) if citations else (
        "Cite each source as its own page asks (links above).")
    front = ["---", *_licence_front_matter(report), f"pretty_name: {_yaml_string(title + ' index')}",
             "tags:", "  - medical", "  - x-ray", "  - radiograph", "  - image-retrieval", "configs:",
             "  - config_name: default", "    data_files:", "      - split: train",
             f"        path: generations/{report.generation}/dataset/*.arrow", "---", ""]
    warning = "".join(f"> **Warning:** {w}\n\n" for w in report.warnings)
    body = f"""# {title} — prebuilt index

{warning}A prebuilt X-Ray Search index of {report.rows} radiographs (licence policy **{report.policy}**:
{POLICY_MEANING[report.policy]}), with one vector column per model and their FAISS files. Research and education
only; not a diagnostic device.

Serve it: `XRAY_INDEX=hf://datasets/OWNER/NAME python app.py` (or `--index hf://datasets/OWNER/NAME`); it is
downloaded once into the Hugging Face cache and loaded like a local index folder.

## Layout

- `CURRENT`: the name of the generation to serve (Hub repositories keep no symlinks)
- `generations/{report.generation}/manifest.json`: rows, fingerprint, models
- `generations/{report.generation}/dataset/`: the Dataset (`datasets.load_from_disk`): metadata, image, vectors
- `generations/{report.generation}/faiss/<model>.faiss`: exact inner-product index per model
- `generations/{report.generation}/models/<model>/`: fitted state (TF-IDF, fitted on these rows only)

{_models_markdown(report)}

{_excluded_markdown(report)}

## Licences and attribution

{_sources_markdown(report, sources, sources_md)}

## Citation

{citation}
"""
    return "\n".join(front) + "\n" + body


# --- the Hub --------------------------------------------------------------------------------------------


__all__ = ["space_readme", "dataset_card", "source_table", "sources_file", "source_sections", "gradio_pin",
           "SHORT_DESCRIPTION"]
