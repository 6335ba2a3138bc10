"""Is a DICOM query of a kind the collection holds? A radiograph collection answers an angiogram or a CT slice
with radiographs that look alike only in grey levels: its pixel evidence accepted the coronary angiogram of
../shared/dicom-samples (match 0.93, docs/evaluation.md). The file says what it is in its Modality tag, so the
search says "no close match" for a modality that is no plain radiograph and that no row of the index has, before
comparing pixels (an index of a user's archive that holds XA films takes XA queries)."""

from __future__ import annotations

PLAIN_RADIOGRAPHY = ("CR", "DX", "IO", "PX", "RG")  # computed, digital, intra-oral, panoramic, film radiography
UNSPECIFIC = ("", "OT", "SC")  # none, "other", secondary capture: says nothing of the picture; its pixels judge
NAMES = {"XA": "X-ray angiography", "RF": "fluoroscopy", "CT": "CT", "MR": "MRI", "US": "ultrasound",
         "NM": "nuclear medicine", "PT": "PET", "MG": "mammography", "XC": "a camera photograph",
         "OP": "ophthalmic photography", "ES": "endoscopy", "SM": "microscopy", "ECG": "an ECG", "SR": "a report",
         "DOC": "a document", "OCT": "optical coherence tomography", "IVUS": "intravascular ultrasound"}
JUDGE = "DICOM modality"  # SearchResult.judged_by begins with it when the Modality tag judged


def foreign(modality: str, held: set[str]) -> bool:
    """True when a query of this Modality code cannot be like any row: neither a plain radiograph, nor
    unspecific, nor a modality of the index's own rows (`held`)."""
    code = modality.strip().upper()
    return code not in PLAIN_RADIOGRAPHY and code not in UNSPECIFIC and code not in held


def judged_by(modality: str) -> str:
    return f"{JUDGE} {modality.strip().upper()}"


def sentence(judge: str) -> str | None:
    """What the program says for a query judged by its modality (`judged_by`'s value), None for any other judge
    (novelty.no_match_sentence says the rest)."""
    if not judge or not judge.startswith(JUDGE + " "):
        return None
    code = judge[len(JUDGE) + 1:]
    kind = f"{code} ({NAMES[code]})" if code in NAMES else code
    return (f"No close match in this collection: the file is a DICOM of modality {kind}, and the collection holds "
            "plain radiographs, so no category is suggested; the nearest images are shown, alike in grey levels only.")


__all__ = ["foreign", "judged_by", "sentence", "PLAIN_RADIOGRAPHY", "UNSPECIFIC", "JUDGE"]
