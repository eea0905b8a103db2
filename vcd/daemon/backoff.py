"""Growth back-off: when seed/expand jobs keep writing nothing, seed and expand less and less often.

Pure decisions (no I/O), used by the scheduler (what to queue, the one warning), the metrics
collector and ``vcdctl status``:

- :func:`classify` — one finished seed/expand job → ``(reason_class, text, fix)``; the class comes
  from a fixed vocabulary (or the grower's own refusal names), so Prometheus labels stay bounded.
- :func:`backoff_summary` — the newest finished jobs → how many wrote nothing in a row (``streak``),
  the top and last reason, the fix.
- :func:`next_seed_interval` — the wait (seconds) before the next seed/expand job: 0 below the
  threshold, then ``base`` doubling with each further empty job, capped.
- :func:`backoff_state` / :func:`status_line` — what the scheduler stores in the queue's ``kv`` table
  (key :data:`KV_STATE`) and how ``vcdctl status`` prints it.

"Wrote nothing" = a ``done`` job whose result has ``"written": null`` (except ``"stop": "saturated"``,
which is expansion's normal end and neither counts nor resets) or a ``failed`` job. A job that
wrote a patch ends the streak; so does a change of the grow params or the volume (the scheduler
then only counts jobs queued after the change, see :func:`epoch_since`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from ..formats.growresult import GrowStop, stop_of

KV_STATE = "growth_backoff"   #: kv key: the state dict of :func:`backoff_state` (+ epoch)
KV_EPOCH = "growth_epoch"     #: kv key: {"fp": fingerprint of params + volume, "since": last job id before it}

SATURATED = GrowStop.SATURATED.value
#: reason class → the fix a user can apply (used when a result carries no "fix" of its own); a done
#: job's class is its result's ``stop`` (:class:`vcd.formats.growresult.GrowStop`), stored as data
_HINTS = {
    SATURATED: "",
    GrowStop.UNDER_MIN_AREA.value:
        "lower min_area_cm in the volpkg's seed.json / expand.json (or [params.seed] / [params.expand] "
        "min_area_cm in vcd.toml){largest}",
    GrowStop.NO_SURFACE.value:
        "check that the prediction volume has surface voxels (>= the surface threshold) — `vcd info` on it — "
        "or seed by hand with `vcdctl seed X Y Z`",
    GrowStop.SEED_DOES_NOT_FIT.value:
        "seeds land where the first quad does not fit (holes, tight curvature): lower step_size or seed by "
        "hand on the sheet with `vcdctl seed X Y Z`",
}
#: a failed job has no result, only its error message (an InputError of the grower): its class
_ERROR_CLASSES = (
    (re.compile(r"min_area_cm"), GrowStop.UNDER_MIN_AREA.value),
    (re.compile(r"no uncovered predicted surface"), GrowStop.NO_SURFACE.value),
    (re.compile(r"seed quad does not fit|nothing grown"), GrowStop.SEED_DOES_NOT_FIT.value),
)
_FALLBACK_FIX = "see the last job's result with `vcdctl show ID` (`vcdctl ls --kind seed`)"
_NAME_OK = re.compile(r"[^a-z0-9_]+")


def _label(name: str) -> str:
    """A Prometheus-safe, bounded reason label (the grower's refusal names are a fixed set)."""
    return _NAME_OK.sub("_", str(name).lower()).strip("_")[:40] or "other"


def classify(result: dict | None, error: str | None = None) -> tuple[str, str, str]:
    """One finished seed/expand job → ``(class, reason text, fix)``. ``result`` is the job's result
    dict, ``None`` for a failed job, whose ``error`` (a VcdError message: ``problem. Fix: fix``) is
    used. The job's own fix (the result's ``"fix"``, the error's ``Fix:``) wins over the table's."""
    if result is None:
        text, _, own_fix = (error or "job failed").partition(". Fix: ")
        cls, fix = ("input_error" if own_fix else "job_error"), "see `vcdctl ls --state failed`"
        for pat, name in _ERROR_CLASSES:
            if pat.search(text):
                cls, fix = name, _HINTS[name]
                break
        return cls, text, own_fix or fix
    text, own_fix = str(result.get("reason") or "no reason given"), str(result.get("fix") or "")
    stop = stop_of(result)
    if stop is None or stop is GrowStop.WROTE:  # an older result without ``stop``, or another tool's
        return "other", text, own_fix or _FALLBACK_FIX
    return stop.value, text, own_fix or _HINTS.get(stop.value, _FALLBACK_FIX)


def wrote(result: dict | None) -> bool:
    """True if a growth job's result names a written patch."""
    return bool(result and result.get("written"))


def backoff_summary(rows: list[dict]) -> dict:
    """Summarise the newest finished seed/expand jobs (``rows`` newest first, each
    ``{"id", "state", "result": dict | None, "error", "finished": epoch s}``).

    Returns ``streak`` (jobs in a row that wrote nothing, newest backwards until one wrote a patch),
    ``top``/``top_text``/``top_count`` (most frequent reason class in the streak, its newest text),
    ``last``/``last_text`` (the newest empty job's reason), ``fix`` (for the top reason),
    ``refusals`` (the grower's refused-corner counts summed over the streak, when results carry them),
    ``top_refusal``, ``largest_cm2`` (largest unwritten patch) and ``last_finished`` (epoch s)."""
    streak, by_cls, texts, fixes, refusals = 0, {}, {}, {}, {}
    last = last_text = None
    largest, last_finished = None, None
    for r in rows:
        res = r.get("result") if r.get("state") == "done" else None
        if r.get("state") == "done" and wrote(res):
            break
        cls, text, fix = classify(res, r.get("error"))
        if cls == SATURATED:
            continue
        streak += 1
        by_cls[cls] = by_cls.get(cls, 0) + 1
        texts.setdefault(cls, text)
        fixes.setdefault(cls, fix)
        if last is None:
            last, last_text = cls, text
        for name, n in ((res or {}).get("refusals") or {}).items():
            refusals[_label(name)] = refusals.get(_label(name), 0) + int(n or 0)
        if res and res.get("area_cm2") is not None:
            largest = max(largest or 0.0, float(res["area_cm2"]))
        if r.get("finished"):
            last_finished = max(last_finished or 0.0, float(r["finished"]))
    top = max(by_cls, key=lambda c: (by_cls[c], c == last)) if by_cls else None
    fix = fixes.get(top, "")
    if "{largest}" in fix:
        fix = fix.replace("{largest}", f"; the largest patch grown was {largest:.4f} cm²" if largest else "")
    top_refusal = max(refusals, key=refusals.get) if refusals else None
    return {"streak": streak, "top": top, "top_text": texts.get(top, ""), "top_count": by_cls.get(top, 0),
            "last": last, "last_text": last_text or "", "fix": fix, "refusals": refusals,
            "top_refusal": top_refusal, "largest_cm2": largest, "last_finished": last_finished}


def next_seed_interval(consecutive_empty: int, threshold: int, base: float, cap: float) -> float:
    """Seconds to wait after the last finished seed/expand job before queuing the next one:
    0 while ``consecutive_empty < threshold``, then ``base``, doubling with each further empty job,
    never more than ``cap``."""
    if threshold <= 0 or consecutive_empty < threshold:
        return 0.0
    k = min(consecutive_empty - threshold, 62)
    return float(min(cap, base * 2.0 ** k))


def backoff_state(summary: dict, threshold: int, base: float, cap: float) -> dict:
    """The persisted back-off state: ``active``, ``streak``, ``interval_s``, ``next_at`` (epoch s,
    earliest time the next growth job may be queued), ``threshold`` plus the summary's reasons."""
    interval = next_seed_interval(summary["streak"], threshold, base, cap)
    start = summary.get("last_finished") or 0.0
    refusal = summary.get("top_refusal")
    return {"active": interval > 0, "streak": summary["streak"], "threshold": threshold, "interval_s": interval,
            "next_at": start + interval if interval else 0.0, "top": summary.get("top"),
            "top_text": summary.get("top_text", ""), "last": summary.get("last"), "fix": summary.get("fix", ""),
            "top_refusal": refusal, "top_count": summary.get("top_count", 0),
            "largest_cm2": summary.get("largest_cm2"),
            "top_refusal_share": (summary["refusals"][refusal] / max(1, sum(summary["refusals"].values()))
                                  if refusal else None)}


def allowed_new_jobs(state: dict, wanted: int, active_growth_jobs: int, now: float) -> int:
    """How many of ``wanted`` seed/expand jobs may be queued now: all of them when not backed off;
    when backed off, one probe at a time, and only once ``next_at`` has passed."""
    if not state.get("active"):
        return max(0, wanted)
    if active_growth_jobs > 0 or now < float(state.get("next_at") or 0.0):
        return 0
    return min(1, max(0, wanted))


def _fmt_s(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"


def status_line(state: dict | None, now: float | None = None) -> str | None:
    """The line ``vcdctl status`` shows first (and the warning's message); None when all is well."""
    if not state or not state.get("streak") or not state.get("top"):
        return None
    reason = state.get("top_text") or state["top"]
    if state.get("top_refusal"):
        share = state.get("top_refusal_share")
        reason += f" (refused corners mostly: {state['top_refusal']}" + \
            (f" {share * 100:.0f}%)" if share is not None else ")")
    if state.get("active"):
        head = f"seeding backed off: {state['streak']} jobs in a row wrote nothing"
        wait = f" — next try every {_fmt_s(state['interval_s'])}"
        if now is not None and state.get("next_at"):
            left = max(0.0, state["next_at"] - now)
            wait = f" — next try in {_fmt_s(left)} (interval {_fmt_s(state['interval_s'])})"
    else:
        n = state["streak"]
        head = (f"growth: {n} job{'s' if n != 1 else ''} in a row wrote nothing (seeding backs off after "
                f"{state['threshold']})")
        wait = ""
    return f"{head} — top reason: {reason} — fix: {state.get('fix') or _FALLBACK_FIX}{wait}"


def volume_signature(volume: str | os.PathLike | None) -> str:
    """Cheap change detector for the prediction volume: inode and mtime of its directory, of its
    direct entries and of each level's ``.zarray``/``.zattrs`` (a volume replaced or rewritten in
    place changes one of them; chunk files are not listed — a real volume has millions)."""
    if not volume:
        return ""
    root = Path(volume)

    def sig(p: Path) -> str:
        st = p.stat()
        return f"{p.relative_to(root)}:{st.st_ino}:{st.st_mtime_ns}"
    try:
        out = [sig(root)]
        for e in sorted(root.iterdir()):
            out.append(sig(e))
            out += [sig(e / m) for m in (".zarray", ".zattrs") if e.is_dir() and (e / m).exists()]
    except OSError:
        return "unreadable"
    return ";".join(out)


def fingerprint(seed_params: dict, expand_params: dict, volume_sig: str) -> str:
    """Identity of "what the growth jobs would do": their params and the volume's signature."""
    blob = json.dumps([seed_params, expand_params, volume_sig], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()


def epoch_since(prev: dict | None, fp: str, last_job_id: int) -> dict:
    """The epoch to count the streak in: unchanged while the fingerprint is the same; a new one that
    only counts jobs with ``id > last_job_id`` when params or volume changed. On the first run there
    is no previous epoch and all past jobs count (``since`` 0)."""
    if prev and prev.get("fp") == fp:
        return prev
    return {"fp": fp, "since": int(last_job_id) if prev else 0}
