"""Watch ``paths/`` (and ``traces/``) and turn annotator edits into jobs.

- a new complete patch directory → an ``overlap`` job (one queued per patch);
- ``mask.tif`` or ``approval.tif`` (VC3D's per-vertex approvals) written or replaced, or the
  ``approved``/``defective`` tags changed in ``meta.json`` → a ``retrace`` job for each trace whose provenance uses that patch (one queued per
  trace);
- a new trace with ``vcd_provenance.json`` → its patch list is recorded (and pipeline jobs queued).

Events are debounced per surface directory: a directory is processed only when it is complete
(``meta.json`` parses, x/y/z tifs exist) and has been quiet for ``debounce`` seconds — VC3D, GIMP
and copies write in several steps. Changes are detected by comparing *fingerprints* (tag set, hash
of the mask's keep-bitmap) with those stored in SQLite (:class:`~vcd.daemon.store_index.SurfaceIndex`,
beside the queue), so our own writes (``overlapping.json``)
never trigger loops and a restart finds what changed while the daemon was down (:meth:`scan`).

What to queue is decided by pure functions (:func:`patch_jobs`, :func:`trace_jobs`) of the surface,
its old and new fingerprints and the trace index — tested in-process without a daemon.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from watchdog.events import (DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileClosedEvent, FileCreatedEvent,
                             FileDeletedEvent, FileModifiedEvent, FileMovedEvent, FileSystemEventHandler)
from watchdog.observers import Observer

from .. import jobs
from ..errors import FormatError, VcdError
from ..formats.jsonio import read_json
from ..formats.overlaps import repair_links
from ..formats.provenance import provenance_patches, read_provenance
from ..formats.tifxyz import TAGS_USED_BY_TRACER, bitmap_sha1, grid_shape, mask_fingerprint, read_approval
from ..formats.volpkg import is_debug_snapshot, is_patch, is_trace, name_is_utf8, resolves_outside
from ..jobs import overlap, retrace
from .config import Config, tgt_overlap_count
from .queue import JobQueue
from .store_index import SurfaceIndex


def surface_fingerprint(d: Path, meta: dict) -> tuple[list[str], str | None]:
    """(tracer-relevant tags, the per-vertex files' fingerprint or None). The fingerprint is
    :func:`~vcd.formats.tifxyz.mask_fingerprint` (the value a trace's provenance records as
    ``mask_sha1``); with an ``approval.tif`` the sha1 of its approved bitmap is appended
    (``"<mask sha1>+approval:<sha1>"``), so an approval edit is a change like a mask edit, and
    surfaces without one keep the fingerprints stored before approvals counted."""
    tags = sorted(set(meta.get("tags") or {}) & set(TAGS_USED_BY_TRACER)) if isinstance(meta.get("tags"), dict) else []
    has_mask, has_appr = (d / "mask.tif").exists(), (d / "approval.tif").exists()
    if not (has_mask or has_appr):
        return tags, None
    rows, cols = grid_shape(d)
    mask = mask_fingerprint(d, rows, cols)
    if has_appr:
        mask = f"{mask or ''}+approval:{bitmap_sha1(read_approval(d, rows, cols))}"
    return tags, mask


def patch_jobs(patch_dir: Path, old: dict | None, tags: list[str], mask: str | None, trace_dirs: list[Path],
               auto_retrace: bool = True) -> list[tuple[str, object]]:
    """Jobs ``(kind, Params)`` for a quiet, complete patch: an ``overlap`` job when it was never seen
    (``old`` None), a ``retrace`` of each trace in ``trace_dirs`` (those whose provenance uses it) when
    its tracer-relevant tags or mask/approval fingerprint changed from ``old`` (``{"tags", "mask"}``;
    see :func:`surface_fingerprint`), else nothing."""
    if old is None:
        return [("overlap", overlap.Params(paths=str(patch_dir.parent), segment=patch_dir.name))]
    if (old["tags"], old["mask"]) == (tags, mask) or not auto_retrace:
        return []
    return [("retrace", retrace.Params(trace=str(t))) for t in trace_dirs]


def trace_jobs(trace_dir: Path, volpkg: Path, after_trace: list[str]) -> list[tuple[str, dict]]:
    """Jobs ``(kind, params)`` for a new trace: the ``[pipeline] after_trace`` kinds on it."""
    return [(kind, {"trace": str(trace_dir), "volpkg": str(volpkg)}) for kind in after_trace]


#: event types that can change a surface. Opens and read-only closes are left out: every read of a
#: surface (linking, tracing, this watcher's own fingerprinting) would otherwise re-trigger the
#: watcher, which read the directory again, forever. A directory's own "modified" event only says a
#: child changed, and the child's event says which.
_EVENT_TYPES = (FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent, FileClosedEvent,
                DirCreatedEvent, DirDeletedEvent, DirMovedEvent)
_ACTIONABLE = {"created", "deleted", "modified", "moved", "closed"}
#: files inside a surface that we write ourselves and that no fingerprint depends on
_OWN_FILES = ("overlapping.json", "overlapping", "overlaps", "layers")


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: "Watcher"):
        self.w = watcher

    def on_any_event(self, event):
        if event.event_type not in _ACTIONABLE or (event.is_directory and event.event_type == "modified"):
            return
        for p in (getattr(event, "src_path", None), getattr(event, "dest_path", None)):
            if p:
                self.w.note(Path(p if isinstance(p, str) else p.decode(errors="replace")))


class PreviewRefresher:
    """Refreshes ``<volpkg>/.vcd/previews`` in one background thread: at most one refresh at a time,
    and requests made while one runs are coalesced into a single next refresh.

    (A thread per new trace used to pile up: retraces arriving faster than previews are drawn ran
    many full refreshes at once, each holding its own volume slices, surfaces and images — in the
    accelerated soak under tracemalloc, ~90 such threads and 580 MiB RSS — and the daemon's RSS grew
    by 0.33 MiB per soak cycle without it; 0.01 with this.)"""

    def __init__(self, volpkg: Path, log, cfg: Config | None = None):
        self.volpkg = volpkg
        self.log = log
        self.cfg = cfg  # the daemon's config: its tgt_overlap_count colours the density preview
        self.runs = 0
        self._running = False
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def request(self) -> None:
        """Ask for a preview refresh (coalesced: one thread, one refresh after any number of
        requests)."""
        self._wanted.set()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="vcd-previews", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wanted.set()

    def idle(self) -> bool:
        """No refresh running or asked for."""
        return not self._running and not self._wanted.is_set()

    def _loop(self) -> None:
        while True:
            self._wanted.wait()
            if self._stop.is_set():
                return
            self._running = True
            self._wanted.clear()
            try:
                self.refresh()
            finally:
                self._running = False

    def refresh(self) -> None:
        """Refresh ``.vcd/previews`` now; a failure is logged, never raised."""
        try:
            from ..post.preview import refresh_previews
            tgt = None if self.cfg is None else tgt_overlap_count(self.cfg, self.volpkg)
            refresh_previews(self.volpkg, tgt=tgt)
        except Exception as exc:  # previews are a convenience; never disturb the daemon
            self.log.warning("preview_failed", error=f"{type(exc).__name__}: {exc}")
        self.runs += 1


class Watcher:
    """Debounced watchdog observer feeding the job queue (see module docstring)."""

    def __init__(self, volpkg: Path, queue_path: Path, cfg: Config, log, metrics=None):
        self.volpkg = Path(volpkg)
        self.roots = [self.volpkg / "paths", self.volpkg / "traces"]
        self.queue = JobQueue(queue_path)
        self.index = SurfaceIndex(queue_path)
        self.cfg = cfg
        self.log = log
        self.metrics = metrics
        self.debounce = float(cfg.daemon.debounce_seconds)
        self._pending: dict[Path, float] = {}
        self._retries: dict[Path, int] = {}
        self._refused: set[str] = set()  #: surfaces resolving outside the volpkg, logged once each
        self.disk = None  #: the daemon's DiskGuard: a surface met while the disk is full waits, unlogged
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._observer = None
        self._thread = None
        self.previews = PreviewRefresher(self.volpkg, log, cfg)

    # ------------------------------------------------------------------ events
    def note(self, path: Path) -> None:
        """Note a changed path under ``paths/`` or ``traces/``: its surface is processed once it has
        been quiet for the debounce time."""
        for root in self.roots:
            try:
                rel = path.relative_to(root)
            except ValueError:
                continue
            if not rel.parts:
                return
            name = rel.parts[0]
            if name.startswith(".") or name.startswith("z_dbg_gen_"):
                return
            if len(rel.parts) > 1 and (rel.parts[1] in _OWN_FILES or rel.parts[-1].startswith(".")):
                return  # our links, render layers, lock and temp files (an atomic rename's dest is seen)
            with self._lock:
                self._pending[root / name] = time.monotonic()
            if self.metrics:
                self.metrics.watcher_events.inc()
            return

    def start(self) -> None:
        self._observer = Observer()
        for root in self.roots:
            if root.is_dir():
                self._observer.schedule(_Handler(self), str(root), recursive=True, event_filter=list(_EVENT_TYPES))
        self._observer.start()
        self._thread = threading.Thread(target=self._loop, name="vcd-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._observer:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._thread:
            self._thread.join(timeout=5)
        self.previews.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                ready = [d for d, t in self._pending.items() if now - t >= self.debounce]
                for d in ready:
                    del self._pending[d]
            for d in ready:
                try:
                    done = self.process(d)
                except Exception as exc:  # never let one bad directory stop the watcher
                    if self._wait_for_space(d, exc):
                        continue
                    self.log.warning("watcher_error", surface=d.name, error=f"{type(exc).__name__}: {exc}")
                    done = True
                if not done:  # incomplete: look again later (bounded)
                    n = self._retries.get(d, 0) + 1
                    self._retries[d] = n
                    if n < 120:
                        with self._lock:
                            self._pending.setdefault(d, time.monotonic())
                else:
                    self._retries.pop(d, None)
            self._stop.wait(0.05)

    def _wait_for_space(self, d: Path, exc: Exception) -> bool:
        """A disk-full error on ``d``: report it to the guard and look at ``d`` again in a few seconds
        (the rescan on resume catches it too). False for any other error."""
        from .diskspace import is_disk_full
        if self.disk is None or not is_disk_full(exc):
            return False
        self.disk.hit(exc)
        with self._lock:
            self._pending.setdefault(d, time.monotonic() + 5.0)
        return True

    # ------------------------------------------------------------------ classification
    def scan(self) -> int:
        """Reconcile: process every surface directory (finds changes made while we were down) and forget
        the fingerprints of surfaces deleted since (the table stays the size of the collection)."""
        n = 0
        present: set[str] = set()
        for root in self.roots:
            if not root.is_dir():
                continue
            for d in sorted(root.iterdir()):
                present.add(d.name)
                if d.is_dir() and not d.name.startswith(".") and not d.name.startswith("z_dbg_gen_"):
                    try:
                        self.process(d)
                    except Exception as exc:
                        self.log.warning("scan_error", surface=d.name, error=f"{type(exc).__name__}: {exc}")
                    n += 1
        if all(root.is_dir() for root in self.roots):
            self.index.forget_missing(present)
        self.repair_links()
        return n

    def repair_links(self) -> int:
        """Write the missing side of one-sided links in ``paths/`` (VC3D can leave A→B without B→A,
        villa#846); logs one ``links_repaired`` line with the count when any was repaired."""
        paths = self.volpkg / "paths"
        if not paths.is_dir():
            return 0
        try:
            pairs = repair_links(paths)
        except Exception as exc:  # a broken overlapping.json must not stop the reconcile
            self.log.warning("links_repair_error", error=f"{type(exc).__name__}: {exc}")
            return 0
        if pairs:
            self.log.info("links_repaired", count=len(pairs), pairs=[f"{a}->{b}" for a, b in pairs[:20]])
        return len(pairs)

    def process(self, d: Path) -> bool:
        """Act on one quiet surface directory; returns False if it is not complete yet."""
        if not d.exists():
            return True
        if not name_is_utf8(d.name):
            self.log.warning("bad_name", surface=repr(d.name), error=f"{d}: directory name is not UTF-8; VC3D and "
                             "overlapping.json cannot refer to it. Fix: rename the directory")
            return True
        if resolves_outside(d):
            self._refuse(d)
            return True
        if not (d / "meta.json").exists():
            return False
        try:
            meta = read_json(d / "meta.json", "surface meta.json")
        except FormatError:
            return False  # being written, or broken: retried a bounded number of times
        if not isinstance(meta, dict) or meta.get("format") != "tifxyz":
            return True
        if not all((d / f"{c}.tif").exists() for c in "xyz"):
            return False
        if is_debug_snapshot(d.name, meta):
            return True
        if is_trace(d.name, meta):
            return self._trace(d, meta)
        if d.parent.name == "paths" and is_patch(d, meta):
            return self._patch(d, meta)
        return True

    def _refuse(self, d: Path) -> None:
        """One log line per surface that is a symlink out of the volpkg (it is never read or written)."""
        if d.name not in self._refused:
            self._refused.add(d.name)
            self.log.warning("surface_refused", surface=d.name, error=f"{d} resolves (through a symlink) outside "
                             "the volpkg; vcd never reads or writes it. Fix: copy the surface into the volpkg")

    def _trace(self, d: Path, meta: dict) -> bool:
        ix = self.index
        if ix.fingerprint(d.name) is not None:
            return True
        try:
            prov = read_provenance(d)
        except FormatError:
            return False
        patches = provenance_patches(prov)
        old = (prov or {}).get("retrace_of")
        if old:
            ix.record_trace(old, [])  # superseded: later edits retrace the new trace only
        ix.record_trace(d.name, patches)
        ix.set_fingerprint(d.name, [], None)
        self.log.info("trace_recorded", trace=d.name, patches=len(patches))
        self.previews.request()
        self._queue_pipeline(d)
        return True

    def _queue_pipeline(self, trace_dir: Path) -> None:
        """Queue the configured ``[pipeline] after_trace`` kinds for a new trace."""
        for kind, params in trace_jobs(trace_dir, self.volpkg, self.cfg.pipeline.after_trace):
            try:
                jobs.submit(self.queue, kind, params, max_attempts=self.cfg.daemon.max_attempts)
            except VcdError as exc:
                self.log.warning("pipeline_job_refused", kind=kind, trace=trace_dir.name, error=exc.message)

    def _patch(self, d: Path, meta: dict) -> bool:
        ix = self.index
        try:
            tags, mask = surface_fingerprint(d, meta)
        except FormatError as exc:
            self.log.warning("bad_mask", surface=d.name, error=exc.message)
            return True
        except Exception:
            return False  # tifs mid-write
        old = ix.fingerprint(d.name)
        changed = old is not None and (old["tags"], old["mask"]) != (tags, mask)
        traces = [t for t in map(self._trace_dir, ix.traces_using(d.name)) if t] if changed else []
        for kind, params in patch_jobs(d, old, tags, mask, traces, self.cfg.schedule.auto_retrace):
            jid = jobs.submit(self.queue, kind, params, max_attempts=self.cfg.daemon.max_attempts)
            if kind == "overlap":
                self.log.info("new_patch", surface=d.name, job_id=jid)
            else:
                self.log.info("retrace_queued", surface=d.name, change="mask" if old["mask"] != mask else "tags",
                              trace=Path(params.trace).name, job_id=jid)
        ix.set_fingerprint(d.name, tags, mask)
        return True

    def _trace_dir(self, name: str) -> Path | None:
        for root in self.roots:
            if (root / name).is_dir():
                return root / name
        return None
