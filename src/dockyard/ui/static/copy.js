// Copy buttons: <button data-copy="text">. Loaded from the page's origin (the CSP allows no inline code).
document.addEventListener("click", function (event) {
  var button = event.target.closest("button[data-copy]");
  if (!button) return;
  var text = button.getAttribute("data-copy");
  var done = function (label) {
    button.textContent = label;
    setTimeout(function () { button.textContent = "Copy"; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(function () { done("Copied"); }, function () { done("Failed"); });
  } else {  // plain HTTP to another host: no clipboard API; select the command for Ctrl+C instead
    var code = button.parentElement.querySelector("code");
    var range = document.createRange();
    range.selectNodeContents(code);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    done("Press Ctrl+C");
  }
});
