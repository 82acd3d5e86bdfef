// chatbundle's pages: served from /static so the Content-Security-Policy needs no inline script.
// Progressive enhancement: a "Copy" button next to each inbound URL and secret.
document.querySelectorAll("[data-copy]").forEach(function (el) {
  var button = document.createElement("button");
  button.type = "button"; button.className = "secondary"; button.textContent = "Copy";
  button.setAttribute("aria-label", "Copy " + (el.getAttribute("data-copy") || "value"));
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(el.textContent.trim()).then(function () { button.textContent = "Copied"; });
  });
  el.insertAdjacentElement("afterend", button);
});
