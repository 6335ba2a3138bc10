"""How well an index or a training run retrieves: one home for the metrics, the protocols, the query set, the
report and the plots. Both `python -m retrieval evaluate` and training import it; it writes the summary the app
reads, whose format and figure names live below the engine in retrieval/evaluation_summary.py.

    metrics.py       P@k, recall, hit rate, AP/mAP, the confusion matrix, and the one exact top-k ranking
    figures.py       the figure names (p@1 ... hit@10), the relevance levels, one block of figures
    queries.py       the text query set: one type, one loader, one file (retrieval/queries/text_queries.json)
    rows.py          a row as the protocols see it (`Item`) and the training-data fingerprint
    folds.py         cross-source folds (whole sources) and stratified folds
    protocols.py     cross-source, in-source out-of-fold, in-sample leave-one-out, text on pixels
    leave_one_out.py leave-one-out judging, the random expectation and the relevance-feedback gain
    pixels.py        the raw-pixel baseline and the near duplicates (stored pHash, else recomputed)
    index_access.py  the one door to a served index (every SearchEngine member the evaluation uses)
    run.py           `evaluate_index`: one run over an index, its `Evaluation`
    report.py        the run as text tables;  plots.py  the run as PNGs

This file imports nothing: importing one module of the package loads only what that module needs.
"""
