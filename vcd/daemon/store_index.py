"""The watcher's small store, in the daemon's SQLite file beside the queue (:mod:`vcd.daemon.store`).

- ``fingerprints``: per surface directory name, the tracer-relevant tags and the hash of the mask's
  keep-bitmap last seen (:func:`vcd.daemon.watcher.surface_fingerprint`), so an annotator's edit is
  noticed across daemon restarts and our own writes never look like edits;
- ``trace_uses``: trace name → patch names, from each trace's provenance ("which traces used patch P?").
"""

from __future__ import annotations

import json
import time

import sqlite_utils

from .store import SqliteStore


def _tables(db: sqlite_utils.Database) -> None:
    db["fingerprints"].create({"surface": str, "tags": str, "mask": str, "seen": float}, pk="surface",
                              if_not_exists=True)
    db["trace_uses"].create({"trace": str, "patch": str}, pk=("trace", "patch"), not_null={"trace", "patch"},
                            if_not_exists=True)
    db["trace_uses"].create_index(["patch"], index_name="trace_uses_patch", if_not_exists=True)


class SurfaceIndex(SqliteStore):
    """Fingerprints of surfaces and the trace → patch index (see module docstring)."""

    NAME = "surface_index"
    STEPS = (_tables,)

    def fingerprint(self, surface: str) -> dict | None:
        """``{"tags": [...], "mask": sha1 or None}`` last recorded for ``surface``, or None."""
        row = next(self.db.query("SELECT tags, mask FROM fingerprints WHERE surface = ?", [surface]), None)
        return None if row is None else {"tags": json.loads(row["tags"]), "mask": row["mask"]}

    def set_fingerprint(self, surface: str, tags: list[str], mask: str | None) -> None:
        """Record a surface's tags and mask fingerprint
        (:func:`~vcd.formats.tifxyz.mask_fingerprint`) as last seen."""
        self.db["fingerprints"].upsert({"surface": surface, "tags": json.dumps(sorted(tags)), "mask": mask,
                                        "seen": time.time()}, pk="surface")

    def forget_missing(self, present: set[str]) -> int:
        """Drop fingerprints (and trace uses) of surfaces no longer on disk; returns how many."""
        gone = [r["surface"] for r in self.db.query("SELECT surface FROM fingerprints") if r["surface"] not in present]
        with self.transaction():
            for name in gone:
                self.db["fingerprints"].delete_where("surface = ?", [name])
                self.db["trace_uses"].delete_where("trace = ?", [name])
        return len(gone)

    def record_trace(self, trace: str, patches: list[str]) -> None:
        """Replace the patch list of ``trace`` (an empty list: the trace no longer counts)."""
        with self.transaction():
            self.db["trace_uses"].delete_where("trace = ?", [trace])
            self.db["trace_uses"].insert_all([{"trace": trace, "patch": p} for p in patches], pk=("trace", "patch"),
                                             ignore=True)

    def traces_using(self, patch: str) -> list[str]:
        """Names of the traces whose provenance lists ``patch``, sorted."""
        return [r["trace"] for r in self.db.query("SELECT trace FROM trace_uses WHERE patch = ? ORDER BY trace",
                                                  [patch])]
