/* The page behaviour that used to live in inline handlers and inline <script> blocks, so that the
   Content-Security-Policy can say script-src 'self' (no 'unsafe-inline', no 'unsafe-eval').
   Markup opts in with data attributes:
     <form data-confirm="Really?">        asks before submitting
     <select data-autosubmit>             submits its form on change
     <form data-table-filters>            a table's filters: submits the sort and columns the URL has now
     <form data-table-columns>            a table's column chooser: submits the filters and sort too
     <button data-copy="text">            copies text; data-copy-prev copies the previous element's text
     <select data-toggle="id" data-toggle-value="custom">  shows #id only for that value
     <div data-plotly-figure="script-id" data-plotly-src="...plotly.min.js">  draws the figure in
                                          <script type="application/json" id="script-id"> (json_script,
                                          provisioner/charts.py) with the vendored plotly.js (loaded once) */
(function () {
  "use strict";

  document.addEventListener("submit", function (e) {
    var form = e.target.closest && e.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.getAttribute("data-confirm"))) { e.preventDefault(); }
  }, true);

  // A table's filter form carries the list's sort and column choice; its column chooser carries
  // the filters and the sort. A sort link swaps only the table (htmx) and pushes the URL, so the
  // server-rendered hidden fields may be stale: on submit, take those parameters from the URL.
  function carry(form, names) {
    var params = new URLSearchParams(window.location.search);
    form.querySelectorAll("input[type=hidden][data-carried]").forEach(function (el) { el.remove(); });
    names(params).forEach(function (name) {
      form.querySelectorAll("input[type=hidden][name='" + name + "']").forEach(function (el) { el.remove(); });
      params.getAll(name).forEach(function (value) {
        var input = document.createElement("input");
        input.type = "hidden";
        input.name = name;
        input.value = value;
        input.setAttribute("data-carried", "");
        form.appendChild(input);
      });
    });
  }

  function keepSort(form) {
    if (form.hasAttribute("data-table-filters")) {
      carry(form, function () { return ["sort", "cols", "cols_set"]; });
    } else if (form.hasAttribute("data-table-columns")) {
      carry(form, function (params) {
        return Array.from(new Set(params.keys())).filter(function (k) {
          return k !== "cols" && k !== "cols_set" && k !== "page";
        });
      });
    }
  }

  document.addEventListener("submit", function (e) {
    if (e.target.tagName === "FORM") { keepSort(e.target); }
  });

  document.addEventListener("change", function (e) {
    var el = e.target;
    if (el.hasAttribute && el.hasAttribute("data-autosubmit") && el.form) { keepSort(el.form); el.form.submit(); }
    if (el.hasAttribute && el.hasAttribute("data-toggle")) { toggle(el); }
  });

  document.addEventListener("click", function (e) {
    var btn = e.target.closest && e.target.closest("[data-copy], [data-copy-prev]");
    if (!btn || !navigator.clipboard) { return; }
    var text = btn.hasAttribute("data-copy") ? btn.getAttribute("data-copy") : btn.previousElementSibling.innerText;
    navigator.clipboard.writeText(text);
  });

  function toggle(el) {
    var target = document.getElementById(el.getAttribute("data-toggle"));
    if (target) { target.style.display = el.value === el.getAttribute("data-toggle-value") ? "flex" : "none"; }
  }

  var plotlyWaiters = [];
  function withPlotly(src, fn) {
    if (window.Plotly) { fn(); return; }
    plotlyWaiters.push(fn);
    if (document.getElementById("plotly-js")) { return; }
    var s = document.createElement("script");  // loaded once per page, on first use
    s.id = "plotly-js"; s.src = src;
    s.addEventListener("load", function () { var w = plotlyWaiters; plotlyWaiters = []; w.forEach(function (f) { f(); }); });
    document.head.appendChild(s);
  }

  function drawCharts(root) {
    (root || document).querySelectorAll("[data-plotly-figure]").forEach(function (el) {
      var tag = document.getElementById(el.getAttribute("data-plotly-figure"));
      // a chart preserved across a parent's swap (hx-preserve) is already drawn: leave its layers alone
      if (!tag || tag.hasAttribute("data-plotly-drawn")) { return; }
      tag.setAttribute("data-plotly-drawn", "");
      var fig = JSON.parse(tag.textContent);
      var config = fig.config || {displayModeBar: false, responsive: true};
      withPlotly(el.getAttribute("data-plotly-src"), function () {
        window.Plotly.react(el, fig.data, fig.layout, config);
        if (!el.__drillBound) {  // a trace's meta.drill: the query string of its drill-down view
          el.__drillBound = true;
          el.on("plotly_click", function (ev) {
            var pt = ev && ev.points && ev.points[0];
            // a point's own drill-down (customdata: its period) before its trace's (meta.drill: its group)
            var q = pt && (typeof pt.customdata === "string" ? pt.customdata : pt.data && pt.data.meta && pt.data.meta.drill);
            if (typeof q === "string" && q) { window.location.search = q; }
          });
        }
      });
    });
  }

  function init(root) {
    drawCharts(root);
    (root || document).querySelectorAll("[data-toggle]").forEach(toggle);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { init(document); });
  } else {
    init(document);
  }
  document.addEventListener("htmx:afterSettle", function (e) { init(e.target); });
})();
