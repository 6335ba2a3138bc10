"""`python -m retrieval VERB`: validate, build, search, models (and the verbs other modules add)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable

from .errors import RetrievalError


def cmd_validate(args) -> int:
    from .validate import validate_collection

    report = validate_collection(args.path, progress=not args.json)
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.ok else 1


def cmd_build(args) -> int:
    from .index import build_index

    models = args.models if args.models in (None, "all") else args.models.split(",")
    report = build_index(args.collection, args.index, models=models, skip_invalid=args.skip_invalid,
                         split=args.split, force=args.force, log=lambda message: print(message, file=sys.stderr))
    synced = {}
    if args.store == "milvus":  # the FAISS index is built as usual; Milvus then mirrors its vectors
        from .milvus_store import sync_index

        synced = sync_index(args.index, _milvus_uri(args), index=args.milvus_index, progress=not args.json)
    if args.json:
        print(json.dumps({**report.to_dict(), **({"milvus": synced} if synced else {})}, indent=2))
    else:
        for name, why in report.skipped_models.items():
            print(f"skipped model {name}: {why}")
        for name, why in report.skipped_rows.items():
            print(f"skipped row {name}: {why}")
        for done in synced.values():
            print(f"milvus {done['collection']}: {done['upserted']} upserted, {done['deleted']} deleted, "
                  f"{done['unchanged']} unchanged")
    return 0


def cmd_search(args) -> int:
    from .search import SUGGESTION_NOTE, SearchEngine

    engine = SearchEngine(args.index, vector_store=_vector_store(args))
    options = {"model": args.model, "k": args.k, "category": args.category, "min_score": args.min_score}
    suggestion = None
    if args.text is not None:
        hits = engine.search_text(args.text, **options)
    elif args.image is not None:
        result = engine.search_image(args.image, **options)
        hits, suggestion = result.hits, result.suggestion
    else:
        hits = engine.similar(args.similar, **options)
    if args.json:
        print(json.dumps([hit.to_dict() for hit in hits], indent=2))
        return 0
    if not hits:
        print("No images above the minimum score; lower it (--min-score) or try another query.")
    print(format_table(["rank", "score", "id", "category", "label", "source"],
                       [[h.rank, f"{h.score:.3f}", h.id, h.category, h.label, h.source[:40]] for h in hits]))
    if suggestion:
        shares = ", ".join(f"{c} {s:.0%}" for c, s in suggestion.items())
        print(f"\nSuggested category: {shares}\n({SUGGESTION_NOTE})")
    return 0


def cmd_models(args) -> int:
    from .embedders import availability, embedder_spec, list_embedders

    rows = []
    for name in list_embedders():
        spec, state = embedder_spec(name), availability(name)
        rows.append({"name": name, "family": spec.family, "embeds": " + ".join(spec.modalities),
                     "dim": spec.dim if spec.dim else "vocabulary", "weights": spec.weights,
                     "status": "ready" if state.ready else "unavailable", "detail": state.reason})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(list(rows[0]), [list(r.values()) for r in rows]))
    return 0


def format_table(header: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _milvus_uri(args) -> str:
    if not args.milvus_uri:
        raise RetrievalError("--store milvus needs --milvus-uri: a local file such as ./milvus.db (Milvus Lite) "
                             "or http://host:19530 (a Milvus server); see docs/scaling.md.")
    return args.milvus_uri


def _vector_store(args):
    """None for FAISS in this process, or a factory that reads the Milvus collections the build synced."""
    if args.store != "milvus":
        return None
    from .milvus_store import milvus_store_factory

    return milvus_store_factory(_milvus_uri(args), sync=False)


def _add_store_options(parser) -> None:
    parser.add_argument("--store", choices=["faiss", "milvus"], default="faiss",
                        help="where vectors are searched: FAISS in this process (default) or Milvus")
    parser.add_argument("--milvus-uri", default=os.environ.get("XRAY_MILVUS_URI"),
                        help="Milvus Lite file (path ending in .db) or server (http://host:19530); "
                             "default: $XRAY_MILVUS_URI")


def _add_search_options(parser) -> None:
    from .search import K_DEFAULT

    parser.add_argument("--model", help="model name (default: the index's best for the query type)")
    parser.add_argument("--k", type=int, default=K_DEFAULT, help="number of results, 1-20 (default 5)")
    parser.add_argument("--category", help="only this category")
    parser.add_argument("--min-score", type=float, help="minimum cosine similarity (default: per model)")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable]]:
    parser = argparse.ArgumentParser(prog="python -m retrieval",
                                     description="X-Ray Search: find radiographs by text or example. "
                                                 "Research and education only; not a diagnostic device.")
    verbs = parser.add_subparsers(dest="verb", required=True)
    commands: dict[str, Callable] = {}

    p = verbs.add_parser("validate", help="check a collection folder before building")
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    commands["validate"] = cmd_validate

    p = verbs.add_parser("build", help="build or refresh an index (embeds only what changed)")
    p.add_argument("--collection", required=True, help="collection folder or Hugging Face dataset id")
    p.add_argument("--index", default="index", help="index folder (default: index/)")
    p.add_argument("--models", help="comma-separated model names, or 'all' (default: the index's models, "
                                    "else tfidf,minilm,efficientnet-lite0)")
    p.add_argument("--skip-invalid", action="store_true", help="leave rows that fail validation out")
    p.add_argument("--split", default="train", help="split of a Hub dataset")
    p.add_argument("--force", action="store_true", help="rebuild even when the index is up to date")
    _add_store_options(p)
    p.add_argument("--milvus-index", choices=["FLAT", "HNSW", "IVF_FLAT"], default="FLAT",
                   help="Milvus index type: FLAT is exact (default); see docs/scaling.md for the others")
    p.add_argument("--json", action="store_true")
    commands["build"] = cmd_build

    p = verbs.add_parser("search", help="query an index")
    p.add_argument("--index", default="index")
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--text")
    query.add_argument("--image", help="image or DICOM file")
    query.add_argument("--similar", metavar="ID", help="more like this row id")
    _add_search_options(p)
    _add_store_options(p)
    p.add_argument("--json", action="store_true")
    commands["search"] = cmd_search

    p = verbs.add_parser("models", help="list registered models and whether they can load here")
    p.add_argument("--json", action="store_true")
    commands["models"] = cmd_models

    for extend in _extensions():
        extend(verbs, commands)
    return parser, commands


def _extensions():
    """Verbs defined next to the code they run (evaluate, ...), when those modules exist."""
    import importlib

    for module in ("retrieval.evaluate",):
        try:
            yield importlib.import_module(module).add_cli
        except (ImportError, AttributeError):
            continue


def main(argv: list[str] | None = None) -> int:
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    try:
        return commands[args.verb](args)
    except RetrievalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
