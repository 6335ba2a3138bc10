// Paste an image anywhere on the page while the image tab is open, or drop one on a box that already holds a
// file (Gradio only takes drops on an empty box): either replaces the query file, which starts a search.
() => {
  const box = () => document.querySelector("#query-file");
  async function replace(file) {
    const element = box();
    if (!element.querySelector("input[type=file]")) {  // a file is there: clear it to get the input back
      element.querySelector("button[aria-label=Clear]")?.click();
      for (let i = 0; i < 40 && !element.querySelector("input[type=file]"); i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    const input = element.querySelector("input[type=file]");
    if (!input) return;
    const transfer = new DataTransfer();
    transfer.items.add(file);
    input.files = transfer.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }
  document.addEventListener("paste", (event) => {
    const file = event.clipboardData?.files?.[0];
    if (!file || !box() || box().offsetParent === null) return;
    event.preventDefault();
    replace(file);
  });
  for (const type of ["dragover", "drop"]) {
    document.addEventListener(type, (event) => {
      const element = event.target.closest?.("#query-file");
      if (!element || element.querySelector("input[type=file]")) return;
      event.preventDefault();
      const file = event.dataTransfer?.files?.[0];
      if (type === "drop" && file) replace(file);
    });
  }
}
