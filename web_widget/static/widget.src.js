/*! calltrack widget: a tracking number per visitor; source and docs: web_widget/static/ */
// The readable source. web_widget/static/widget.js is built from it by `scripts/widget-size --write`
// (terser); the daemon serves that build at /widget.js.
(function (w, d) {
  "use strict";
  // loaded twice: the first one runs (an element with id="calltrack" is also w.calltrack)
  if (w.calltrack && w.calltrack.swap) return;
  var K = "calltrack", SKIP = /^(SCRIPT|STYLE|NOSCRIPT|TEXTAREA|SELECT|OPTION)$/,
    NOSWAP = "[data-calltrack-noswap]", MARK = "[data-calltrack]",
    // links that open a messenger or an SMS: their text must keep the number they really reach
    CHAT = /^\s*((sms|smsto|viber|whatsapp|tg):|(https?:)?\/\/(www\.)?(wa\.me|api\.whatsapp\.com|t\.me)\/)/i,
    // what is swapped in a tel: link besides its text (screen readers read the label or title)
    ATTRS = ["href", "aria-label", "title"],
    // a run of digits and phone separators; a run may hold several numbers
    RUN = /\+?\(?\d[\d\s().\-\u2010-\u2015]*\d/g,
    // country codes of one and two digits; all others have three
    CC = /^(?:[17]|2[07]|3[0-469]|4[013-9]|5[1-8]|6[0-6]|8[1246]|9[0-58])/,
    nums = [], shown = "", TX = new WeakMap(), AT = {}, WR = new Map(),
    api, site, every = 30, last = Date.now(), sent = 0, url, mem = {}, obs, busy, land;

  function digits(s) { return String(s || "").replace(/\D/g, ""); }

  function dec(s) { try { return decodeURIComponent(s); } catch (e) { return s; } }

  // the page a URL is: an in-page anchor (#faq) is not another page; a hash route (#/x, #!x,
  // Backbone's #products/12) is
  function page(u) { return String(u).replace(/#(?!!)[^/]*$/, ""); }

  // API numbers [{replace, own, number, display}] -> what matching needs; `own` is the site's
  // number in E.164 as the server read it (the server owns phone-number rules)
  function prep(list) {
    var out = [];
    (Array.isArray(list) ? list : []).forEach(function (x) {
      var T = digits(x && x.number), D = digits(x && x.own),
        m = CC.exec(D),
        c = m ? m[0].length : 3, cc = D.slice(0, c), N = D.slice(c);
      if (N.length > 5 && T) out.push({
        cc: cc, N: N, x: String(x.display || "+" + T),
        t: T.slice(0, c) == cc && T.length == D.length ? T.slice(c) : ""
      });
    });
    return out;
  }

  // how many trailing digits of O are the national part of e's number, or 0
  function fit(O, e) {
    var n = e.N.length, p = O.slice(0, -n), cc = e.cc;
    return O.length >= n && O.slice(-n) == e.N &&
      ["", "0", cc, "00" + cc, cc + "0", cc == "7" ? "8" : "0"].indexOf(p) >= 0 ? n : 0;
  }

  // one candidate number as written -> the tracking number written the same way, or undefined
  function one(s, L) {
    var O = digits(s), i = 0, k, e, off, n;
    for (k = 0; k < L.length; k++) {
      e = L[k];
      if ((n = fit(O, e))) {
        if (!e.t) return e.x;
        off = O.length - n;
        return s.replace(/\d/g, function (ch) { return i++ < off ? ch : e.t[i - 1 - off]; });
      }
    }
  }

  // every own number in text s, in any formatting, replaced keeping that formatting
  function swap(s, L) {
    return L.length ? String(s).replace(RUN, function (run) {
      var g = [], m, re = /\d+/g, out = "", pos = 0, i, j, a, b, r;
      while ((m = re.exec(run))) g.push([m.index, re.lastIndex]);
      for (i = 0; i < g.length; i++)
        for (j = Math.min(g.length, i + 17) - 1; j >= i; j--) {
          a = i ? g[i][0] : 0; b = g[j][1];
          if ((r = one(run.slice(a, b), L)) != null) {
            out += run.slice(pos, a) + r; pos = b; i = j; break;
          }
        }
      return out + run.slice(pos);
    }) : s;
  }

  // node's value from its original (as the site wrote it); site changes become the new original.
  // A value the widget wrote elsewhere is a copy the site made of it (a sticky header cloned on
  // scroll, innerHTML copied): its original is that one's, so the copy follows when the number
  // changes instead of keeping one since leased to another visitor. WR: each value written ->
  // its original (the first, if two were written the same way: a site's number is better than
  // a stale tracking number)
  function upd(map, n, cur, make, put) {
    var e = map.get(n), o = e && cur === e[1] ? e[0] : WR.has(cur) ? WR.get(cur) : cur,
      v = make(o);
    if (v !== cur) put(v);
    if (v !== o && !WR.has(v)) WR.set(v, o);
    if (v !== o || e) map.set(n, [o, v]);
  }

  function visit(n) {
    if (n.nodeType == 3) {
      return upd(TX, n, n.data, function (o) { return swap(o, nums); }, function (v) { n.data = v; });
    }
    if (n.nodeType != 1 || SKIP.test(n.tagName) || n.isContentEditable ||
      n.hasAttribute("data-calltrack-noswap")) return;
    var h = n.getAttribute("href");
    if (CHAT.test(h)) return;
    if (/^\s*tel:/i.test(h)) ATTRS.forEach(function (a) {
      var cur = n.getAttribute(a);
      // an href may be percent-encoded (WordPress's esc_url: tel:+7%20495%20123-45-67)
      if (cur != null) upd(AT[a] = AT[a] || new WeakMap(), n, cur, function (o) {
        var t = a == "href" ? dec(o) : o, v = swap(t, nums);
        return v == t ? o : v;
      }, function (v) { n.setAttribute(a, v); });
    });
    if (n.hasAttribute("data-calltrack")) {
      var want = digits(n.getAttribute("data-calltrack")), pick = nums.filter(function (e) {
        return !want || fit(want, e);
      })[0];
      return upd(TX, n, n.textContent, function (o) { return pick ? pick.x : o; },
        function (v) { n.textContent = v; });
    }
    for (var c = n.firstChild; c; c = c.nextSibling) visit(c);
  }

  // a node added or changed later: skip it inside noswap, an editable element (what is typed
  // there is the visitor's, or a page builder's to save) or a messenger link, redo a whole
  // data-calltrack element
  function enter(n) {
    var e = n.nodeType == 1 ? n : n.parentNode, a;
    if (!e || e.nodeType != 1 || e.isContentEditable || e.closest(NOSWAP) || SKIP.test(e.tagName) ||
      (a = e.closest("[href]")) && CHAT.test(a.getAttribute("href"))) return;
    visit(e.closest(MARK) || n);
  }

  function use(list) {
    var key = JSON.stringify(list || []);
    if (key == shown) return;
    shown = key; nums = prep(list);
    visit(d.documentElement);
    if (!obs && nums.length) {
      obs = new MutationObserver(function (recs) {
        try {
          recs.forEach(function (r) {
            if (r.type == "childList") r.addedNodes.forEach(enter);
            else enter(r.target);
          });
        } catch (e) { /* never break the site */ }
      });
      obs.observe(d.documentElement, {
        childList: true, subtree: true, characterData: true, attributes: true,
        attributeFilter: ATTRS.concat("data-calltrack")
      });
    }
  }

  function reveal() { d.documentElement.classList.add("calltrack-ready"); }

  // the first group of cookie n's value when all of it matches pattern p, or undefined
  function ck(n, p) {
    try { return (d.cookie.match(RegExp("(?:^|; )" + n + "=" + p + "(?:;|$)")) || [])[1]; } catch (e) { /* blocked */ }
  }

  function load() {
    var v;
    try { v = localStorage.getItem(K); } catch (e) { /* blocked */ }
    try {
      if (v == null) v = decodeURIComponent(ck(K, "([^;]*)") || "");
      return JSON.parse(v) || mem;
    } catch (e) { return mem; }
  }

  function save(o) {
    var v = JSON.stringify(mem = o);
    try { localStorage.setItem(K, v); } catch (e) {
      try {
        d.cookie = K + "=" + encodeURIComponent(v) + ";path=/;max-age=34560000;samesite=lax" +
          (location.protocol == "https:" ? ";secure" : "");
      } catch (e2) { /* blocked */ }
    }
  }

  function post(path, body) {
    var ac = w.AbortController && new AbortController(),
      t = setTimeout(function () { if (ac) ac.abort(); }, 1500);
    sent = Date.now();
    return fetch(api + path, {
      method: "POST", body: JSON.stringify(body), credentials: "omit", signal: ac && ac.signal
    }).then(function (r) {
      if (!r.ok) throw r.status;
      return r.json();
    }).finally(function () { clearTimeout(t); });
  }

  // the server decides whether the session goes on: keep whichever session it answered
  function got(r, st) {
    if (r.visitor_id) st.v = r.visitor_id;
    st.s = r.session_id;
    if (r.visitor_id || r.session_id) save(st);
    every = Math.max(1, +r.ping_interval_s || 30);
    use(r.numbers);
  }

  // a page view: the ids the widget has go to the server, which continues that session or
  // starts a new one (idle too long, a new campaign): the session rules live on the server only
  // One at a time: a second one while the first is on its way (the site rewrote its URL, or a
  // route changed) would go without ids and start another visitor, session and number; the
  // page it missed is sent once the answer is in, with the session's ids.
  function start(landing) {
    if (busy) return busy;
    var st = load(), nav = w.navigator;
    url = location.href;
    return busy = post("visits", {
      // no session yet (the first visit did not get through): the page the visit landed on
      site: site, url: landing || !st.s && land || url, referrer: d.referrer || undefined,
      visitor_id: st.v || undefined, session_id: st.s || undefined,
      dnt: nav.doNotTrack == "1" || !!nav.globalPrivacyControl || undefined,
      // the ad platforms' ids of this browser: Google Analytics' client id is what follows
      // "GA1.1." in _ga (not _ga_<stream>), Metrica's is _ym_uid; the server checks both
      ga_client_id: ck("_ga", "GA\\d\\.\\d+\\.(\\d+\\.\\d+)"), ym_client_id: ck("_ym_uid", "(\\d+)")
    }).then(function (r) { got(r, st); }).finally(function () { busy = 0; if (route) setTimeout(route); });
  }

  // keep the session's number: ping; a new page (route) or a session the server has ended
  // (404) is a visit
  function sync() {
    var st = load();
    return st.s && page(location.href) == page(url) ? post("visits/" + encodeURIComponent(st.s) + "/ping", {
      visitor_id: st.v
    }).then(function (r) { got(r, st); }, function (e) { if (e == 404) return start(); }) : start();
  }

  function safe(f) {
    return function () {
      try { var p = f(); if (p && p.then) p.then(null, function () { /* keep numbers */ }); } catch (e) { /* keep numbers */ }
    };
  }

  var tick = safe(function () { if (!d.hidden && last > sent) return sync(); });

  function loop() { setTimeout(function () { tick(); loop(); }, every * 1e3); }

  function act() { last = Date.now(); }

  w.calltrack = {
    // calltrack.swap("8 (495) 123-45-67", [{replace, number, display}]) -> the text with numbers swapped
    swap: function (s, list) { return swap(s, prep(list)); }
  };

  try {
    var me = d.currentScript || d.querySelector("script[data-site][src*='widget']"),
      // the URL the page was loaded with, even if the site has since rewritten it (or this
      // script was delayed until the first interaction by a page-speed plugin)
      nav = performance.getEntriesByType && performance.getEntriesByType("navigation")[0];
    site = me.getAttribute("data-site");
    api = new URL("api/v1/", me.src).href;
    start(land = nav && nav.name).then(loop, function (e) {
      // API down, or too many new visits from this network for now: try again on the next
      // activity; another 4xx would be refused again
      if (!(e >= 400 && e < 500) || e == 429) loop();
    }).finally(reveal);
    ["scroll", "click", "keydown", "touchstart", "mousemove", "pointerdown"].forEach(function (e) {
      w.addEventListener(e, act, { capture: true, passive: true });
    });
    d.addEventListener("visibilitychange", function () {
      if (!d.hidden) { act(); if (Date.now() - sent >= every * 1e3) tick(); }
    });
    // single-page apps: a route change is a page view, sent as a visit like a page load
    var route = safe(function () {
      if (page(location.href) != page(url)) { act(); return start(); }
    });
    ["pushState", "replaceState"].forEach(function (k) {
      var f = history[k];
      history[k] = function () {
        var r = f.apply(this, arguments);
        setTimeout(route);
        return r;
      };
    });
    w.addEventListener("popstate", function () { setTimeout(route); });
  } catch (e) {
    try { reveal(); } catch (e2) { /* nothing to do */ }
  }
})(window, document);
