"""LiT-style text head: frozen MiniLM sentence vectors mapped into the (locked) image space, trained
contrastively on captions, labels and paraphrase templates, so text queries search pixels, not metadata."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from ..embedders.xray_network import encode_texts, make_text_head
from ..evaluation.rows import Item

# Paraphrases per (category, label); generic templates cover any other label. Clinical synonyms only:
# written from the label vocabulary, not from the evaluation query file.
CATEGORY_TEMPLATES = ("a {c} radiograph", "{c} x-ray", "an x-ray of the {c}", "{c} radiography image",
                      "plain film of the {c}")
CATEGORY_WORDS = {"chest": ("chest", "lungs", "thorax"), "dental": ("teeth", "dental panoramic", "jaw"),
                  "hand": ("hand", "hand and wrist", "fingers"), "knee": ("knee", "knee joint"),
                  "spine": ("spine", "vertebral column", "back"),
                  "fracture": ("bone", "limb", "extremity")}
LABEL_PARAPHRASES = {
    ("chest", "normal"): ("normal chest x-ray", "healthy lungs", "no acute cardiopulmonary findings",
                          "clear lungs"),
    ("chest", "pneumonia"): ("pneumonia", "lung consolidation", "pulmonary infection", "infiltrates in the lungs"),
    ("chest", "covid-19"): ("covid-19 pneumonia", "coronavirus lung infection", "sars-cov-2 chest x-ray",
                            "bilateral ground glass opacities"),
    ("chest", "nodule"): ("lung nodule", "pulmonary nodule", "solitary nodule in the lung", "lung mass"),
    ("chest", "ards"): ("acute respiratory distress syndrome", "diffuse bilateral opacities"),
    ("knee", "kl-0"): ("normal knee", "healthy knee joint", "no osteoarthritis", "kellgren-lawrence grade 0"),
    ("knee", "kl-1"): ("doubtful knee osteoarthritis", "minimal osteophyte", "kellgren-lawrence grade 1"),
    ("knee", "kl-2"): ("mild knee osteoarthritis", "definite osteophytes", "kellgren-lawrence grade 2"),
    ("knee", "kl-3"): ("moderate knee osteoarthritis", "joint space narrowing", "kellgren-lawrence grade 3"),
    ("knee", "kl-4"): ("severe knee osteoarthritis", "bone on bone knee", "large osteophytes and sclerosis",
                       "kellgren-lawrence grade 4"),
    ("fracture", "fractured"): ("fracture", "broken bone", "bone fracture", "fractured limb", "cracked bone"),
    ("fracture", "not-fractured"): ("no fracture", "intact bone", "normal bone without fracture"),
    ("hand", "fractured"): ("hand fracture", "broken finger", "fractured hand bone", "broken wrist"),
    ("hand", "not-fractured"): ("normal hand", "hand without fracture", "intact hand bones"),
    ("dental", "caries"): ("dental caries", "tooth decay", "cavities in the teeth", "carious lesion"),
    ("dental", "no-abnormality"): ("normal teeth", "healthy dentition", "no dental abnormality"),
    ("dental", "periapical"): ("periapical lesion", "lesion at the root apex", "periapical radiolucency",
                               "tooth root infection"),
    ("dental", "non-odontogenic"): ("non-odontogenic lesion", "jaw lesion not from a tooth"),
    ("dental", "pericoronal"): ("pericoronal lesion", "lesion around an impacted tooth crown"),
    ("spine", "scoliosis"): ("scoliosis", "curved spine", "lateral curvature of the spine", "spinal deformity"),
}
GENERIC_LABEL_TEMPLATES = ("{l}", "{c} {l}", "{l} on a {c} radiograph", "{c} x-ray showing {l}")


def _label_words(label: str) -> str:
    return label.replace(";", " and ").replace("-", " ").replace("(", "").replace(")", "")


def texts_for(item: Item) -> tuple[list[str], list[str]]:
    """(texts judged at label level, texts judged at category level) that describe this row."""
    c = item.category
    words = CATEGORY_WORDS.get(c, (c,))
    category_texts = [t.format(c=w) for t in CATEGORY_TEMPLATES for w in words[:2]]
    label_texts = []
    if item.label:
        label_texts += [t.format(c=c, l=_label_words(item.label)) for t in GENERIC_LABEL_TEMPLATES]
        parts = [p.strip() for p in item.label.split(";")]
        base = parts[0].split(" (")[0]  # 'pneumonia (bacterial)' also speaks of 'pneumonia'
        for key in {(c, item.label), (c, parts[0]), (c, base)}:
            label_texts += list(LABEL_PARAPHRASES.get(key, ()))
        if item.caption:
            label_texts.append(item.caption)
    elif item.caption:
        category_texts.append(item.caption)
    return label_texts, category_texts


def build_text_table(items: Sequence[Item], rows: np.ndarray):
    """Unique texts with their targets: for each text, the set of (category, key-or-None) it describes."""
    targets: dict[str, set] = defaultdict(set)
    for r in rows:
        label_texts, category_texts = texts_for(items[r])
        for t in label_texts:
            targets[t].add(("key", items[r].category, items[r].label))
        for t in category_texts:
            targets[t].add(("cat", items[r].category, ""))
    texts = sorted(targets)
    return texts, [targets[t] for t in texts]


def fit_text_head(image_vectors: np.ndarray, items: Sequence[Item], rows: np.ndarray, dim: int,
                  epochs: int = 60, batch: int = 256, lr: float = 2e-3, temperature: float = 0.05,
                  hidden: int = 512, seed: int = 0, text_vectors: dict | None = None):
    """Train the text head against LOCKED image vectors of `rows`. A text's positives in a batch are the
    images it describes (same category, and same label for label-level texts)."""
    import torch

    rows = np.asarray(rows)
    texts, targets = build_text_table(items, rows)
    cache = text_vectors if text_vectors is not None else {}
    missing = [t for t in texts if t not in cache]
    if missing:
        for t, v in zip(missing, encode_texts(missing)):
            cache[t] = v
    text_x = torch.from_numpy(np.stack([cache[t] for t in texts]))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = make_text_head(dim, hidden)
    image_t = torch.from_numpy(image_vectors[rows].astype(np.float32))
    cats = np.asarray([items[r].category for r in rows], dtype=object)
    labels = np.asarray([items[r].label for r in rows], dtype=object)
    # which images each text describes: (texts x classes) tables, looked up per batch
    _, cat_ids = np.unique(cats, return_inverse=True)
    cat_names = sorted(set(cats.tolist()))
    key_names = sorted(set(zip(cats.tolist(), labels.tolist())))
    key_index = {k: i for i, k in enumerate(key_names)}
    key_ids = np.asarray([key_index[(c, l)] for c, l in zip(cats.tolist(), labels.tolist())])
    text_cat_table = np.zeros((len(texts), len(cat_names)), dtype=bool)
    text_key_table = np.zeros((len(texts), len(key_names)), dtype=bool)
    for t, target in enumerate(targets):
        for kind, c, l in target:
            if kind == "cat":
                text_cat_table[t, cat_names.index(c)] = True
            else:
                text_key_table[t, key_index[(c, l)]] = True
    text_is_cat = ~text_key_table.any(axis=1)
    index_of = {t: i for i, t in enumerate(texts)}
    by_row: list[list[int]] = []
    for r in rows:
        label_texts, category_texts = texts_for(items[r])
        by_row.append([index_of[t] for t in label_texts + category_texts])
    sources = np.asarray([items[r].source for r in rows], dtype=object)
    _, source_ids = np.unique(sources, return_inverse=True)
    weights = 1.0 / np.bincount(source_ids)[source_ids]
    weights /= weights.sum()
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    batch = min(batch, len(rows))
    steps = max(1, int(np.ceil(len(rows) / batch))) * epochs
    head.train()
    for _ in range(steps):
        pick = rng.choice(len(rows), size=batch, replace=True, p=weights)
        chosen = np.asarray([by_row[p][rng.integers(len(by_row[p]))] for p in pick])
        positive = np.where(text_is_cat[chosen][:, None], text_cat_table[chosen][:, cat_ids[pick]],
                            text_key_table[chosen][:, key_ids[pick]])
        positive_t = torch.from_numpy(positive)
        z = head(text_x[chosen])
        logits = z @ image_t[pick].T / temperature
        log_t2i = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        loss_t2i = -((log_t2i * positive_t).sum(1) / positive_t.sum(1)).mean()
        log_i2t = logits.T - torch.logsumexp(logits.T, dim=1, keepdim=True)
        pos_i = positive_t.T
        has = pos_i.any(1)
        loss_i2t = -((log_i2t * pos_i).sum(1)[has] / pos_i.sum(1)[has]).mean()
        loss = loss_t2i + 0.5 * loss_i2t
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return head.eval()


def embed_text_queries(head, texts: Sequence[str], cache: dict | None = None) -> np.ndarray:
    import torch

    cache = cache if cache is not None else {}
    missing = [t for t in texts if t not in cache]
    if missing:
        for t, v in zip(missing, encode_texts(missing)):
            cache[t] = v
    with torch.inference_mode():
        return head(torch.from_numpy(np.stack([cache[t] for t in texts]))).numpy().astype(np.float32)
