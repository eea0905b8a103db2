"""Security defaults (issue 8 item 6), against the real daemon and real files."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from vcd.daemon.config import load_config
from vcd.errors import InputError
from vcd.jobs import confine_params

from ..daemon.test_daemon import put_patch

ROOT = Path(__file__).resolve().parents[2]


def test_daemon_listens_on_loopback_only(daemon_factory, tmp_path, monkeypatch):
    monkeypatch.delenv("VCD_CONFIG", raising=False)
    assert load_config(tmp_path).daemon.metrics_addr.startswith("127.0.0.1:")  # the default
    d = daemon_factory().start()
    d.wait_for(lambda: _listening(d.proc.pid), "metrics listener")
    addrs = _listening(d.proc.pid)
    assert addrs and all(ip in ("127.0.0.1", "::1") for ip, _ in addrs), addrs


def _listening(pid):
    out = []
    for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            out += [(c.laddr.ip, c.laddr.port) for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            pass
    return out


def test_job_params_outside_the_volpkg_are_rejected(daemon_factory, tmp_path):
    d = daemon_factory().start()
    vp = d.volpkg
    outside = tmp_path / "outside"
    outside.mkdir()
    put_patch(vp, "auto_grown_20250101000000001", 2.0, 3.0, 20, 60)
    (vp / "paths" / "auto_grown_20250101000000666").symlink_to(outside, target_is_directory=True)
    q = d.queue()
    bad = {
        "dotdot": q.submit("overlap", {"paths": str(vp / "paths" / ".." / ".."), "segment": "x"}),
        "absolute": q.submit("sleep", {"seconds": 0.01, "marker": str(outside / "written")}),
        "relative": q.submit("sleep", {"seconds": 0.01, "marker": "../escaped"}),
        "symlink": q.submit("winding", {"trace": str(vp / "paths" / "auto_grown_20250101000000666")}),
        "trace": q.submit("trace", {"volume": "/etc", "src_dir": str(vp / "paths"), "tgt_dir": str(vp / "traces"),
                                    "seed": str(vp / "paths" / "auto_grown_20250101000000001")}),
    }
    good = q.submit("sleep", {"seconds": 0.01, "marker": str(vp / ".vcd" / "inside")})
    d.wait_for(lambda: all(q.get(j)["state"] in ("done", "failed") for j in [*bad.values(), good]), "jobs final")
    for what, j in bad.items():
        job = q.get(j)
        assert job["state"] == "failed" and "outside the volpkg" in job["error"] or "'..'" in job["error"], (what, job)
        assert "Traceback" not in job["error"]
    assert q.get(good)["state"] == "done" and (vp / ".vcd" / "inside").exists()
    assert not list(outside.iterdir()) and not (vp.parent / "escaped").exists()
    assert d.proc.poll() is None  # still running


def test_volumes_may_be_symlinked_to_another_disk(tmp_path):
    vp = tmp_path / "s.volpkg"
    (vp / "volumes").mkdir(parents=True)
    (tmp_path / "big").mkdir()
    (vp / "volumes" / "pred.zarr").symlink_to(tmp_path / "big", target_is_directory=True)
    confine_params({"volume": str(vp / "volumes" / "pred.zarr"), "paths": "paths"}, vp)
    with pytest.raises(InputError, match="outside the volpkg"):
        confine_params({"paths": str(vp / "volumes" / "pred.zarr")}, vp)


def test_no_shell_with_user_strings():
    pattern = re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\(|subprocess\.getoutput|commands\.getoutput")
    hits = [f"{p}:{i}" for p in (ROOT / "vcd").rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits


def test_files_are_created_with_umask_respecting_modes(tmp_path):
    code = f"""
import os, numpy as np
os.umask(0o027)
from vcd.synth import make_scroll, load_truth
from vcd.formats.tifxyz import write_surface, write_mask, update_meta
from vcd.grow.linking import link_new_patch
vp = make_scroll({str(tmp_path / 'u.volpkg')!r}, shape=(40, 96, 96), preset='easy', seed=1, ct=False)
t = load_truth(vp)
for i, th in enumerate((2.0, 2.5)):
    write_surface(vp / 'paths' / f'auto_grown_2025010100000000{{i}}', t.sample_grid(t.theta0 + th, t.theta0 + th + 1.5, 5, 35, 4),
                  {{'scale': [0.25, 0.25], 'source': 'vcd_grow'}})
assert link_new_patch(vp / 'paths', 'auto_grown_20250101000000001')
write_mask(vp / 'paths' / 'auto_grown_20250101000000000', np.full((8, 8), 255, np.uint8))
update_meta(vp / 'paths' / 'auto_grown_20250101000000000', lambda m: m.update(tags={{'approved': True}}))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    seg = tmp_path / "u.volpkg" / "paths" / "auto_grown_20250101000000000"
    assert oct(seg.stat().st_mode & 0o777) == oct(0o750)
    for name in ("x.tif", "meta.json", "mask.tif", "overlapping.json"):
        assert oct((seg / name).stat().st_mode & 0o777) == oct(0o640), name


@pytest.mark.parametrize("unit", ["vcd.service", "vcd@.service"])
def test_systemd_units_are_hardened(unit):
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(ROOT / "systemd" / unit)
    svc = cp["Service"]
    assert svc.get("User") and svc.get("User") != "root"
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                       ("RestrictSUIDSGID", "yes"), ("ProtectKernelTunables", "yes"),
                       ("ProtectKernelModules", "yes"), ("LockPersonality", "yes"), ("RestrictNamespaces", "yes")):
        assert svc.get(key) == value, (unit, key)
    assert svc.get("ReadWritePaths") and "AF_INET" in svc.get("RestrictAddressFamilies", ""), unit
    assert "127.0.0.1" in (ROOT / "config" / "vcd.example.toml").read_text()


def test_readme_states_the_threat_model():
    text = (ROOT / "README.md").read_text()
    assert "Threat model" in text and "test_security.py" in text
