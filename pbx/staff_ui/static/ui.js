// calltrack staff pages: the log's play buttons and live rows, the call page's waveform and
// keywords.
// Everything works without this file; it only saves clicks and reloads.
(function () {
  "use strict";
  var bar = document.getElementById("player-bar");
  var barAudio = document.getElementById("bar-audio");
  var playing = null;

  function onPlayClick(event) {
    var button = event.target.closest("a.play");
    if (!button || !bar) return;
    event.preventDefault();
    if (playing === button && !barAudio.paused) { barAudio.pause(); return; }
    if (playing) playing.classList.remove("playing");
    playing = button;
    button.classList.add("playing");
    document.getElementById("player-title").textContent = button.dataset.title;
    bar.hidden = false;
    if (barAudio.getAttribute("src") !== button.dataset.src) barAudio.src = button.dataset.src;
    barAudio.play().catch(function () {});
  }
  document.addEventListener("click", onPlayClick);
  if (bar) {
    barAudio.addEventListener("pause", function () { if (playing) playing.classList.remove("playing"); });
    barAudio.addEventListener("play", function () { if (playing) playing.classList.add("playing"); });
    document.getElementById("player-close").addEventListener("click", function () {
      barAudio.pause(); bar.hidden = true;
    });
  }

  // filters: leave empty fields out of the address, so links to a filtered log stay short
  var filters = document.querySelector("form.filter-grid");
  if (filters) {
    filters.addEventListener("submit", function () {
      filters.querySelectorAll("input, select").forEach(function (field) {
        if (!field.value) field.disabled = true;
      });
    });
  }

  // live: calls that end while the log is open are added on top (page 1 only)
  var rows = document.getElementById("rows");
  if (rows && rows.dataset.live) {
    var poll = function () {
      var url = rows.dataset.live + (rows.dataset.live.indexOf("?") < 0 ? "?" : "&") +
        "after=" + rows.dataset.newest;
      fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
        .then(function (r) {
          if (!r.ok || r.redirected) throw new Error("stopped");
          return r.json();
        })
        .then(function (answer) {
          if (answer.count > 0) {
            var template = document.createElement("template");
            template.innerHTML = answer.html.trim();
            template.content.querySelectorAll("tr").forEach(function (tr) { tr.classList.add("new"); });
            rows.insertBefore(template.content, rows.firstChild);
            rows.dataset.newest = answer.newest_id;
            document.getElementById("calls").hidden = false;
            document.getElementById("empty").hidden = true;
            var total = document.getElementById("total");
            total.textContent = String(Number(total.textContent) + answer.count);
            document.getElementById("live").textContent =
              answer.count + (answer.count === 1 ? " new call" : " new calls") + " just now.";
          }
          setTimeout(poll, 5000);
        })
        .catch(function () {
          document.getElementById("live").textContent = "Live updates stopped; reload the page.";
        });
    };
    setTimeout(poll, 5000);
  }

  // the call page: the waveform shows progress and seeks where it is clicked
  var player = document.getElementById("player");
  var wave = document.getElementById("waveform");
  if (player && wave) {
    var bars = wave.querySelectorAll(":scope > rect");  // not the keyword markers' hit areas
    player.addEventListener("timeupdate", function () {
      var done = player.duration ? player.currentTime / player.duration * bars.length : 0;
      bars.forEach(function (rect, i) { rect.classList.toggle("done", i < done); });
    });
    wave.addEventListener("click", function (event) {
      if (event.target.closest("[data-at]")) return;  // a keyword marker: seeks to its time
      var box = wave.getBoundingClientRect();
      if (!player.duration) return;
      player.currentTime = (event.clientX - box.left) / box.width * player.duration;
    });
  }
  // the call page: a keyword (on the waveform or in the list) or a transcript line plays from
  // its time
  if (player) {
    document.addEventListener("click", function (event) {
      var mark = event.target.closest("[data-at]");
      if (!mark) return;
      event.preventDefault();
      player.currentTime = Number(mark.dataset.at);
      player.play().catch(function () {});
    });
  }
})();
