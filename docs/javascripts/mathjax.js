// MathJax 3 configuration for pymdownx.arithmatex in generic mode: arithmatex wraps each formula
// in an element of class "arithmatex" with \( \) or \[ \] delimiters, and MathJax typesets only
// those elements.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};

// mkdocs-material loads pages without a full reload (instant navigation) and emits each new page
// on document$, so the new page is typeset again from a clean state.
document$.subscribe(() => {
  MathJax.startup.output.clearCache();
  MathJax.typesetClear();
  MathJax.texReset();
  MathJax.typesetPromise();
});
