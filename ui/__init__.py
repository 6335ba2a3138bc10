"""What the Gradio app needs besides the library: the page's script and style, result formatting, and one
fix to Gradio's file cache. app.py holds the layout, the wiring and the handlers."""

from pathlib import Path

ASSETS = Path(__file__).parent
PAGE_JS = (ASSETS / "page.js").read_text()
PAGE_CSS = (ASSETS / "page.css").read_text()
