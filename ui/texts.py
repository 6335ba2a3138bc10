"""The page's fixed texts: the disclaimer, the empty-result line, the meaning of a suggested category, the example
queries, and the header and Collection-tab sentences that say what the index holds (the curated collection of
public datasets, or a user's own DICOM archive)."""

DISCLAIMER = ("For research and education only — **not a diagnostic device**. It finds similar images; it never "
              "diagnoses.")
EMPTY = "**No images above the threshold** — lower it or try another query."
SUGGESTION_NOTE = ("Share of similarity-weighted votes among the nearest images: a retrieval statistic, "
                   "not a diagnosis.")
TEXT_EXAMPLES = ["chest x-ray", "knee fracture", "dental panoramic", "hand radiograph of a child",
                 "knee osteoarthritis severe", "spine scoliosis", "wrist fracture", "covid-19 pneumonia"]
ARCHIVE_SOURCE_NOTE = ("**Source: your DICOM archive.** Its metadata comes from a whitelist of DICOM tags only "
                       "(modality, body part, view, laterality, sex, an age band, manufacturer and model, scrubbed "
                       "descriptions); ids and studies are salted hashes, never a patient identifier. No licence is "
                       "recorded, so `python -m retrieval publish` leaves these images out unless asked otherwise.")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def header_markdown(images: int, categories: list[str], archive: bool = False, left_out: int = 0) -> str:
    """The page's title and first line: how many images the index holds and where they come from — public
    datasets, or (`archive`) the user's own DICOM archive, with the files its build left out (`left_out`)."""
    where = "of your DICOM archive" if archive else "from public datasets"
    line = (f"Find radiographs by text or by example image among {_plural(images, 'image')} {where} "
            f"({', '.join(categories)}); click a result for more like it")
    if archive:
        line += " and more from its study"
    line += "."
    if left_out:
        line += f" The build left out {_plural(left_out, 'file')} of the archive (why: the Collection tab)."
    return f"# X-Ray Search\n{line}"


def images_line(images: int, categories: int, archive: bool = False) -> str:
    """The Collection tab's first line."""
    where = " of your DICOM archive" if archive else ""
    return f"**{_plural(images, 'image')}**{where} in {categories} categor{'y' if categories == 1 else 'ies'}."


__all__ = ["ARCHIVE_SOURCE_NOTE", "DISCLAIMER", "EMPTY", "SUGGESTION_NOTE", "TEXT_EXAMPLES", "header_markdown",
           "images_line"]
