// Forms that change something for good ask first: <form data-confirm="question">. From the page's
// origin (the CSP allows no inline code); without JavaScript the form is sent without asking.
document.addEventListener("submit", function (event) {
  var form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
});
