"""The inline stylesheet and script of the HTML report (`convo_sim._report_html`).

Kept apart from the page generator so that the generator reads as Python.
The script never turns data into markup: it only reads `data-*`
attributes, toggles `hidden` and writes a count with `textContent`. The
page's Content-Security-Policy admits it by its SHA-256, so editing it here
is all it takes.
"""

from __future__ import annotations

__all__ = ["CSS", "PAGED_SCRIPT", "SCRIPT"]

CSS = """
:root { --fg:#1f2328; --muted:#656d76; --line:#d0d7de; --bg:#f6f8fa; --pass:#1a7f37;
  --fail:#cf222e; --accent:#0969da; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica,
  Arial, sans-serif; color:var(--fg); background:#fff; }
header { padding:18px 28px 8px; border-bottom:1px solid var(--line); background:var(--bg); }
h1 { margin:0 0 4px; font-size:22px; } h2 { font-size:17px; margin:26px 0 10px; }
main { padding:8px 28px 40px; max-width:1280px; }
.muted { color:var(--muted); margin:4px 0; }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin-top:16px; }
.card { border:1px solid var(--line); border-radius:8px; padding:10px 14px; min-width:150px;
  background:#fff; }
.card .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .value { font-size:24px; font-weight:600; }
.card .extra { color:var(--muted); font-size:12px; min-height:16px; }
.ci { color:var(--muted); font-size:12px; white-space:nowrap; }
.charts { display:flex; flex-wrap:wrap; align-items:flex-start; gap:16px; margin-top:18px; }
.chart { margin:0; border:1px solid var(--line); border-radius:8px; padding:10px 12px;
  flex:0 0 auto; max-width:100%; }
.chart svg { display:block; max-width:100%; height:auto; }
.chart figcaption { font-weight:600; margin-bottom:6px; }
svg text { font: 11px system-ui, sans-serif; fill:var(--fg); }
svg .name { fill:var(--fg); } svg .tick, svg .val { fill:var(--muted); }
svg .axis { stroke:var(--line); }
svg .bar { fill:var(--accent); } svg .bar.pass { fill:var(--pass); } svg .bar.fail { fill:var(--fail); }
svg .whisker { stroke:var(--fg); stroke-width:1.5; fill:none; }
.scroll { overflow-x:auto; }
table.grid { border-collapse:collapse; width:100%; }
.grid th, .grid td { border-bottom:1px solid var(--line); padding:5px 8px; text-align:left;
  vertical-align:top; }
.grid th { background:var(--bg); font-weight:600; white-space:nowrap; }
.pass { color:var(--pass); font-weight:600; } .fail { color:var(--fail); font-weight:600; }
.filters { display:flex; flex-wrap:wrap; gap:16px; align-items:center; padding:8px 12px;
  border:1px solid var(--line); border-radius:8px; background:var(--bg); margin-bottom:10px; }
.filters select { margin-left:4px; }
details.rollout { border:1px solid var(--line); border-radius:8px; margin:8px 0; }
details.rollout > summary { cursor:pointer; padding:8px 12px; }
details.rollout[open] > summary { border-bottom:1px solid var(--line); background:var(--bg); }
.body { padding:8px 12px; }
.badge { display:inline-block; min-width:42px; text-align:center; border-radius:10px;
  padding:0 6px; color:#fff; font-weight:600; }
.badge.pass { background:var(--pass); color:#fff; } .badge.fail { background:var(--fail); color:#fff; }
.verdicts { margin-bottom:8px; }
code.details { font-size:12px; color:var(--muted); word-break:break-word; }
.fidelity { color:var(--muted); }
.error { color:var(--fail); }
ol.messages { list-style:none; padding:0; margin:8px 0; }
.msg { border-left:3px solid var(--line); padding:4px 10px; margin:6px 0; }
.msg.user { border-color:var(--accent); } .msg.assistant { border-color:var(--pass); }
.msg.system, .msg.developer { border-color:var(--muted); }
.msg.system .text, .msg.developer .text { max-height:6em; overflow:auto; color:var(--muted); }
.msg .role { font-size:12px; color:var(--muted); font-weight:600; }
.msg .text { white-space:pre-wrap; word-break:break-word; }
.msg .call { font-family:ui-monospace, Menlo, Consolas, monospace; font-size:12px; }
.msg.tool { border-color:var(--muted); border-left-style:dashed; }
.msg.tool .text { font-family:ui-monospace, Menlo, Consolas, monospace; font-size:12px; }
ul.scores { margin:4px 0 0; padding-left:18px; font-size:12px; }
p.user-failure { color:var(--fail); font-size:13px; }
p.user-failure.none { color:var(--muted); }
table.records { width:auto; margin:4px 0; font-size:12px; }
table.records td, table.records th { padding:2px 8px; }
td.endings { white-space:nowrap; }
.pager { margin-left:auto; }
"""

SCRIPT = """
(function () {
  "use strict";
  var items = Array.prototype.slice.call(document.querySelectorAll("details.rollout"));
  var failed = document.getElementById("f-failed");
  var termination = document.getElementById("f-termination");
  var persona = document.getElementById("f-persona");
  var blame = document.getElementById("f-blame");
  var count = document.getElementById("shown-count");
  function choose(select, value) {
    var known = Array.prototype.some.call(select.options, function (o) { return o.value === value; });
    select.value = known ? value : "";
  }
  function readHash() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    failed.checked = params.get("failed") === "1" || params.get("filter") === "failed";
    choose(termination, params.get("termination") || "");
    choose(persona, params.get("persona") || "");
    choose(blame, params.get("blame") || "");
  }
  function writeHash() {
    var params = new URLSearchParams();
    if (failed.checked) { params.set("failed", "1"); }
    if (termination.value) { params.set("termination", termination.value); }
    if (persona.value) { params.set("persona", persona.value); }
    if (blame.value) { params.set("blame", blame.value); }
    var text = params.toString();
    history.replaceState(null, "", text ? "#" + text : location.pathname + location.search);
  }
  function apply() {
    var shown = 0;
    items.forEach(function (el) {
      var visible = (!failed.checked || el.dataset.passed === "0")
        && (!termination.value || el.dataset.termination === termination.value)
        && (!persona.value || el.dataset.persona === persona.value)
        && (!blame.value || el.dataset.blame === blame.value);
      el.hidden = !visible;
      if (visible) { shown += 1; }
    });
    count.textContent = "Showing " + shown + " of " + items.length + " rollouts";
    // Keep one transcript open, so a filtered view shows a dialogue at once.
    var visible = items.filter(function (el) { return !el.hidden; });
    if (visible.length && !visible.some(function (el) { return el.open; })) {
      visible[0].open = true;
    }
    document.body.setAttribute("data-shown", String(shown));
  }
  [failed, termination, persona, blame].forEach(function (control) {
    control.addEventListener("change", function () { writeHash(); apply(); });
  });
  window.addEventListener("hashchange", function () { readHash(); apply(); });
  readHash();
  apply();
})();
"""

PAGED_SCRIPT = """
(function () {
  "use strict";
  var PER_PAGE = 100;
  var rows = JSON.parse(document.getElementById("rollout-index").textContent);
  var table = document.getElementById("index");
  var body = table.tBodies[0];
  var folder = encodeURIComponent(table.dataset.folder);
  var failed = document.getElementById("f-failed");
  var termination = document.getElementById("f-termination");
  var persona = document.getElementById("f-persona");
  var count = document.getElementById("shown-count");
  var info = document.getElementById("page-info");
  var prev = document.getElementById("prev");
  var next = document.getElementById("next");
  var page = 1;
  function choose(select, value) {
    var known = Array.prototype.some.call(select.options, function (o) { return o.value === value; });
    select.value = known ? value : "";
  }
  function readHash() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    failed.checked = params.get("failed") === "1" || params.get("filter") === "failed";
    choose(termination, params.get("termination") || "");
    choose(persona, params.get("persona") || "");
    page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
  }
  function writeHash() {
    var params = new URLSearchParams();
    if (failed.checked) { params.set("failed", "1"); }
    if (termination.value) { params.set("termination", termination.value); }
    if (persona.value) { params.set("persona", persona.value); }
    if (page > 1) { params.set("page", String(page)); }
    var text = params.toString();
    history.replaceState(null, "", text ? "#" + text : location.pathname + location.search);
  }
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }
  function apply() {
    // Row: [scenario, sample, reward, passed, termination, persona, turns, page, index]
    var matching = rows.filter(function (r) {
      return (!failed.checked || r[3] === 0)
        && (!termination.value || r[4] === termination.value)
        && (!persona.value || r[5] === persona.value);
    });
    var pages = Math.max(1, Math.ceil(matching.length / PER_PAGE));
    page = Math.min(page, pages);
    var shown = matching.slice((page - 1) * PER_PAGE, page * PER_PAGE);
    var fresh = document.createElement("tbody");
    shown.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.className = "indexed";
      tr.dataset.passed = String(r[3]);
      tr.dataset.termination = r[4];
      tr.dataset.persona = r[5];
      cell(tr, r[2] === null ? "\u2013" : r[2].toFixed(2), r[3] ? "pass" : "fail");
      cell(tr, r[0]);
      cell(tr, "#" + r[1]);
      cell(tr, r[5]);
      cell(tr, r[4]);
      cell(tr, String(r[6]));
      var link = document.createElement("a");
      link.href = folder + "/page-" + String(r[7]).padStart(5, "0") + ".html#rollout-" + r[8];
      link.textContent = "open";
      cell(tr, "").appendChild(link);
      fresh.appendChild(tr);
    });
    table.replaceChild(fresh, body);
    body = fresh;
    count.textContent = "Showing " + matching.length + " of " + rows.length + " rollouts";
    info.textContent = "page " + page + " of " + pages;
    prev.disabled = page <= 1;
    next.disabled = page >= pages;
    document.body.setAttribute("data-shown", String(matching.length));
  }
  [failed, termination, persona].forEach(function (control) {
    control.addEventListener("change", function () { page = 1; writeHash(); apply(); });
  });
  prev.addEventListener("click", function () { page -= 1; writeHash(); apply(); });
  next.addEventListener("click", function () { page += 1; writeHash(); apply(); });
  window.addEventListener("hashchange", function () { readHash(); apply(); });
  readHash();
  apply();
})();
"""
