"""The order of a result list after the vector store has answered: ties kept whole and spread over findings, a
repeated metadata text yielding to another one, and the category vote of an image query.

Each function takes (row, score) pairs, best first, as a `VectorStore` returns them, and the `Catalogue` whose
fields decide between equals; none of them searches.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Callable

TIE = 1e-6  # scores this close are a tie (identical vectors: identical metadata text, duplicate images)
DUPLICATE_MARGIN = 0.05  # a repeated metadata text yields to another text scoring at most this much lower
VOTE_NEIGHBOURS = 10  # neighbours that vote for the suggested category of an image query

Found = list[tuple[int, float]]


def nearest_with_ties(search: Callable[[int], Found], k: int, rows: int) -> Found:
    """The k nearest rows and every row tied with the k-th (rows with identical text tie exactly).
    `search(n)`: the n nearest; `rows`: how many rows there are."""
    fetch = min(rows, 2 * k)
    while True:
        found = search(fetch)
        if len(found) <= k or found[-1][1] < found[k - 1][1] - TIE or fetch >= rows:
            # only what every store answers alike: rows past the k-th's tie are the start of another tie group,
            # whose members a store may pick differently (a filtered search makes such groups common)
            return found if len(found) <= k else [pair for pair in found if pair[1] >= found[k - 1][1] - TIE]
        fetch = min(rows, 4 * fetch)


def break_ties(found: Found, catalogue) -> Found:
    """Best first; rows tied on score alternate between labels (then sources), then go by id, so a tie
    shows different findings rather than five identical texts, in the same order on every store."""
    ordered, start = [], 0
    while start < len(found):
        stop = start
        while stop < len(found) and found[stop][1] >= found[start][1] - TIE:
            stop += 1
        group = sorted(found[start:stop], key=lambda item: catalogue.value(item[0], "id"))
        by_label: dict[str, list] = defaultdict(list)
        for item in group:
            by_label[catalogue.value(item[0], "label")].append(item)
        turns = []
        for lane, members in enumerate(by_label.values()):  # each label's rows alternate sources
            seen: Counter = Counter()
            spread = []
            for position, item in enumerate(members):
                source = catalogue.value(item[0], "source")
                spread.append((seen[source], position, item))
                seen[source] += 1
            turns += [(turn, lane, item) for turn, (*_, item) in enumerate(sorted(spread, key=lambda s: s[:2]))]
        ordered += [item for *_, item in sorted(turns, key=lambda turn: turn[:2])]
        start = stop
    return ordered


def spread_duplicates(found: Found, catalogue, k: int) -> Found:
    """The first k: a row whose text is already shown waits behind a row with another text of the SAME category
    and label scoring within DUPLICATE_MARGIN of it (another source or caption of that finding). It never yields
    to a row of another label: a better-matching finding stays above a worse one ("severe" keeps the severe grade
    first)."""
    texts = catalogue.texts
    label = lambda row: (catalogue.value(row, "category"), catalogue.value(row, "label"))  # noqa: E731
    pending, ordered, shown = list(found), [], set()
    while pending and len(ordered) < k:
        choice = 0
        head, floor = pending[0][0], pending[0][1] - DUPLICATE_MARGIN
        if texts[head] in shown:
            choice = next((i for i, (row, score) in enumerate(pending) if score >= floor and texts[row] not in shown
                           and label(row) == label(head)), 0)
        row, score = pending.pop(choice)
        shown.add(texts[row])
        ordered.append((row, score))
    return ordered


def vote(neighbours: Found, catalogue) -> dict[str, float]:
    """Category -> share of the similarity-weighted votes of `neighbours`, largest first ({} when no weight):
    a retrieval statistic, not a diagnosis."""
    weights: Counter = Counter()
    for row, score in neighbours:
        weights[catalogue.value(row, "category") or "(none)"] += max(score, 0.0)
    total = sum(weights.values())
    if total <= 0:
        return {}
    return {category: weight / total for category, weight in weights.most_common()}


__all__ = ["TIE", "DUPLICATE_MARGIN", "VOTE_NEIGHBOURS", "nearest_with_ties", "break_ties", "spread_duplicates",
           "vote"]
