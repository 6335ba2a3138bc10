"""Saved traces: a restart runs MiniLM from the trace the last start saved, with torch and tokenizers alone, and gets
the same vectors bit for bit; changed weights, precision or torch never read an old trace; a damaged one is ignored."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retrieval.embedders import saved_traces
from retrieval.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["hip fracture", "no acute cardiopulmonary disease", "severe knee osteoarthritis, grade 4", "a",
         "chest x-ray " * 200, "Ödem, épanchement — pleural effusion?", "KL3 knee OA, no fx"]  # one cut at 256


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "traces"
    monkeypatch.setenv("XRAY_TRACE_CACHE", str(folder))
    return folder


def minilm(bf16: bool = False):
    from retrieval.embedders.builtin import MeanPooledEncoder, _minilm_location

    return MeanPooledEncoder(_minilm_location()[0], "cpu", 256, bf16=bf16)


def test_the_setting_names_a_folder_the_user_s_cache_or_none():
    assert load_settings({"XRAY_TRACE_CACHE": "/srv/traces"}).trace_cache == Path("/srv/traces")
    assert load_settings({"XDG_CACHE_HOME": "/c"}).trace_cache == Path("/c/xray-search/traces")
    assert load_settings({"XRAY_TRACE_CACHE": "off"}).trace_cache is None
    assert load_settings({"XRAY_TRACE_CACHE": " OFF "}).trace_cache is None


@pytest.mark.usefixtures("real_models")
@pytest.mark.parametrize("bf16", [False, True])
def test_a_restart_runs_the_saved_trace_and_gives_the_same_tokens_and_vectors(cache, bf16):
    first = minilm(bf16)
    assert not first.from_saved_trace and list(cache.glob("*.pt")) == []
    before = first.encode(TEXTS, batch_size=16)  # the first pass traces, and saves the trace
    assert [path.stem for path in cache.glob("*.pt")] == [first._saved_name]

    restarted = minilm(bf16)
    assert restarted.from_saved_trace and restarted.traced and restarted.dim == first.dim
    for text in TEXTS:  # the tokenizer transformers drove, with its padding and truncation
        ours, theirs = restarted._tokens([text, "a"]), first._tokens([text, "a"])
        assert list(ours) == list(theirs) and all(np.array_equal(ours[k], theirs[k]) for k in ours)
    for size in (16, 3, 1):
        assert np.array_equal(restarted.encode(TEXTS, batch_size=size), first.encode(TEXTS, batch_size=size))
    assert np.array_equal(restarted.encode(TEXTS, batch_size=16), before)


@pytest.mark.usefixtures("real_models")
def test_a_damaged_trace_is_ignored_and_replaced(cache):
    name = minilm()._saved_name  # loads through transformers: nothing saved yet
    (cache / f"{name}.pt").parent.mkdir(parents=True)
    (cache / f"{name}.pt").write_bytes(b"not a trace")
    encoder = minilm()
    assert not encoder.from_saved_trace
    vectors = encoder.encode(TEXTS[:3], batch_size=16)
    assert saved_traces.load(name) is not None  # replaced by the trace this start made
    assert np.array_equal(minilm().encode(TEXTS[:3], batch_size=16), vectors)


@pytest.mark.usefixtures("real_models")
def test_only_the_trace_the_name_describes_is_saved(cache):
    encoder = minilm(bf16=False)
    encoder._bf16 = True  # switched after loading (a benchmark does): no longer what the name says
    encoder.encode(TEXTS[:2], batch_size=16)
    assert encoder.traced and list(cache.glob("*.pt")) == []


@pytest.mark.usefixtures("real_models")
def test_off_keeps_no_trace(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAY_TRACE_CACHE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    encoder = minilm()
    encoder.encode(TEXTS[:2], batch_size=16)
    assert encoder.traced and not minilm().from_saved_trace
    assert list(tmp_path.rglob("*.pt")) == []


def test_changed_weights_precision_or_length_never_read_an_old_trace(tmp_path):
    folder = tmp_path / "pkg" / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"hidden_size": 384}))
    (folder / "tokenizer.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    name = saved_traces.key(folder, "cpu", 256, False)
    assert name == saved_traces.key(folder, "cpu", 256, False)  # the same model: the same name
    assert name.startswith("pkg_model-fp32-")
    others = {saved_traces.key(folder, "cpu", 256, True), saved_traces.key(folder, "cpu", 128, False)}
    (folder / "model.safetensors").write_bytes(b"new weights")
    others.add(saved_traces.key(folder, "cpu", 256, False))
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "config.json").write_text(json.dumps({"hidden_size": 768}))
    others.add(saved_traces.key(folder, "cpu", 256, False))
    assert name not in others and len(others) == 4


@pytest.mark.usefixtures("real_models")
def test_a_newer_trace_of_the_same_model_and_precision_replaces_the_old_one(cache):
    encoder = minilm()
    encoder.encode(TEXTS[:1], batch_size=16)
    family = encoder._saved_name.rsplit("-", 1)[0]
    stale, other_precision = cache / f"{family}-0000000000.pt", cache / "pkg_model-bf16-0000000000.pt"
    for path in (stale, other_precision):
        path.write_bytes(b"an older trace")
    saved = saved_traces.save(encoder._saved_name, encoder._forward(), encoder._tokenizer, ["input_ids",
                              "token_type_ids", "attention_mask"], 256, encoder.dim)
    assert saved is not None and saved.is_file() and not stale.exists() and other_precision.exists()


RESTART = """
import json, sys
from retrieval.search import SearchEngine
result = SearchEngine(sys.argv[1]).search_text("knee osteoarthritis", model="minilm", k=5)
print(json.dumps({"transformers": "transformers" in sys.modules,
                  "rows": [(hit.row, round(hit.score, 6)) for hit in result.hits]}))
"""


@pytest.mark.usefixtures("real_models")
def test_the_app_s_second_start_answers_without_importing_transformers(subset_index, tmp_path):
    environment = {**os.environ, "XRAY_TRACE_CACHE": str(tmp_path / "traces"), "PYTHONPATH": str(REPO)}

    def start() -> dict:
        done = subprocess.run([sys.executable, "-c", RESTART, str(subset_index)], env=environment, cwd=REPO,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    first, second = start(), start()
    assert first["transformers"] and not second["transformers"]
    assert second["rows"] == first["rows"] and len(first["rows"]) == 5
