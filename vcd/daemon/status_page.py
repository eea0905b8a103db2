"""The daemon's status page: ``http://<metrics addr>/`` (and ``/status``), on the listener that serves
``/metrics``.

One server-rendered HTML page (a meta refresh every :data:`REFRESH_S` seconds; no framework, the only
script :data:`MARK_IMAGES` marks images that failed to load) with the
daemon's state, the queue per kind and state, the last failures (reason and fix), the growth back-off,
the collection (patches, area, link density, the density preview), the latest traces (area, wraps,
QA jump-free share, QA map, winding picture, the patches they used) and autoseg's progress (phase,
coverage of the predicted surface over time, final sheets, the report's picture).

Rendered in the HTTP server's own threads, from the queue (a connection of its own) and the files —
never on the scheduler's thread, and never re-reading every patch per request: the collection's
numbers come from a :class:`Refreshing` value (recomputed in the background when stale) and JSON files
are read once per change (:class:`FileCache`).

Images are served read-only from the volpkg's own files under a fixed set of routes
(:data:`IMAGE_ROUTES`, :func:`resolve_image`): a name from the URL must be one plain file or directory
name, and the file must resolve (symlinks followed) inside the volpkg, else 404.
"""

from __future__ import annotations

import html
import os
import re
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import __version__
from ..errors import VcdError
from ..formats.jsonio import read_json
from ..formats.overlaps import TGT_OVERLAP_COUNT
from ..formats.provenance import PROVENANCE, provenance_patches
from ..formats.volpkg import TRACE_PREFIX, is_trace_dir, state_dir
from .backoff import KV_STATE as KV_BACKOFF, status_line
from .queue import STATES

REFRESH_S = 10          #: the page reloads itself this often (seconds)
N_TRACES = 5            #: latest traces shown
N_FAILURES = 5          #: last failed jobs shown
N_PATCH_LINKS = 40      #: patches listed per trace (the rest counted)
N_SHEETS = 12           #: autoseg's final sheets listed (the report has them all)
#: one plain file or directory name: no separators, no leading dot (so no ``.``/``..``), printable ASCII
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$")
#: the pictures a trace may show
TRACE_IMAGES = ("qa.png", "winding.png")


# ------------------------------------------------------------------------------------------ images

def _route_previews(vp: Path, parts: list[str]) -> Path | None:
    """``/img/previews/<name>.png`` → ``<volpkg>/.vcd/previews/<name>.png``."""
    return state_dir(vp) / "previews" / parts[0] if len(parts) == 1 and parts[0].endswith(".png") else None


def _route_trace(vp: Path, parts: list[str]) -> Path | None:
    """``/img/trace/<trace>/<qa.png|winding.png>`` → that file of ``traces/<trace>`` (else ``paths/<trace>``)."""
    if len(parts) != 2 or parts[1] not in TRACE_IMAGES:
        return None
    for root in ("traces", "paths"):
        if (vp / root / parts[0]).is_dir():
            return vp / root / parts[0] / parts[1]
    return None


def _route_report(vp: Path, parts: list[str]) -> Path | None:
    """``/img/autoseg/autoseg_report.png`` → ``traces/autoseg_report.png``."""
    return vp / "traces" / parts[0] if parts == ["autoseg_report.png"] else None


#: URL prefix → how its remaining path components name a file of the volpkg
IMAGE_ROUTES: dict[str, Callable[[Path, list[str]], Path | None]] = {
    "/img/previews/": _route_previews, "/img/trace/": _route_trace, "/img/autoseg/": _route_report}


def resolve_image(volpkg: Path, url_path: str) -> Path | None:
    """The volpkg file an image URL names, or None (→ 404): the path (percent-decoded) must start with
    one of :data:`IMAGE_ROUTES`, every later component must be a plain name (:data:`SAFE_NAME`: no
    ``..``, no empty component, so no absolute path), and the file must be a regular file whose real
    path (symlinks followed) lies inside the volpkg's real path."""
    path = urllib.parse.unquote(url_path)
    for prefix, route in IMAGE_ROUTES.items():
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix):].split("/")
        if not all(SAFE_NAME.match(p) for p in parts):
            return None
        target = route(volpkg, parts)
        if target is None:
            return None
        root = os.path.realpath(volpkg)
        real = os.path.realpath(target)
        if not real.startswith(root.rstrip(os.sep) + os.sep) or not os.path.isfile(real):
            return None
        return Path(real)
    return None


def image_url(volpkg: Path, f: Path) -> str | None:
    """The page's URL for a volpkg file served by :data:`IMAGE_ROUTES` (None: not one of them)."""
    vp = Path(volpkg)
    if f.parent == state_dir(vp) / "previews":
        url = f"/img/previews/{f.name}"
    elif f.name in TRACE_IMAGES and f.parent.parent in (vp / "traces", vp / "paths"):
        url = f"/img/trace/{f.parent.name}/{f.name}"
    elif f == vp / "traces" / "autoseg_report.png":
        url = "/img/autoseg/autoseg_report.png"
    else:
        return None
    return urllib.parse.quote(url)


# ------------------------------------------------------------------------------------------ caches

class Refreshing:
    """A value recomputed in a background thread once older than ``max_age_s`` seconds; ``get()``
    returns the newest value at once (computing it in the caller only the very first time), so a slow
    computation (the collection's numbers at 10,000 patches) never holds up a request."""

    def __init__(self, compute: Callable[[], object], max_age_s: float = 2.0):
        self.compute = compute
        self.max_age_s = max_age_s
        self._value = None
        self._at = 0.0  # time.monotonic() of the value
        self._lock = threading.Lock()
        self._busy = False

    def get(self):
        """The value: computed now the first time, else the last one (a stale one is recomputed in
        the background)."""
        with self._lock:
            have, stale = self._at > 0, time.monotonic() - self._at > self.max_age_s
            if have and stale and not self._busy:
                self._busy = True
                threading.Thread(target=self._refresh, name="vcd-status-refresh", daemon=True).start()
        if not have:
            self._refresh(first=True)
        return self._value

    def _refresh(self, first: bool = False) -> None:
        try:
            value = self.compute()
            with self._lock:
                self._value, self._at = value, time.monotonic()
        except Exception:
            if first:
                raise
        finally:
            with self._lock:
                self._busy = False


class FileCache:
    """JSON files read once per change (keyed by path, mtime and size); an unreadable file is ``None``."""

    def __init__(self, limit: int = 4096):
        self._data: dict[Path, tuple[tuple, object]] = {}
        self._lock = threading.Lock()
        self.limit = limit

    def json(self, path: Path, what: str):
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._data.get(path)
        if hit and hit[0] == key:
            return hit[1]
        try:
            value = read_json(path, what)
        except (VcdError, OSError):
            value = None
        with self._lock:
            if len(self._data) >= self.limit:
                self._data.clear()
            self._data[path] = (key, value)
        return value


# ------------------------------------------------------------------------------------------ the page

def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _ago(t: float | None, now: float) -> str:
    if not t:
        return "-"
    s = max(0.0, now - float(t))
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago" if s < 7200 else f"{s / 3600:.1f} h ago"


def _duration(s: float) -> str:
    s = int(max(0, s))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d} d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def _wraps_cell(wraps) -> str:
    """A sheet's wraps (from its winding job) for a table cell: two decimals, ``-`` when not measured."""
    return "-" if wraps is None else f"{float(wraps):.2f}"


def _folder_link(p: Path, label: str | None = None) -> str:
    """A link to a surface's folder (``file://``; the page's volpkg path is absolute already)."""
    uri = "file://" + urllib.parse.quote(os.path.abspath(p))
    return f'<a href="{_e(uri)}" title="{_e(p)}">{_e(label or p.name)}</a>'


def split_reason(error: str | None) -> tuple[str, str]:
    """A failed job's error as ``(reason, fix)``: the first line, split where a :class:`VcdError`
    message puts its fix (``problem. Fix: fix``); tracebacks keep their last line as the reason."""
    text = (error or "failed").strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    first = lines[-1] if lines and lines[0].startswith("Traceback") else (lines[0] if lines else text)
    reason, _, fix = first.partition(". Fix: ")
    return reason[:300], fix[:300]


def coverage_svg(series: list[dict], width: int = 480, height: int = 140) -> str:
    """Autoseg's coverage of the predicted surface over time (kv ``autoseg_coverage``: ``t`` Unix
    seconds, ``coverage`` and ``on_patch`` shares 0..1) as an inline SVG line chart."""
    pts = [(float(r["t"]), float(r.get("coverage") or 0), float(r.get("on_patch") or 0))
           for r in series if isinstance(r, dict) and "t" in r]
    if not pts:
        return "<p>no coverage measured yet</p>"
    t0, t1 = pts[0][0], max(pts[-1][0], pts[0][0] + 1.0)
    pad = 30

    def xy(t, v):
        return (pad + (t - t0) / (t1 - t0) * (width - 2 * pad), height - pad - v * (height - 2 * pad))

    def line(i, colour):
        return (f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                + " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(p[0], p[i]) for p in pts)) + '"/>')
    return (f'<svg id="coverage-chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'xmlns="http://www.w3.org/2000/svg"><rect width="100%" height="100%" fill="#fff" stroke="#ccc"/>'
            f'<line x1="{pad}" y1="{pad}" x2="{width - pad}" y2="{pad}" stroke="#eee"/>'
            + line(2, "#bbb") + line(1, "#1a7f37")
            + f'<text x="4" y="{pad + 4}" font-size="10">100%</text><text x="4" y="{height - pad + 4}" font-size="10">0%</text>'
            f'<text x="{pad}" y="{height - 8}" font-size="10">{_duration(0)}</text>'
            f'<text x="{width - pad - 50}" y="{height - 8}" font-size="10">+{_duration(t1 - t0)}</text>'
            f'<text x="{pad + 6}" y="{pad + 14}" font-size="10" fill="#1a7f37">on a final sheet {pts[-1][1] * 100:.1f}%</text>'
            f'<text x="{pad + 6}" y="{pad + 26}" font-size="10" fill="#888">on a patch {pts[-1][2] * 100:.1f}%</text>'
            "</svg>")


CSS = """body{font:14px system-ui,sans-serif;margin:1.2em;color:#222;max-width:1200px}
h1{font-size:20px}h2{font-size:16px;border-bottom:1px solid #ddd;padding-bottom:2px;margin-top:1.4em}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.warn{color:#a40}.ok{color:#1a7f37}.muted{color:#777}
img{max-width:100%;border:1px solid #ccc}.thumb{max-width:300px;max-height:180px}#density{max-width:560px}
#autoseg-report{max-width:900px}td.patches{font-size:11px;max-width:420px;text-align:left;vertical-align:top}
.patches div{max-height:170px;overflow:auto}.patches a{margin-right:.6em;white-space:nowrap}img.broken{outline:2px dashed #c00}"""


#: the page's only script: once loaded, each image records its decoded width (``data-natural-width``) and
#: one that did not load is outlined — what a headless browser's DOM dump shows (the browser test reads it)
MARK_IMAGES = ("<script>addEventListener('load',()=>{for(const i of document.images){"
               "i.dataset.naturalWidth=i.naturalWidth;if(!i.naturalWidth)i.classList.add('broken')}})</script>")


class StatusPage:
    """Renders the page for one volpkg (see the module docstring).

    ``info``: the daemon lock's sidecar (``pid``, ``started`` Unix seconds, ``version``); ``stats``: the
    collection's numbers (:func:`vcd.post.coverage.collection_stats`, ideally a :class:`Refreshing`'s
    ``get``); ``busy``: workers running a job; ``workers``/``executor``: the daemon's config;
    ``tgt_overlap_count``: links a patch needs (a callable: the daemon learns it after the page starts);
    ``disk_full``: True while the daemon is paused on a full disk."""

    def __init__(self, volpkg: Path, queue_file: Path, info: dict, stats: Callable[[], dict],
                 busy: Callable[[], int] = lambda: 0, workers: int = 0, executor: str = "local",
                 tgt_overlap_count: Callable[[], int] = lambda: TGT_OVERLAP_COUNT, disk_full: Callable[[], bool] = lambda: False):
        from .queue import JobQueue
        self.volpkg = Path(volpkg)
        self.queue = JobQueue(queue_file)
        self.lock = threading.Lock()  # one render at a time on the page's connection
        self.info, self.stats, self.busy = info, stats, busy
        self.workers, self.executor = workers, executor
        self.tgt, self.disk_full = tgt_overlap_count, disk_full
        self.files = FileCache()
        self._listings: dict[Path, tuple[int, list[str]]] = {}  # directory -> (mtime_ns, auto_trace_* paths)
        self._wraps_done: dict[Path, str] = {}  # trace -> wraps shown (its winding job's span_wraps, or why not)
        self._winding_counts = self._winding_seen = None  # winding jobs per state, now / when _wraps_done was filled

    def close(self) -> None:
        self.queue.close()

    # ---------------------------------------------------------------- sections
    def render(self) -> str:
        """The status page's HTML (daemon, autoseg, queue, collection, traces)."""
        now = time.time()
        with self.lock:
            # autoseg's phase is the headline of an unattended run: right after the daemon's state
            body = [self._daemon(now), self._autoseg(now), self._queue(now), self._collection(now), self._traces(now)]
        title = f"vcd — {self.volpkg.name}"
        return ("<!doctype html><html><head><meta charset=\"utf-8\">"
                f'<meta http-equiv="refresh" content="{REFRESH_S}"><title>{_e(title)}</title>'
                f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1>"
                f'<p class="muted">{_e(self.volpkg)} — rendered {time.strftime("%Y-%m-%d %H:%M:%S")}, '
                f"reloads every {REFRESH_S} s</p>" + "".join(body) + MARK_IMAGES + "</body></html>")

    def _daemon(self, now: float) -> str:
        paused = bool(self.queue.get_kv("paused", False))
        state = '<b class="warn">paused</b> (<code>vcdctl resume</code>)' if paused else '<b class="ok">running</b>'
        if self.disk_full():
            state += ' — <b class="warn">disk full: growth and writes wait until space is freed</b>'
        started = float(self.info.get("started") or now)
        rows = [("version", self.info.get("version") or __version__), ("pid", self.info.get("pid", os.getpid())),
                ("uptime", _duration(now - started)),
                ("workers", f"{self.busy()} busy of {self.workers} ({self.executor})")]
        return ('<section id="daemon"><h2>Daemon</h2><p>scheduler: ' + state + "</p><table>"
                + "".join(f'<tr><th class="l">{_e(k)}</th><td class="l">{_e(v)}</td></tr>' for k, v in rows)
                + "</table></section>")

    def _queue(self, now: float) -> str:
        q = self.queue
        counts = q.counts()
        self._winding_counts = tuple(counts.get(("winding", st), 0) for st in STATES)
        kinds = sorted({k for k, _ in counts})
        head = '<tr><th class="l">kind</th>' + "".join(f"<th>{s}</th>" for s in STATES) + "</tr>"
        rows = "".join(f'<tr><td class="l">{_e(k)}</td>' + "".join(f"<td>{counts.get((k, s), 0)}</td>" for s in STATES)
                       + "</tr>" for k in kinds) or f'<tr><td class="l" colspan="{len(STATES) + 1}">no jobs yet</td></tr>'
        out = ['<section id="queue-section"><h2>Queue</h2>', f'<table id="queue">{head}{rows}</table>']
        running = q.list(state="running", limit=20)
        if running:
            out.append("<p>running: " + ", ".join(
                f"#{r['id']} {_e(r['kind'])} " + ("?" if (r["progress"] or 0) < 0 else f"{(r['progress'] or 0) * 100:.0f}%")
                + (f" <span class=\"muted\">{_e((r['message'] or '')[:80])}</span>" if r["message"] else "")
                for r in running) + "</p>")
        growth = status_line(q.get_kv(KV_BACKOFF), now)
        if growth:
            out.append(f'<p id="backoff" class="warn">{_e(growth)}</p>')
        failed = q.list(state="failed", limit=N_FAILURES)
        if failed:
            out.append('<h3>Last failures</h3><table id="failures"><tr><th>job</th><th class="l">kind</th>'
                       '<th>when</th><th class="l">reason</th><th class="l">fix</th></tr>')
            for r in failed:
                reason, fix = split_reason(r["error"])
                out.append(f'<tr><td>#{r["id"]}</td><td class="l">{_e(r["kind"])}</td><td>{_ago(r["finished"], now)}</td>'
                           f'<td class="l">{_e(reason)}</td><td class="l">{_e(fix or "see `vcdctl show " + str(r["id"]) + "`")}</td></tr>')
            out.append("</table>")
        return "".join(out) + "</section>"

    def _collection(self, now: float) -> str:
        st = self.stats() or {}
        tgt = self.tgt()
        out = ['<section id="collection"><h2>Collection</h2>',
               f"<p>{st.get('patches', 0)} patches, {float(st.get('patch_area_cm2', 0)):.4f} cm², link density "
               f"{float(st.get('density', 0)) * 100:.0f}% of patches with &ge; {tgt} links "
               f"({st.get('overlap_deficit', 0)} below target), {st.get('traces', 0)} traces</p>"]
        png = state_dir(self.volpkg) / "previews" / "density.png"
        if png.exists():
            out.append(f'<p class="muted">density preview (regions below target), drawn {_ago(png.stat().st_mtime, now)}</p>'
                       f'<img id="density" src="{image_url(self.volpkg, png)}" alt="density preview">')
        else:
            out.append('<p class="muted">no density preview yet (drawn after each trace, and every '
                       '<code>[daemon] preview_seconds</code>)</p>')
        return "".join(out) + "</section>"

    def latest_traces(self, n: int = N_TRACES) -> list[tuple[Path, dict]]:
        """The ``n`` newest complete traces in ``traces/`` and ``paths/`` (by ``meta.json`` mtime), with
        their meta; debug snapshots and incomplete traces left out."""
        found = []
        for root in (self.volpkg / "traces", self.volpkg / "paths"):
            for path in self._trace_entries(root):
                try:
                    found.append((os.stat(os.path.join(path, "meta.json")).st_mtime, Path(path)))
                except OSError:
                    continue
        out = []
        for _, d in sorted(found, reverse=True):
            meta = self.files.json(d / "meta.json", "trace meta.json")
            if is_trace_dir(d, meta) and not meta.get("vcd_incomplete"):
                out.append((d, meta))
            if len(out) >= n:
                break
        return out

    def _trace_entries(self, root: Path) -> list[str]:
        """Paths of the ``auto_trace_*`` entries of ``root``, listed again only when the directory
        changes (its mtime: an entry added, removed or renamed) — ``paths/`` may hold 10,000 patches."""
        try:
            key = os.stat(root).st_mtime_ns
        except OSError:
            return []
        hit = self._listings.get(root)
        if hit and hit[0] == key:
            return hit[1]
        try:
            names = [e.path for e in os.scandir(root) if e.name.startswith(TRACE_PREFIX)]
        except OSError:
            return []
        self._listings[root] = (key, names)
        return names

    def _thumb(self, trace: Path, f: str) -> str:
        """A linked thumbnail of ``trace``'s picture ``f`` (one of :data:`TRACE_IMAGES`), or "none"."""
        url = image_url(self.volpkg, trace / f) if (trace / f).exists() else None
        return (f'<a href="{url}"><img class="thumb {f[:-4]}" src="{url}" alt="{f}"></a>' if url
                else '<span class="muted">none</span>')

    def _wraps(self, trace: Path) -> str:
        """Wraps the trace spans, from its ``winding`` job's result (``span_wraps``); ``-`` without one.
        Looked up again only when the queue's winding counts change (:meth:`_queue` notes them)."""
        if self._winding_seen != self._winding_counts:
            self._wraps_done.clear()
            self._winding_seen = self._winding_counts
        if trace in self._wraps_done:
            return self._wraps_done[trace]
        from ..jobs import get_spec
        spec = get_spec("winding")
        try:
            key = spec.dedup_key(spec.parse({"trace": str(trace)}))
        except VcdError:
            return "-"
        job = self.queue.by_dedup_key(key) if key else None
        if not job or job["state"] != "done" or not job.get("result"):
            text = "-" if not job else _e(job["state"])
        else:
            import json
            try:
                text = f"{float(json.loads(job['result']).get('span_wraps')):.2f}"
            except (ValueError, TypeError, AttributeError):
                text = "-"
        if len(self._wraps_done) > 4096:
            self._wraps_done.clear()
        self._wraps_done[trace] = text
        return text

    def _traces(self, now: float) -> str:
        traces = self.latest_traces()
        out = ['<section id="traces-section"><h2>Latest traces</h2>']
        if not traces:
            return "".join(out) + "<p>no traces yet</p></section>"
        out.append('<table id="traces"><tr><th class="l">trace</th><th>area cm²</th><th>wraps</th>'
                   '<th>jump-free share (QA)</th><th class="l">QA map</th><th class="l">winding</th>'
                   '<th class="l">patches used</th></tr>')
        for d, meta in traces:
            qa = meta.get("qa") or {}
            corners, hot = int(qa.get("corners") or 0), int(qa.get("suspicious") or 0)
            share = f"{(1 - hot / corners) * 100:.1f}%" if corners else "-"
            gate = (meta.get("vcd_autoseg") or {}).get("status")
            imgs = [self._thumb(d, f) for f in TRACE_IMAGES]
            prov = self.files.json(d / PROVENANCE, "trace provenance")
            names = provenance_patches(prov if isinstance(prov, dict) else None)
            links = " ".join(_folder_link(self.volpkg / "paths" / p) for p in names[:N_PATCH_LINKS])
            more = f" and {len(names) - N_PATCH_LINKS} more" if len(names) > N_PATCH_LINKS else ""
            out.append(f'<tr class="trace"><td class="l">{_folder_link(d)}<br><span class="muted">'
                       f'{_ago(os.stat(d / "meta.json").st_mtime, now)}' + (f", gate: {_e(gate)}" if gate else "")
                       + f'</span></td><td>{float(meta.get("area_cm2") or 0):.4f}</td><td>{self._wraps(d)}</td>'
                       f'<td>{share}</td><td class="l">{imgs[0]}</td><td class="l">{imgs[1]}</td>'
                       f'<td class="patches">{len(names)} patches<div>{links}{more}</div></td></tr>')
        out.append("</table>")
        if any(not (d / "winding.png").exists() for d, _ in traces):
            out.append('<p class="muted">wraps and the winding picture come from the <code>winding</code> job: '
                       '<code>[pipeline] after_trace = ["winding"]</code> in vcd.toml queues it for each trace</p>')
        return "".join(out) + "</section>"

    def _autoseg(self, now: float) -> str:
        from .autoseg_state import KV_COVERAGE, KV_STATE, REPORT
        state = self.queue.get_kv(KV_STATE)
        if not state:
            return ('<section id="autoseg"><h2>Autoseg</h2><p class="muted">not running '
                    '(<code>vcd autoseg</code>, or <code>[autoseg] enabled = true</code>)</p></section>')
        out = ['<section id="autoseg"><h2>Autoseg</h2>',
               f'<p>phase: <b id="autoseg-phase">{_e(state.get("phase", "?"))}</b>'
               + (f" — {_e(state['why_done'])}" if state.get("why_done") else "")
               + (f' <span class="warn">{_e(state["error"])}</span>' if state.get("error") else "") + "</p>"]
        facts = [(k, state[k]) for k in ("patches", "density", "traces", "accepted", "coverage") if k in state]
        if facts:
            out.append("<p>" + ", ".join(f"{_e(k)} {_e(v)}" for k, v in facts) + "</p>")
        out.append(coverage_svg(self.queue.get_kv(KV_COVERAGE, []) or []))
        report = self.files.json(self.volpkg / "traces" / f"{REPORT}.json", "autoseg report")
        if isinstance(report, dict):
            sheets = report.get("final_sheets") or []
            out.append(f'<h3>Final sheets ({len(sheets)}, {float(report.get("traced_area_cm2") or 0):.4f} cm², '
                       f'{float(report.get("coverage_of_predicted_surface") or 0) * 100:.1f}% of the predicted surface)</h3>'
                       '<table id="sheets"><tr><th class="l">sheet</th><th>area cm²</th><th>wraps</th>'
                       '<th class="l">winding</th><th class="l">from</th></tr>'
                       + "".join(f'<tr><td class="l">{_folder_link(self.volpkg / "traces" / str(s.get("name")))}</td>'
                                 f'<td>{float(s.get("area_cm2") or 0):.4f}</td>'
                                 f'<td>{_wraps_cell(s.get("wraps"))}</td>'
                                 f'<td class="l">{self._thumb(self.volpkg / "traces" / str(s.get("name")), "winding.png")}</td>'
                                 f'<td class="l">{_e(", ".join(s.get("fused_from") or []))}</td></tr>'
                                 for s in sheets[:N_SHEETS])
                       + "</table>" + (f"<p>and {len(sheets) - N_SHEETS} more (traces/{REPORT}.md)</p>"
                                       if len(sheets) > N_SHEETS else ""))
        elif state.get("final_sheets"):  # the tick's current choice; areas come with the report
            live = [str(n) for n in state["final_sheets"]]
            out.append(f'<h3>Final sheets so far ({len(live)}; areas in the report when the run is done)</h3>'
                       '<table id="sheets-live"><tr><th class="l">sheet</th></tr>'
                       + "".join(f'<tr><td class="l">{_folder_link(self.volpkg / "traces" / n)}</td></tr>'
                                 for n in live[:N_SHEETS])
                       + "</table>" + (f"<p>and {len(live) - N_SHEETS} more</p>" if len(live) > N_SHEETS else ""))
        else:
            out.append('<p class="muted">final sheets: none yet (the report lists them when the run is done)</p>')
        png = self.volpkg / "traces" / f"{REPORT}.png"
        if png.exists():
            out.append(f'<img id="autoseg-report" src="{image_url(self.volpkg, png)}" alt="autoseg report">')
        return "".join(out) + "</section>"


# ------------------------------------------------------------------------------------------ the server

class StatusServer(ThreadingHTTPServer):
    """``/metrics`` (Prometheus text format from ``registry``), ``/`` and ``/status`` (the page), the
    image routes; anything else 404. Each request runs in its own thread."""

    daemon_threads = True

    def __init__(self, addr: tuple[str, int], registry, page: StatusPage | None):
        self.registry, self.page = registry, page
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, _Handler)

    def serve_in_thread(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="vcd-http", daemon=True)
        t.start()
        return t

    def shutdown(self) -> None:
        super().shutdown()
        self.server_close()
        if self.page is not None:
            self.page.close()


class _Handler(BaseHTTPRequestHandler):
    server: StatusServer

    def log_message(self, format, *args):  # noqa: A002 — no access log on stderr (the daemon logs JSON)
        pass

    def _send(self, code: int, ctype: str, body: bytes, head_only: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET(head_only=True)

    def do_GET(self, head_only: bool = False):
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        srv = self.server
        try:
            if path == "/metrics":
                return self._send(200, CONTENT_TYPE_LATEST, generate_latest(srv.registry), head_only)
            if path in ("/", "/status") and srv.page is not None:
                return self._send(200, "text/html; charset=utf-8", srv.page.render().encode(), head_only)
            if path.startswith("/img/") and srv.page is not None:
                f = resolve_image(srv.page.volpkg, path)
                if f is not None:
                    return self._send(200, "image/png", f.read_bytes(), head_only)
            return self._send(404, "text/plain; charset=utf-8", b"not found\n", head_only)
        except (BrokenPipeError, ConnectionResetError):
            return None
        except Exception as exc:  # a page that fails to render never disturbs the daemon
            msg = f"status page failed: {type(exc).__name__}: {exc}\n".encode()
            try:
                self._send(500, "text/plain; charset=utf-8", msg, head_only)
            except OSError:
                pass
