"""Labels in words: what a row's short label code means, so text models read the finding, not the code.

"kl-4" becomes "severe knee osteoarthritis (Kellgren-Lawrence grade 4)"; "not-fractured" becomes "not fractured, no
fracture". Shared by the metadata text of every row (collection.row_text) and the text head of the trained
model (retrieval/training), which also learns from the paraphrases here.
"""

from __future__ import annotations

KL_WORDS = {0: "normal knee, no osteoarthritis", 1: "doubtful knee osteoarthritis", 2: "mild knee osteoarthritis",
            3: "moderate knee osteoarthritis", 4: "severe knee osteoarthritis"}

# (category or "*", label) -> (the label in words, a few other ways people ask for it)
_WORDS: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("*", "normal"): ("normal, no finding", ("normal", "no abnormality", "healthy")),
    ("*", "fractured"): ("fractured, fracture present", ("fracture", "broken bone", "bone fracture")),
    ("*", "not-fractured"): ("not fractured, no fracture", ("no fracture", "intact bone")),
    ("chest", "covid-19"): ("COVID-19 pneumonia", ("covid-19", "coronavirus pneumonia", "sars-cov-2 infection")),
    ("chest", "pneumonia"): ("pneumonia", ("pneumonia", "lung infection", "consolidation")),
    ("chest", "nodule"): ("lung nodule", ("pulmonary nodule", "lung nodule", "nodule in the lung")),
    ("chest", "ards"): ("acute respiratory distress syndrome", ("ards", "acute respiratory distress")),
    ("dental", "caries"): ("dental caries", ("caries", "tooth decay", "cavities")),
    ("dental", "no-abnormality"): ("no dental abnormality", ("healthy teeth", "no abnormality")),
    ("dental", "periapical"): ("periapical lesion", ("periapical lesion", "lesion at the root apex")),
    ("dental", "pericoronal"): ("pericoronal lesion", ("pericoronal lesion", "lesion around the crown")),
    ("dental", "non-odontogenic"): ("non-odontogenic lesion", ("non-odontogenic jaw lesion",)),
    ("dental", "inter-radicular"): ("inter-radicular lesion", ("lesion between the roots",)),
    ("spine", "scoliosis"): ("scoliosis", ("scoliosis", "curvature of the spine", "spinal curvature")),
}
_CATEGORY_WORDS = {
    "chest": ("chest radiograph", "chest x-ray", "radiograph of the lungs"),
    "dental": ("dental panoramic radiograph", "panoramic x-ray of the teeth", "orthopantomogram"),
    "fracture": ("bone radiograph for fracture", "trauma x-ray of a limb", "extremity radiograph"),
    "hand": ("hand radiograph", "x-ray of the hand and wrist", "hand x-ray"),
    "knee": ("knee radiograph", "knee x-ray", "radiograph of the knee joint"),
    "spine": ("spine radiograph", "x-ray of the spine", "spinal radiograph"),
}


def _parts(label: str) -> list[str]:
    return [part.strip() for part in label.replace(";", ",").split(",") if part.strip()]


def label_words(category: str, label: str) -> str:
    """The label in words ("" for no label); unknown labels are spelled out from their code."""
    if not label:
        return ""
    words = []
    for part in _parts(label):
        if category == "knee" and part.startswith("kl-") and part[3:].isdigit() and int(part[3:]) in KL_WORDS:
            words.append(f"{KL_WORDS[int(part[3:])]} (Kellgren-Lawrence grade {part[3:]})")
            continue
        base = part.split(" (")[0]  # "pneumonia (bacterial)": the finding, then its detail
        known = _WORDS.get((category, base)) or _WORDS.get(("*", base))
        detail = part[len(base):].strip(" ()")
        words.append((known[0] if known else base.replace("-", " ")) + (f", {detail}" if detail else ""))
    return "; ".join(words)


def paraphrases(category: str, label: str) -> list[str]:
    """Ways a person might ask for images of this (category, label): the words, synonyms, with the body part."""
    phrases = [f"{category} radiograph" if category else "radiograph", *_CATEGORY_WORDS.get(category, ())]
    if not label:
        return list(dict.fromkeys(phrases))
    words = label_words(category, label)
    phrases = [words, f"{_CATEGORY_WORDS.get(category, (category,))[0]}, {words}"]
    for part in _parts(label):
        base = part.split(" (")[0]
        if category == "knee" and base.startswith("kl-") and base[3:].isdigit():
            severity = KL_WORDS.get(int(base[3:]), "")
            phrases += [severity, severity.replace("knee ", "") + " of the knee", f"KL grade {base[3:]} knee"]
            continue
        known = _WORDS.get((category, base)) or _WORDS.get(("*", base))
        for synonym in known[1] if known else (base.replace("-", " "),):
            phrases += [synonym, f"{category} {synonym}" if category else synonym]
    return list(dict.fromkeys(p for p in phrases if p))


__all__ = ["label_words", "paraphrases", "KL_WORDS"]
