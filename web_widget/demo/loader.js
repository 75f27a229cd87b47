// On a real site this is the one pasted line (the widget is served by the calltrack daemon):
//   <script async src="https://TRACKER/widget.js" data-site="main"></script>
// The demo takes the daemon's address from ?tracker=http://host:port (default below) and the
// site's name in the config from ?site= (default main).
(function () {
  var query = new URLSearchParams(location.search);
  var tracker = query.get("tracker") || "http://127.0.0.1:8080";
  var s = document.createElement("script");
  s.async = true;
  s.src = tracker.replace(/\/+$/, "") + "/widget.js";
  s.setAttribute("data-site", query.get("site") || "main");
  document.head.appendChild(s);
})();
