"""The page's fixed texts: the disclaimer, the empty-result line, the meaning of a suggested category and the
example queries."""

DISCLAIMER = ("For research and education only — **not a diagnostic device**. It finds similar images; it never "
              "diagnoses.")
EMPTY = "**No images above the threshold** — lower it or try another query."
SUGGESTION_NOTE = ("Share of similarity-weighted votes among the nearest images: a retrieval statistic, "
                   "not a diagnosis.")
TEXT_EXAMPLES = ["chest x-ray", "knee fracture", "dental panoramic", "hand radiograph of a child",
                 "knee osteoarthritis severe", "spine scoliosis", "wrist fracture", "covid-19 pneumonia"]

__all__ = ["DISCLAIMER", "EMPTY", "SUGGESTION_NOTE", "TEXT_EXAMPLES"]
