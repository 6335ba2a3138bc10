"""`python -m retrieval VERB`: validate, build, search, models, evaluate, publish — a table of verbs, each a
few lines over the library (heavy modules are imported inside the verb that needs them)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from .errors import RetrievalError
from .settings import load_settings
from .tables import format_table


def cmd_validate(args) -> int:
    from .validate import validate_collection

    report = validate_collection(args.path, progress=not args.json)
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.ok else 1


def cmd_build(args) -> int:
    from .archive import skipped_text
    from .index import build_index

    models = args.models if args.models in (None, "all") else args.models.split(",")
    report = build_index(args.collection, args.index, models=models, skip_invalid=args.skip_invalid,
                         split=args.split, force=args.force, log=lambda message: print(message, file=sys.stderr),
                         archive=archive_options(args))
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
        if report.skipped_objects:
            print(f"left out {sum(report.skipped_objects.values())} file(s) of the archive:\n"
                  + skipped_text(report.skipped_objects))
        for done in synced.values():
            print(f"milvus {done['collection']}: {done['upserted']} upserted, {done['deleted']} deleted, "
                  f"{done['unchanged']} unchanged")
    return 0


def cmd_search(args) -> int:
    from dataclasses import asdict

    from .options import QueryOptions
    from .search import SearchEngine

    options = QueryOptions(k=args.k, category=args.category, min_score=args.min_score,  # refused before loading
                           filters=_filters(args.filter))
    engine = SearchEngine(args.index, vector_store=_vector_store(args))
    options = {"model": args.model, **asdict(options)}
    if args.study is not None:
        result = engine.study(args.study, model=args.model, k=args.k)
    elif args.text is not None:
        result = engine.search_text(args.text, **options)
    elif args.image is not None:
        result = engine.search_image(args.image, **options)
    else:
        result = engine.similar(args.similar, **options)
    if args.json:
        print(json.dumps(result.records(), indent=2))
        return 0
    if not result.hits:
        print("No images above the minimum score; lower it (--min-score) or try another query.")
    print(format_table(["rank", "score", "id", "category", "label", "source"],
                       [[h.rank, f"{h.score:.3f}", h.id, h.category, h.label, h.source[:40]] for h in result]))
    if result.in_collection is False:
        from .novelty import no_match_sentence

        print(f"\n{no_match_sentence(result.match_score, result.judged_by)}")
    elif result.suggestion:
        shares = ", ".join(f"{c} {s:.0%}" for c, s in result.suggestion.items())
        print(f"\nSuggested category: {shares}\n(Share of similarity-weighted votes among the nearest images: "
              "a retrieval statistic, not a diagnosis.)")
    if result.match_score is not None:
        print(f"Match score {result.match_score:.2f}: how likely the collection holds this kind of image.")
    if result.query_words is not None and result.query_words.sentence():
        print(f"\n{result.query_words.sentence()}")
    return 0


def cmd_models(args) -> int:
    from .policy import model_rows

    if args.index:  # as the app's Models tab shows it over an index: whether each model serves it, and its figures
        from .hub import resolve_index
        from .layout import IndexFolder
        from .policy import ModelPolicy

        rows = model_rows(ModelPolicy(IndexFolder(resolve_index(args.index)).require_current()))
    else:
        rows = model_rows()  # the registry alone
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(list(rows[0]), [list(r.values()) for r in rows]))
    return 0


def cmd_train(args) -> int:
    from .embedders.model_folder import ASSET_MODELS
    from .embedders.xray_lite0 import MODEL_NAME
    from .training import train_model

    out = args.out or ASSET_MODELS / MODEL_NAME  # the model folder's owner knows where shipped models live
    report = train_model(args.collection, out, epochs=args.epochs, folds=args.folds, seed=args.seed,
                         outer_folds=args.outer_folds, progress=not args.json,
                         log=lambda message: print(message, file=sys.stderr))
    print(json.dumps(report, indent=2) if args.json else f"Wrote the model to {out}.")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluation.plots import write_outputs
    from .evaluation.report import evaluation_text
    from .evaluation.run import evaluate_index

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    evaluation = evaluate_index(args.index, models=models, queries_file=args.queries, progress=True)
    written = write_outputs(evaluation, args.out, grid_queries=args.grid_queries)
    summary = evaluation.save_summary()
    shipped = None
    if args.ship_fusion:
        from .hybrid import ship_fusion

        fitted = evaluation.text.get("fusion")
        if not isinstance(fitted, dict):
            raise RetrievalError("--ship-fusion: this run fitted no hybrid fusion (it needs 2+ text models and the "
                                 "query file's train queries).")
        shipped = ship_fusion(fitted)
    if args.json:
        print(json.dumps(evaluation.to_dict(), indent=2))
    else:
        print(evaluation_text(evaluation))
        print(f"Wrote {len(written)} files to {args.out}/ and the summary for the app to {summary}.")
    if shipped:
        print(f"Wrote this index's fusion to {shipped}: the hybrid's default for an index not yet evaluated.",
              file=sys.stderr)
    return 0


def cmd_publish(args) -> int:
    from .publish import publish, push

    report = publish(args.index, args.out, licenses=args.licenses, title=args.title, as_dataset=args.as_dataset,
                     include_research_models=args.include_research_models, collection=args.collection,
                     log=lambda message: print(message, file=sys.stderr))
    if args.push:  # needs a Hub token (hf auth login, or HF_TOKEN)
        print(f"Uploaded: {push(args.out, args.push, as_dataset=args.as_dataset)}")
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    return 0


def _filters(pairs: list[str] | None) -> dict[str, list[str]]:
    """--filter FIELD=VALUE, repeated: a field given twice allows either value."""
    filters: dict[str, list[str]] = {}
    for pair in pairs or []:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise RetrievalError(f"--filter takes FIELD=VALUE (e.g. --filter view=lateral); got {pair!r}.")
        filters.setdefault(name.strip(), []).append(value.strip())
    return filters


def _milvus_uri(args) -> str:
    if not args.milvus_uri:
        raise RetrievalError("--store milvus needs --milvus-uri: a local file such as ./milvus.db (Milvus Lite) "
                             "or http://host:19530 (a Milvus server); see docs/scaling.md.")
    return args.milvus_uri


def _vector_store(args):
    """None for FAISS in this process, or a factory that reads the Milvus collections the build synced."""
    if args.store != "milvus":
        return None
    from .milvus_store import milvus_store

    return milvus_store(_milvus_uri(args), sync=False)


def _add_store_options(parser, settings) -> None:
    parser.add_argument("--store", choices=["faiss", "milvus"], default=settings.store,
                        help="where vectors are searched: FAISS in this process or Milvus (default: $XRAY_STORE, "
                             "else faiss)")
    parser.add_argument("--milvus-uri", default=settings.milvus_uri,
                        help="Milvus Lite file (path ending in .db) or server (http://host:19530); "
                             "default: $XRAY_MILVUS_URI")


def _add_search_options(parser) -> None:
    from .options import K_DEFAULT, K_MAX, K_MIN

    parser.add_argument("--model", help="model name (default: the index's best for the query type)")
    parser.add_argument("--k", type=int, default=K_DEFAULT,
                        help=f"number of results, {K_MIN}-{K_MAX} (default {K_DEFAULT})")
    parser.add_argument("--category", help="only this category")
    parser.add_argument("--filter", action="append", metavar="FIELD=VALUE",
                        help="only rows with this value of a metadata field (e.g. view=lateral, sex=F); repeat it: "
                             "fields combine, values of one field are alternatives")
    parser.add_argument("--min-score", type=float, help="minimum cosine similarity (default: per model)")


def add_archive_options(parser) -> None:
    """The options of a DICOM archive's build (archive.ArchiveOptions), defined once: `build` and app.py take them."""
    parser.add_argument("--modalities", help="a DICOM archive: the modalities to index, e.g. CR,DX,MG, or 'all' "
                                             "(default: CR,DX,IO,PX, the projection radiographs)")  # --help: no import
    parser.add_argument("--body-parts", metavar="FILE",
                        help="a DICOM archive: a JSON or CSV table BodyPartExamined -> category, merged over the "
                             "built-in one")
    parser.add_argument("--allow-burned-in", action="store_true",
                        help="a DICOM archive: also index images flagged BurnedInAnnotation=YES")


def archive_options(args):
    """The archive.ArchiveOptions of parsed arguments (see add_archive_options); CollectionError for bad ones."""
    from .archive import ArchiveOptions

    return ArchiveOptions.parse(args.modalities, args.body_parts, args.allow_burned_in)


def _add_index_option(parser, settings, role: str = "index to read: a folder or hf://datasets/OWNER/NAME") -> None:
    parser.add_argument("--index", default=settings.index, help=f"{role} (default: $XRAY_INDEX, else index/)")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable]]:
    settings = load_settings()  # every default the environment can set comes from here, as in app.py
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
    _add_index_option(p, settings, "index folder to build or refresh")
    p.add_argument("--models", help="comma-separated model names, or 'all' (default: the index's models, "
                                    "else tfidf,minilm,efficientnet-lite0)")
    p.add_argument("--skip-invalid", action="store_true", help="leave rows that fail validation out")
    p.add_argument("--split", default="train", help="split of a Hub dataset")
    p.add_argument("--force", action="store_true", help="rebuild even when the index is up to date")
    add_archive_options(p)
    _add_store_options(p, settings)
    p.add_argument("--milvus-index", choices=["FLAT", "HNSW", "IVF_FLAT"], default=settings.milvus_index,
                   help="Milvus index type: FLAT is exact (default: $XRAY_MILVUS_INDEX, else FLAT); see "
                        "docs/scaling.md for the others")
    p.add_argument("--json", action="store_true")
    commands["build"] = cmd_build

    p = verbs.add_parser("search", help="query an index")
    _add_index_option(p, settings)
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--text")
    query.add_argument("--image", help="image or DICOM file")
    query.add_argument("--similar", metavar="ID", help="more like this row id")
    query.add_argument("--study", metavar="ID", help="more from this row's study (an index of a DICOM archive)")
    _add_search_options(p)
    _add_store_options(p, settings)
    p.add_argument("--json", action="store_true")
    commands["search"] = cmd_search

    p = verbs.add_parser("models", help="list registered models and whether they can load here")
    p.add_argument("--index", help="also whether each model serves this built index (folder or hf://), with its "
                                   "evaluation figures, as the app's Models tab shows them")
    p.add_argument("--json", action="store_true")
    commands["models"] = cmd_models

    p = verbs.add_parser("train", help="train the xray-lite0 retrieval model (image + text) on a collection")
    p.add_argument("--collection", required=True, help="collection folder (imagefolder layout or category folders)")
    p.add_argument("--out", help="model folder to write "
                                                                     "(default: assets/models/xray-lite0)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the recipe's)")
    p.add_argument("--folds", type=int, default=3, help="inner whole-source folds that choose the variant and its "
                                                        "epochs (default 3)")
    p.add_argument("--outer-folds", type=int, default=5, help="outer whole-source folds that judge the choice and "
                                                              "decide the default image model (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same weights")
    p.add_argument("--json", action="store_true", help="print the training report as JSON")
    commands["train"] = cmd_train

    p = verbs.add_parser("evaluate", help="measure retrieval quality per model (tables, JSON, plots)")
    _add_index_option(p, settings)
    p.add_argument("--models", help="comma-separated models of the index (default: all of them); the TF-IDF "
                                    "and raw-pixel baselines always run alongside")
    p.add_argument("--queries", help="text query file (default: the packaged retrieval/queries/text_queries.json)")
    p.add_argument("--out", default="eval", help="folder for the table, JSON and PNGs (default: eval/)")
    p.add_argument("--grid-queries", type=int, default=6, help="queries shown in each result grid (default 6)")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the tables")
    p.add_argument("--ship-fusion", action="store_true", help="also make the hybrid fusion fitted here the shipped "
                                                              "default (retrieval/default_fusion.json)")
    commands["evaluate"] = cmd_evaluate

    p = verbs.add_parser("publish", help="write a complete Hugging Face Space (or Hub dataset) of an index, "
                                         "keeping only the images a licence policy allows")
    _add_index_option(p, settings, "index to publish: a folder or hf://datasets/OWNER/NAME")
    p.add_argument("--out", required=True, help="folder to write (new, empty, or written by publish before)")
    p.add_argument("--licenses", choices=["open", "noncommercial", "all"], default="open",
                   help="open (default): CC0, public domain, CC-BY(-SA), MIT/Apache/BSD; noncommercial: also "
                        "CC-BY-NC* and research-only terms; all: also unknown licences (check them first)")
    p.add_argument("--title", default="X-Ray Search", help="the Space's (or dataset's) title")
    p.add_argument("--as-dataset", action="store_true", help="write the index alone as a Hub dataset folder "
                                                             "(serve it with --index hf://datasets/OWNER/NAME)")
    p.add_argument("--include-research-models", action="store_true",
                   help="also ship trained models whose training images are outside the policy")
    p.add_argument("--collection", help="collection folder whose SOURCES.md describes the sources (default: "
                                        "found from the index's collection name, e.g. ../shared/NAME)")
    p.add_argument("--push", metavar="OWNER/NAME", help="then upload the folder to this Space (or dataset) "
                                                        "with huggingface_hub (needs a token)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    commands["publish"] = cmd_publish
    return parser, commands


def main(argv: list[str] | None = None) -> int:
    try:
        parser, commands = build_parser()
        args = parser.parse_args(argv)
        return commands[args.verb](args)
    except RetrievalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
