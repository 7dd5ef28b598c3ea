// "Go back" on the 403 page: the previous page when there is one, else the link's own address.
// A file, not an onclick attribute: the Content-Security-Policy (script-src 'self') refuses inline handlers.
document.addEventListener("DOMContentLoaded", function () {
  var back = document.getElementById("forbidden-back");
  if (!back) return;
  back.addEventListener("click", function (event) {
    if (window.history.length > 1) {
      event.preventDefault();
      window.history.back();
    }
  });
});
