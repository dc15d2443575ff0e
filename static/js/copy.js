// "Copy" buttons next to secrets shown once: <button data-copy="element-id">.
// A static file, not an inline script, so the Content-Security-Policy can forbid inline scripts.
document.querySelectorAll("[data-copy]").forEach(function (button) {
  button.addEventListener("click", function () {
    var source = document.getElementById(button.dataset.copy);
    var text = source.textContent;
    (navigator.clipboard ? navigator.clipboard.writeText(text) : Promise.reject()).then(
      function () { button.textContent = "Copied"; },
      function () {
        var range = document.createRange();
        range.selectNodeContents(source);
        var selection = getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Press Ctrl+C";
      }
    );
  });
});
