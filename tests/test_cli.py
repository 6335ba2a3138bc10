"""The command line: `--help` starts without the heavy libraries, and its defaults come from the settings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

HEAVY = ("torch", "gradio", "datasets", "faiss", "transformers", "sklearn", "PIL", "numpy")
VERBS = ("validate", "build", "search", "models", "train", "evaluate", "publish")


def imported_by(*argv: str) -> set[str]:
    """The modules a fresh interpreter has loaded after `python -m retrieval ARGV` (which exits through --help)."""
    probe = ("import json, runpy, sys\n"
             f"sys.argv = ['retrieval', *{list(argv)!r}]\n"
             "try:\n    runpy.run_module('retrieval', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [("--help",), *((verb, "--help") for verb in VERBS)])
def test_help_loads_no_heavy_library(argv):
    modules = imported_by(*argv)
    assert not {name for name in modules if name.split(".")[0] in HEAVY}
    ours = sorted(name for name in modules if name.startswith("retrieval"))
    assert len(ours) <= 8, ours  # the CLI, its settings, errors, tables and the query options: nothing that embeds


def test_index_defaults_to_the_xray_index_setting(monkeypatch, tmp_path):
    from retrieval.cli import build_parser

    monkeypatch.setenv("XRAY_INDEX", str(tmp_path / "elsewhere"))
    parser, _ = build_parser()
    for verb in ("build", "search", "evaluate"):
        extra = {"build": ["--collection", "c"], "search": ["--text", "knee"], "evaluate": []}[verb]
        assert parser.parse_args([verb, *extra]).index == str(tmp_path / "elsewhere")
    assert parser.parse_args(["publish", "--out", "space"]).index == str(tmp_path / "elsewhere")
    monkeypatch.delenv("XRAY_INDEX")
    assert build_parser()[0].parse_args(["search", "--text", "knee"]).index == "index"


def test_a_bad_setting_is_an_error_message_not_a_traceback(monkeypatch, capsys):
    from retrieval.cli import main

    monkeypatch.setenv("XRAY_STORE", "elastic")
    assert main(["models"]) == 2
    assert "XRAY_STORE='elastic' is not a vector store" in capsys.readouterr().err
