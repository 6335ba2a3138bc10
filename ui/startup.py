"""What the app serves before it can search, on a Hugging Face Space (where nobody watches the console): a page
that shows the index being built, then the app itself; or a page that says what to set.

`build_behind_page` serves a small page on the app's address while the index is built, closes it and serves the
real app on the same address; the page reloads itself once the app answers in its place.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from typing import Callable

import gradio as gr

BUILD_TITLE = "X-Ray Search — building the index"
POLL_SECONDS = 2
# Reload when the address serves something other than this page (the app), retrying while nothing answers.
RELOAD_JS = """() => { setInterval(async () => {
  try { const r = await fetch(window.location.href, {cache: "no-store"}); const t = await r.text();
        if (r.ok && !t.includes("building the index")) window.location.reload(); } catch (e) {}
}, 5000); }"""
WHAT_TO_SET = """

**On a Hugging Face Space**, do one of these (Settings → Variables and secrets), then restart the Space:

* set `XRAY_INDEX` to a prebuilt index published as a Hub dataset: `hf://datasets/OWNER/NAME`
  (`python -m retrieval publish --index index --out DIR --as-dataset --push OWNER/NAME`);
* or set `XRAY_COLLECTION` to the collection's Hub dataset id (`OWNER/NAME`): the first start builds the index;
* or push a Space that carries its index: `python -m retrieval publish --index index --out DIR --push OWNER/SPACE`.
"""


NO_INDEX = """No index in {index}/ and no collection to build one from. Either build it first:
    python -m retrieval build --collection ../shared/xray-collection --index {index}
or build and serve in one step:
    python app.py --collection ../shared/xray-collection
(--collection also takes a Hugging Face dataset id; on a Space, set the variable XRAY_COLLECTION.)"""


def on_space(environ=None) -> bool:
    """True on a Hugging Face Space (the host sets SPACE_ID)."""
    return bool((os.environ if environ is None else environ).get("SPACE_ID"))


class BuildProgress:
    """The build's log lines with their time, and how it ended; read by the page every few seconds."""

    def __init__(self, what: str):
        self.what = what
        self.started = time.monotonic()
        self.lines: list[str] = []
        self.error: str | None = None
        self._lock = threading.Lock()

    def log(self, message: str) -> None:
        print(message, flush=True)
        with self._lock:
            self.lines.append(f"[{time.monotonic() - self.started:6.0f} s] {message}")

    def fail(self, message: str) -> None:
        with self._lock:
            self.error = message

    def markdown(self) -> str:
        with self._lock:
            lines, error = list(self.lines[-30:]), self.error
        elapsed = time.monotonic() - self.started
        if error:
            head = f"**The index could not be built** after {elapsed:.0f} s:\n\n```\n{error}\n```\n{WHAT_TO_SET}"
        else:
            head = (f"Building the search index from `{self.what}` — {elapsed:.0f} s so far. Embedding takes about "
                    f"a minute per thousand images on 2 CPUs; an unchanged collection is ready at once. This page "
                    f"turns into the search app by itself when the index is ready.")
        return head + ("\n\n```\n" + "\n".join(lines) + "\n```" if lines else "")


def build_page(progress: BuildProgress) -> gr.Blocks:
    with gr.Blocks(title=BUILD_TITLE, analytics_enabled=False) as page:
        gr.Markdown(f"# {BUILD_TITLE}")
        status = gr.Markdown(progress.markdown(), elem_id="build-status")
        gr.Timer(POLL_SECONDS).tick(progress.markdown, None, status, api_visibility="private", queue=False)
    return page


def serve_on_space(args, build_index, engine_class, build_demo, launch, no_index: str) -> int:
    """On a Space without a ready index: build it behind a progress page when a collection is given
    (`args.collection`), else serve a page that says what to set. `args` are the app's options (index,
    collection, host, port, share, mcp); the other arguments are the app's own functions."""
    if not args.collection:
        return serve_help(no_index.format(index=args.index), args.host, args.port)

    def build(log):
        report = build_index(args.collection, args.index, log=log, progress=False)
        log(f"Index ready: {report.rows} images. Starting the app.")
        return build_demo(engine_class(args.index))

    return build_behind_page(build, lambda app: launch(app, args.host, args.port, share=args.share, mcp=args.mcp),
                             args.collection, args.host, args.port)


def build_behind_page(build: Callable[[Callable[[str], None]], gr.Blocks], serve: Callable[[gr.Blocks], object],
                      what: str, host: str, port: int) -> int:
    """Serve the progress page on host:port while `build(log)` builds the index and returns the app's Blocks;
    then close the page and `serve(app)` on the same address. A failed build stays on the page with its reason
    (a Space that exited would only restart into the same failure)."""
    progress = BuildProgress(what)
    page = build_page(progress)
    page.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, js=RELOAD_JS)
    try:
        app = build(progress.log)
    except Exception as error:  # noqa: BLE001 — shown to the person instead of a dead Space
        traceback.print_exc()
        progress.fail(f"{error.__class__.__name__}: {error}")
        page.block_thread()
        return 1
    page.close()
    serve(app)
    return 0


def serve_help(message: str, host: str, port: int) -> int:
    """A page that says what to set when there is neither an index nor a collection (served until stopped)."""
    print(message, flush=True)
    with gr.Blocks(title="X-Ray Search — no index", analytics_enabled=False) as page:
        gr.Markdown("# X-Ray Search has no index yet\n\n```\n" + message + "\n```" + WHAT_TO_SET)
    page.launch(server_name=host, server_port=port, quiet=True)
    return 2


__all__ = ["on_space", "serve_on_space", "BuildProgress", "build_page", "build_behind_page", "serve_help"]
