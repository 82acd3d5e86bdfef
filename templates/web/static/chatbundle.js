// chatbundle's pages: served from /static so the Content-Security-Policy needs no inline script.
// Progressive enhancement: a "Copy" button next to each inbound URL and secret, in the page's
// language (its words are on <body>).
var words = document.body.dataset;
document.querySelectorAll("[data-copy]").forEach(function (el) {
  var button = document.createElement("button");
  button.type = "button"; button.className = "secondary"; button.textContent = words.copyButton || "Copy";
  button.setAttribute("aria-label",
    (words.copyLabelBefore || "") + (el.getAttribute("data-copy") || "") + (words.copyLabelAfter || ""));
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(el.textContent.trim()).then(function () {
      button.textContent = words.copiedButton || "Copied";
    });
  });
  el.insertAdjacentElement("afterend", button);
});
