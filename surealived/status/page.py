"""The read-only status page at ``/``, in the spirit of HAProxy's stats page: one table per
virtual, one row per real, coloured by state. Pure: state in, HTML out.

The page refreshes itself: a few lines of inline JavaScript fetch the page again every
``REFRESH_S`` seconds (``REFRESH_LARGE_S`` above ``LARGE`` reals) and swap the ``<main>``
element (scroll position kept; a banner says when the daemon stops answering). Without
JavaScript a ``<noscript>`` meta refresh does the same.
"""

from __future__ import annotations

import html
import time

from ..engine.state import DaemonState, RealState
from .views import real_id, real_state_word, script_problems, untested_count, virtual_id

REFRESH_S = 2
REFRESH_LARGE_S = 10  # above LARGE reals a render costs ~10 ms per 1,000 reals: refresh less
LARGE = 2000

_STYLE = """
.script-error{background:#fdd;border:1px solid #c33;padding:.3em .6em}
body{font:13px/1.35 system-ui,sans-serif;margin:1em;color:#222;background:#fafafa}
h1{font-size:18px;margin:0 0 .3em}
h2{font-size:14px;margin:1.2em 0 .3em}
.meta{color:#555}
table{border-collapse:collapse;min-width:60em;background:#fff}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;white-space:nowrap}
th{background:#e8e8ee}
td.num{text-align:right}
tr.up td.state{background:#8c8}
tr.down td.state{background:#e66;color:#fff}
tr.drained td.state{background:#fc6}
tr.removed td.state{background:#999;color:#fff}
tr.unknown td.state{background:#ddd}
#stale{display:none;background:#e66;color:#fff;padding:4px}
"""

_SCRIPT = """
(function(){
  var stale=document.getElementById('stale');
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
  setInterval(refresh,%d);
})();
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _ago(now: float, when: float) -> str:
    if not when:
        return "never"
    seconds = max(0.0, now - when)
    stamp = time.strftime("%H:%M:%S", time.localtime(when))
    return f"{stamp} ({seconds:.0f}s ago)"


def _row(r: RealState, now: float) -> str:
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
    cells = [
        f'<td class="name">{_e(c.name)}</td>',
        f"<td>{_e(real_id(r))}</td>",
        f'<td class="state">{word.upper()}</td>',
        f'<td class="rstate">{_e(r.rstate)}</td>',
        f'<td class="num weight">{r.weight}</td>',
        f'<td class="num">{c.weight}</td>',
        f"<td>{_e(override)}</td>",
        f'<td class="last">{_e(last)}</td>',
        f"<td>{_e(_ago(now, r.last_check))}</td>",
        f'<td class="num">{_e(latency)}</td>',
        f"<td>{_e(r.override_reason)}</td>",
    ]
    return f'<tr class="{word}" id="{_e(r.virtual.config.name)}/{_e(c.name)}">{"".join(cells)}</tr>'


_HEAD = ("<tr><th>real</th><th>address</th><th>state</th><th>rstate</th><th>weight</th>"
         "<th>conf</th><th>override</th><th>last result</th><th>last check</th>"
         "<th>latency</th><th>reason (rset)</th></tr>")


def render(state: DaemonState, now: float, title: str = "surealived") -> str:
    reals = [r for v in state.virtuals for r in v.reals]
    refresh = REFRESH_S if len(reals) <= LARGE else REFRESH_LARGE_S
    words = [real_state_word(r) for r in reals]
    untested = untested_count(state)
    summary = (f"{len(state.virtuals)} virtuals, {len(reals)} reals: "
               + ", ".join(f"{words.count(w)} {w}" for w in
                           ("up", "down", "drained", "removed", "unknown") if words.count(w)))
    parts = [
        "<main>",
        f'<p class="meta">{_e(summary)}. '
        f'{"Ready" if untested == 0 else f"Waiting for {untested} reals to be tested"}. '
        f"Updated {_e(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now)))}.</p>",
    ]
    for problem in script_problems():
        still = ("the last good version keeps running" if problem["running_old"]
                 else "its checks fail")
        parts.append(f'<p class="script-error">Lua script {_e(problem["path"])} is broken '
                     f'({still}): {_e(problem["message"])}</p>')
    for v in state.virtuals:
        c = v.config
        parts.append(f'<h2 id="{_e(virtual_id(v))}">{_e(c.name)} '
                     f'<span class="meta">{_e(virtual_id(v))} {_e(c.sched)}/{_e(c.rt)}, '
                     f"tester {_e(c.tester.proto)}</span></h2>")
        parts.append(f'<table class="virtual" data-virtual="{_e(c.name)}">{_HEAD}')
        if not v.reals:
            parts.append('<tr><td colspan="11">no reals defined</td></tr>')
        parts.extend(_row(r, now) for r in v.reals)
        parts.append("</table>")
    parts.append("</main>")
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title>"
        f'<noscript><meta http-equiv="refresh" content="{refresh}"></noscript>'
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        '<div id="stale">The daemon does not answer; the figures below are stale.</div>'
        + "".join(parts)
        + f"<script>{_SCRIPT % (refresh * 1000)}</script></body></html>\n"
    )
