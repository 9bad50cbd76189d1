"""The read-only status page at ``/``, in the spirit of HAProxy's stats page. Pure: state (and the
last hour of each real) and the view asked for in, HTML out.

One summary row per virtual (reals up of total, weight in the table of the configured weight,
last change); a virtual's reals below it when it is open. Up to ``OPEN_ALL_UP_TO`` reals every
virtual is open; past that they are collapsed and open one by one. The view lives in the URL
(``View.from_query``): ``q`` searches names and addresses, ``problems=1`` keeps reals that are
not up, ``open=NAME`` opens a virtual, ``all=1`` opens every one; a filter opens the virtuals it
matches. At most ``MAX_ROWS`` real rows are drawn, so even 20,000 reals stay a page a browser
renders at once. Each real row carries a small inline SVG of its last hour (``recent.py``).

The page refreshes itself: a few lines of inline JavaScript fetch the same URL again every
``REFRESH_S`` seconds (``REFRESH_LARGE_S`` above ``LARGE`` reals) and swap the ``<main>``
element; the filter form and the open/close links change the URL and refresh at once. Without
JavaScript the form and links are plain GETs and a ``<noscript>`` meta refresh reloads.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from ..engine.state import DaemonState, RealState, VirtualState
from .recent import Minute, RecentChecks
from .views import real_id, real_state_word, script_problems, untested_count, virtual_id

if TYPE_CHECKING:
    from ..lua.scripts import ScriptProblem

REFRESH_S = 2
REFRESH_LARGE_S = 10  # above LARGE reals a render costs more: refresh less often
LARGE = 2000
OPEN_ALL_UP_TO = 200  # reals: up to this many every virtual is open by default
MAX_ROWS = 1000  # real rows drawn at most; past that the page says how many were left out
WORDS = ("up", "down", "drained", "removed", "unknown")

_STYLE = """
body{font:13px/1.35 system-ui,sans-serif;margin:1em;color:#222;background:#fafafa}
h1{font-size:18px;margin:0 0 .3em}
.meta{color:#555}
.script-error{background:#fdd;border:1px solid #c33;padding:.3em .6em}
form{margin:.4em 0}
input[type=search]{width:22em}
table{border-collapse:collapse;background:#fff}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;white-space:nowrap}
th{background:#e8e8ee;position:sticky;top:0}
td.num{text-align:right}
tr.v td{background:#f0f0f4;font-weight:600}
tr.v.ok td.state{background:#8c8}
tr.v.some td.state{background:#fc6}
tr.v.none td.state{background:#e66;color:#fff}
tr.up td.state{background:#8c8}
tr.down td.state{background:#e66;color:#fff}
tr.drained td.state{background:#fc6}
tr.removed td.state{background:#999;color:#fff}
tr.unknown td.state{background:#ddd}
tr.r td:first-child{padding-left:1.6em}
.t{text-decoration:none;color:#333;display:inline-block;width:1em}
a.x{width:auto;color:#36c}
svg{display:block}
svg .l{fill:none;stroke:#36c;stroke-width:1}
svg .f{fill:#e66}
svg .c{fill:#222}
#stale{display:none;background:#e66;color:#fff;padding:4px}
"""

_SCRIPT = """
(function(){
  var stale=document.getElementById('stale'),form=document.getElementById('filter');
  function refresh(){
    fetch(location.href,{cache:'no-store'}).then(function(r){
      if(!r.ok) throw new Error(r.status);
      return r.text();
    }).then(function(text){
      var doc=new DOMParser().parseFromString(text,'text/html');
      var main=doc.querySelector('main');
      if(main){document.querySelector('main').replaceWith(main);}
      stale.style.display='none';
    }).catch(function(){stale.style.display='block';});
  }
  function go(params){
    history.replaceState(null,'',params.toString()?'?'+params:location.pathname);
    refresh();
  }
  var typing;
  form.addEventListener('input',function(){
    clearTimeout(typing);
    typing=setTimeout(function(){
      var p=new URLSearchParams(location.search);
      ['q','problems'].forEach(function(k){p.delete(k);});
      new FormData(form).forEach(function(v,k){if(v)p.set(k,v);});
      go(p);
    },250);
  });
  form.addEventListener('submit',function(e){e.preventDefault();});
  document.addEventListener('click',function(e){
    var a=e.target.closest&&e.target.closest('a.t');
    if(!a) return;
    e.preventDefault();
    go(new URL(a.href).searchParams);
  });
  setInterval(refresh,%d);
})();
"""


@dataclass(frozen=True)
class View:
    """What the viewer asked for: a search, problems only, which virtuals are open."""

    search: str = ""
    problems: bool = False
    opened: frozenset[str] = field(default_factory=frozenset)
    open_all: bool = False

    @classmethod
    def from_query(cls, query: Mapping[str, Sequence[str]]) -> View:
        def last(name: str) -> str:
            values = query.get(name) or [""]
            return values[-1].strip()

        return cls(search=last("q")[:200], problems=last("problems") in ("1", "on", "true"),
                   opened=frozenset(query.get("open") or ()),
                   open_all=last("all") in ("1", "on", "true"))

    @property
    def filtered(self) -> bool:
        return bool(self.search) or self.problems

    def query(self, **changes: object) -> str:
        """The URL query of this view with ``changes`` (opened: a set of names)."""
        search = changes.get("search", self.search)
        problems = changes.get("problems", self.problems)
        opened = changes.get("opened", self.opened)
        open_all = changes.get("open_all", self.open_all)
        pairs: list[tuple[str, str]] = []
        if search:
            pairs.append(("q", str(search)))
        if problems:
            pairs.append(("problems", "1"))
        if open_all:
            pairs.append(("all", "1"))
        pairs.extend(("open", name) for name in sorted(opened))  # type: ignore[call-overload]
        return "?" + urlencode(pairs) if pairs else "?"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def duration(seconds: float) -> str:
    """``45s``, ``12m``, ``3h05m``, ``2d04h``: short enough for a table cell."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _clock(when: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when))


def _since(now: float, when: float, started: float) -> str:
    if not when:
        return f"start ({duration(now - started)})"
    return f"{_clock(when)} ({duration(now - when)})"


def picture(minutes: Sequence[Minute]) -> str:
    """The last hour as a 120x18 SVG: the slowest check of each minute as a line (log scale,
    0.1 ms at the bottom, 10 s at the top), minutes with a failed check in red, a state
    change as a dark bar."""
    failed: list[str] = []
    changed: list[str] = []
    heights: list[int | None] = []
    run = 0  # failed minutes in a row, drawn as one red band
    for x, m in enumerate(minutes):
        if m.failed:
            run += 1
        if run and (not m.failed or x == len(minutes) - 1):
            end = x + 1 if m.failed else x
            failed.append(f"M{2 * (end - run)} 0h{2 * run}v18h-{2 * run}z")
            run = 0
        if m.changed:
            changed.append(f"M{2 * x} 0h1v18h-1z")
        # latency codes 65 (0.1 ms) .. 225 (10 s) onto y 17 .. 1
        heights.append(round(17 - min(16, max(0, (m.latency - 65) / 10))) if m.latency
                       else None)
    line: list[str] = []
    for x, y in enumerate(heights):
        if y is None:
            continue
        before = heights[x - 1] if x else None
        after = heights[x + 1] if x + 1 < len(heights) else None
        if before is None:
            line.append(f"M{2 * x} {y}")
        elif y != before or y != after:  # a flat stretch needs only its two ends
            line.append(f"L{2 * x} {y}")
        if after is None and before is None:
            line.append("h2")  # a lone minute: a short dash
    parts = ['<svg width="120" height="18">']  # two pixels a minute
    if failed:
        parts.append(f'<path class="f" d="{"".join(failed)}"/>')
    if line:
        parts.append(f'<path class="l" d="{"".join(line)}"/>')
    if changed:
        parts.append(f'<path class="c" d="{"".join(changed)}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _matches(search: str, *texts: str) -> bool:
    return any(search in text.lower() for text in texts)


def _real_row(r: RealState, now: float, started: float, recent: RecentChecks | None) -> str:
    c = r.config
    word = real_state_word(r)
    if r.last_ok is None:
        last = "-"
    else:
        last = "OK" if r.last_ok else "FAIL"
        if r.last_reason:
            last += f": {r.last_reason}"
    latency = f"{r.last_duration * 1000:.1f} ms" if r.last_check else "-"
    override = str(r.override) if r.override is not None else ""
    checked = f"{_clock(r.last_check)} ({duration(now - r.last_check)})" if r.last_check else "-"
    hour = picture(recent.minutes(r, now)) if recent is not None else ""
    cells = (
        f'<td class="name">{_e(c.name)}</td><td>{_e(real_id(r))}</td>'
        f'<td class="state">{word.upper()}</td><td class="since">'
        f"{_e(_since(now, r.changed, started))}</td>"
        f'<td class="num weight">{r.weight}/{c.weight}</td><td>{_e(r.rstate)}</td>'
        f"<td>{_e(override)}</td><td>{hour}</td>"
        f'<td class="last">{_e(last)}</td><td>{_e(checked)}</td>'
        f'<td class="num">{_e(latency)}</td><td>{_e(r.override_reason)}</td>'
    )
    return (f'<tr class="r {word}" id="{_e(r.virtual.config.name)}/{_e(c.name)}">'
            f"{cells}</tr>")


_PICTURE_HELP = ("the slowest check of each minute (log scale, 0.1 ms at the bottom, 10 s at "
                 "the top); red: a check failed; dark bar: the state changed")
_HEAD = ("<thead><tr><th>virtual / real</th><th>address</th><th>state</th><th>since</th>"
         "<th>weight</th><th>rstate</th><th>override</th>"
         f'<th title="{_PICTURE_HELP}">last hour</th>'
         "<th>last result</th><th>last check</th><th>latency</th><th>reason (rset)</th>"
         "</tr></thead>")
_COLUMNS = 12


def _virtual_row(v: VirtualState, reals: list[RealState], is_open: bool, view: View,
                 now: float, started: float) -> str:
    c = v.config
    up = weight = config_weight = 0
    changed = 0.0
    words: dict[str, int] = {}
    for r in v.reals:
        word = real_state_word(r)
        words[word] = words.get(word, 0) + 1
        up += word == "up"
        if r.in_table:
            weight += r.weight
        config_weight += r.config.weight
        changed = max(changed, r.changed)
    total = len(v.reals)
    health = "ok" if up == total else ("none" if up == 0 and total else "some")
    others = ", ".join(f"{words[w]} {w}" for w in WORDS[1:] if words.get(w))
    opened = view.opened - {c.name} if is_open else view.opened | {c.name}
    arrow = "▾" if is_open else "▸"
    if not view.filtered:  # a filter opens what it matches: nothing to toggle then
        arrow = f'<a class="t" href="{_e(view.query(opened=opened))}">{arrow}</a>'
    else:
        arrow = f'<span class="t">{arrow}</span>'
    shown = f" ({len(reals)} shown)" if view.filtered and is_open else ""
    return (
        f'<tr class="v {health}" id="{_e(virtual_id(v))}" data-virtual="{_e(c.name)}">'
        f"<td>{arrow}{_e(c.name)}</td>"
        f'<td>{_e(virtual_id(v))} <span class="meta">{_e(c.sched)}/{_e(c.rt)} '
        f"{_e(c.tester.proto)}</span></td>"
        f'<td class="state">{up}/{total} up</td>'
        f'<td class="since">{_e(_since(now, changed, started))}</td>'
        f'<td class="num weight">{weight}/{config_weight}</td>'
        f'<td colspan="{_COLUMNS - 5}">{_e(others)}{_e(shown)}</td></tr>'
    )


def render(state: DaemonState, now: float, title: str = "surealived",
           view: View | None = None, recent: RecentChecks | None = None,
           script_errors: Iterable[ScriptProblem] = ()) -> str:
    view = view or View()
    total = sum(len(v.reals) for v in state.virtuals)
    refresh = REFRESH_S if total <= LARGE else REFRESH_LARGE_S
    counts = dict.fromkeys(WORDS, 0)
    for r in state.reals():
        counts[real_state_word(r)] += 1
    untested = untested_count(state)
    summary = (f"{len(state.virtuals)} virtuals, {total} reals: "
               + ", ".join(f"{n} {w}" for w, n in counts.items() if n))
    parts = [
        "<main>",
        f'<p class="meta">{_e(summary)}. '
        f'{"Ready" if untested == 0 else f"Waiting for {untested} reals to be tested"}. '
        f"Updated {_e(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now)))}.</p>",
    ]
    for problem in script_problems(script_errors):
        still = ("the last good version keeps running" if problem["running_old"]
                 else "its checks fail")
        parts.append(f'<p class="script-error">Lua script {_e(problem["path"])} is broken '
                     f'({still}): {_e(problem["message"])}</p>')
    parts.append(f'<table class="virtuals">{_HEAD}<tbody>')
    search = view.search.lower()
    rows = hidden = virtuals_shown = 0
    for v in state.virtuals:
        c = v.config
        reals = v.reals
        if search and not _matches(search, c.name, virtual_id(v)):
            reals = [r for r in reals if _matches(search, r.config.name, real_id(r),
                                                  r.config.addr)]
            if not reals:
                continue
        if view.problems:
            reals = [r for r in reals if real_state_word(r) != "up"]
            if not reals:
                continue
        is_open = (view.open_all or c.name in view.opened or view.filtered
                   or total <= OPEN_ALL_UP_TO)
        parts.append(_virtual_row(v, reals, is_open, view, now, state.started))
        virtuals_shown += 1
        if not is_open:
            continue
        if not v.reals:
            parts.append(f'<tr class="r"><td colspan="{_COLUMNS}">no reals defined</td></tr>')
        for r in reals:
            if rows >= MAX_ROWS:
                hidden += 1
                continue
            parts.append(_real_row(r, now, state.started, recent))
            rows += 1
    parts.append("</tbody></table>")
    if not virtuals_shown:
        parts.append('<p class="meta">Nothing matches.</p>')
    if hidden:
        parts.append(f'<p class="meta">{hidden} more reals not shown (at most {MAX_ROWS}): '
                     "narrow the search.</p>")
    parts.append("</main>")
    expand = (f'<a class="t x" href="{_e(view.query(open_all=False, opened=frozenset()))}">'
              "collapse all</a>" if view.open_all else
              f'<a class="t x" href="{_e(view.query(open_all=True))}">expand all</a>')
    form = (
        '<form id="filter" method="get">'
        f'<input type="search" name="q" value="{_e(view.search)}" '
        'placeholder="search a name or an address"> '
        f'<label><input type="checkbox" name="problems" value="1"'
        f'{" checked" if view.problems else ""}> problems only</label> '
        f"<noscript><button>show</button></noscript> {expand}"
        "</form>"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title>"
        f'<noscript><meta http-equiv="refresh" content="{refresh}"></noscript>'
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1>{form}"
        '<div id="stale">The daemon does not answer; the figures below are stale.</div>'
        + "".join(parts)
        + f"<script>{_SCRIPT % (refresh * 1000)}</script></body></html>\n"
    )
