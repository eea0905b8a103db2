"""The README's "Running on a real scroll" section names commands, params files and config that exist
and are accepted as written: every ``vcd`` / ``vcdctl`` command in it parses with the real CLI parsers
(and its subcommand is listed by ``--help``), every params JSON block is accepted by the params
dataclasses without an unknown-key warning, the grid relation it spells out holds for its own blocks
(trace ``src_step`` = the patches' ``step_size``; cells no wider than the wrap spacing), every TOML
block is a valid daemon config, the files it points to are in the repository, and the rehearsal's
``trace_params.json`` fits the ``seed.json`` that ``vcd synth`` writes for the rehearsal's scroll."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from vcd.cli.ctl import build_parser as ctl_parser
from vcd.cli.main import build_parser as vcd_parser
from vcd.daemon.config import parse as parse_config
from vcd.grow.params import GrowParams
from vcd.trace.params import TraceParams

ROOT = Path(__file__).resolve().parents[1]
#: the smallest wrap spacing (voxels) the section names for real scrolls at 7.91 µm
WRAP_SPACING_MIN = 20
#: placeholders the section uses in commands, and values the parsers accept in their place
PLACEHOLDERS = {"X Y Z": "1 2 3", "…": "x", "IN.zarr": "in.zarr", "OUT.zarr": "out.zarr"}


def section() -> str:
    """The text of the README's "## Running on a real scroll" up to the next ``## `` heading."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## Running on a real scroll")
    end = text.find("\n## ", start + 3)
    return text[start:end if end > 0 else None]


def fenced(text: str, lang: str) -> list[str]:
    """Bodies of the ```lang fenced blocks of ``text``."""
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def heredocs(text: str, tag: str) -> list[str]:
    """Bodies of ``<<'TAG'`` here-documents in ``text``."""
    return re.findall(rf"<<'{tag}'\n(.*?)\n{tag}\n", text, re.S)


def commands(text: str) -> list[list[str]]:
    """Every ``vcd ...`` / ``vcdctl ...`` command in the section's code (fenced and inline), as argv
    lists without the program name's path; shell operators, comments and here-documents end a command."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    code = fenced(text, "bash") + [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose)]
    out = []
    for chunk in code:
        chunk = re.sub(r"<<'(\w+)'\n.*?\n\1\n", "\n", chunk, flags=re.S)
        for line in chunk.splitlines():
            line = line.split(" #")[0]
            for m in re.finditer(r"(?:^|\$\(|[|;&]\s*)\s*(vcdctl|vcd)\s+([^|;&>)<]*)", line):
                args = m.group(2).strip()
                for k, v in PLACEHOLDERS.items():
                    args = args.replace(k, v)
                out.append([m.group(1)] + shlex.split(args))
    return out


def test_section_names_the_commands_a_user_needs():
    cmds = {" ".join(c[:2]) for c in commands(section())}
    for need in ("vcd daemon", "vcdctl status", "vcdctl watch", "vcdctl submit", "vcd info", "vcd synth",
                 "vcd render", "vcd patches-at", "vcd trace", "vcd preview", "vcdctl seed", "vcd convert"):
        assert need in cmds, (need, sorted(cmds))


@pytest.mark.parametrize("argv", commands(section()), ids=lambda a: " ".join(a)[:60])
def test_every_command_parses(argv):
    """The real parser accepts the command as the README writes it (``--help`` forms exit 0); a bare
    ``vcd NAME`` in the prose only names the subcommand, which must exist."""
    parser = vcd_parser() if argv[0] == "vcd" else ctl_parser()
    if len(argv) == 2:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        assert argv[1] in sub.choices, argv
        return
    try:
        args = parser.parse_args(argv[1:])
    except SystemExit as exc:
        assert exc.code == 0, argv
        return
    assert getattr(args, "func", None), argv


def test_every_subcommand_is_listed_by_help():
    helps = {prog: subprocess.run([sys.executable, "-m", mod, "--help"], capture_output=True, text=True,
                                  cwd=ROOT).stdout for prog, mod in (("vcd", "vcd"), ("vcdctl", "vcd.cli.ctl"))}
    for argv in commands(section()):
        assert re.search(rf"^\s+{re.escape(argv[1])}\b", helps[argv[0]], re.M), (argv, helps[argv[0]])


def _params(block: str):
    """(kind, dataclass instance, warnings) for one params JSON block: grow params carry ``mode``."""
    d = json.loads(block)
    warnings: list[str] = []
    cls = GrowParams if "mode" in d else TraceParams
    return d, cls.from_dict(d, "README", warn=warnings.append), warnings


def test_params_blocks_parse_without_unknown_keys_and_keep_the_grid_relation():
    blocks = [_params(b) for b in fenced(section(), "json")]
    grow = {d["mode"]: p for d, p, _ in blocks if isinstance(p, GrowParams)}
    trace = [p for _, p, _ in blocks if isinstance(p, TraceParams)]
    assert set(grow) == {"seed", "expansion"} and len(trace) == 1
    for d, _p, warnings in blocks:
        assert warnings == [], (d, warnings)
        assert "cache_root" not in d  # daemon jobs may not name a cache outside the volpkg
    t = trace[0]
    assert t.src_step == grow["seed"].step_size == grow["expansion"].step_size
    assert t.cell <= WRAP_SPACING_MIN  # a cell no wider than the narrowest wrap spacing named


def test_config_blocks_are_valid_daemon_configs():
    tomls = fenced(section(), "toml") + heredocs(section(), "TOML")
    assert len(tomls) >= 2
    for block in tomls:
        parse_config(tomllib.loads(block), "README")  # raises InputError naming an unknown key


def test_files_the_section_points_to_exist():
    text = section()
    for rel in ("systemd/vcd.service", "systemd/vcd@.service", "config/prometheus.yml",
                "config/grafana-dashboard.json", "config/vcd.example.toml", "vcd/formats/volpkg.py",
                "vcd/daemon/service.py"):
        assert rel in text and (ROOT / rel).exists(), rel
    test = re.search(r"tests/trace/test_follow_patches\.py::(\w+)", text).group(1)
    assert f"def {test}(" in (ROOT / "tests/trace/test_follow_patches.py").read_text()


def test_the_volume_rule_it_states_is_the_code_s(tmp_path):
    """Step 2's rule, on the tutorial's volume names: neither says pred/surface, so the content decides
    (a sparse prediction beats a dense CT, whichever sorts first); renamed ``*pred*`` it is chosen by
    name; ``[daemon] volume`` wins; render jobs take the other volume (the CT)."""
    import numpy as np
    from vcd.daemon.config import load_config
    from vcd.daemon.service import prediction_volume
    from vcd.formats.volpkg import create_volpkg
    from vcd.formats.volume import write_ome_zarr
    from vcd.jobs.render import _default_volume
    rng = np.random.default_rng(0)
    pred = np.zeros((40, 40, 40), np.uint8)
    pred[:, :, ::9] = 255                                      # sheets: mostly empty, sharp bands
    ct = rng.integers(60, 200, size=(40, 40, 40)).astype(np.uint8)  # dense, noisy
    for names in (("s1_uint8_ome.zarr", "050_entire_scroll1_ome.zarr"), ("050_ct_ome.zarr", "s1_sheets_ome.zarr")):
        vp = create_volpkg(tmp_path / names[1] / "s.volpkg")
        write_ome_zarr(vp.volumes_dir / names[0], ct, 7.91, n_levels=1)
        write_ome_zarr(vp.volumes_dir / names[1], pred, 7.91, n_levels=1)
        assert vp.prediction_name() == (names[1], "content")
        assert prediction_volume(vp.path, load_config(vp.path)).name == names[1]
        assert _default_volume(vp.path / "traces" / "t", vp.path).name == names[0]
    (vp.volumes_dir / names[0]).rename(vp.volumes_dir / "s1_surface_pred_ome.zarr")  # the CT, named *pred*
    assert vp.prediction_name() == ("s1_surface_pred_ome.zarr", "name")
    assert _default_volume(vp.path / "traces" / "t", vp.path).name == names[1]
    (vp.path / "vcd.toml").write_text(f'[daemon]\nvolume = "{names[1]}"\n')
    assert prediction_volume(vp.path, load_config(vp.path)).name == names[1]


def test_rehearsal_trace_params_fit_the_synth_seed_json(tmp_path):
    """The rehearsal's ``trace_params.json`` has ``src_step`` = the ``step_size`` that ``vcd synth``
    writes for the rehearsal's scroll, and cells narrower than that scroll's wrap spacing."""
    from vcd.synth import load_truth
    text = section()
    line = next(c for c in commands(text) if c[:2] == ["vcd", "synth"])
    out = tmp_path / "scroll.volpkg"
    args = vcd_parser().parse_args(line[1:2] + [str(out)] + line[3:] + ["--no-ct"])
    assert args.func(args) == 0
    step_size = json.loads((out / "seed.json").read_text())["step_size"]
    body = next(b for b in heredocs(text, "JSON"))
    d, t, warnings = _params(body)
    assert warnings == [] and t.src_step == step_size, (d, step_size)
    assert t.cell < load_truth(out).pitch
    for toml in heredocs(text, "TOML"):
        cfg = parse_config(tomllib.loads(toml))
        assert (out / "volumes" / cfg.daemon.volume).is_dir()


def test_performance_figures_live_in_one_place():
    """README repeats no benchmark figure (no ms, jobs/s, samples/s, vx²/CPU-s, MiB) and links
    docs/capacity.md, which names every bench/ script and the anchor the README points to."""
    readme = (ROOT / "README.md").read_text()
    figures = re.findall(r"\d[\d,.]*\s?(?:ms\b|jobs/s|samples/s|vx²/CPU|cm²/CPU|MiB)", readme)
    assert figures == [], figures
    assert "docs/capacity.md#measured-by-the-heavy-tests" in readme
    capacity = (ROOT / "docs" / "capacity.md").read_text()
    assert "\n## Measured by the heavy tests\n" in capacity
    for script in sorted((ROOT / "bench").glob("*.py")):
        assert f"bench/{script.name}" in capacity, script.name


def test_submitted_jobs_are_accepted_by_their_kind(tmp_path):
    """Every ``vcdctl submit KIND`` in the section, with what ``--params FILE`` names (the section's own
    ``trace_params.json`` block, or the rehearsal's) and the keys the volpkg supplies, parses with the
    job kind's own params definition and no unknown-key warning."""
    from vcd.jobs import get_spec
    text = section()
    files = {"trace_params.json": [_params(b)[0] for b in fenced(text, "json") if "mode" not in json.loads(b)]
             + [json.loads(b) for b in heredocs(text, "JSON")]}
    supplied = {"trace": {"volume": "v", "src_dir": "paths", "tgt_dir": "traces"}}
    submits = [c for c in commands(text) if c[:2] == ["vcdctl", "submit"] and "--help" not in c]
    assert {c[2] for c in submits} >= {"trace", "render"}
    for argv in submits:
        args = ctl_parser().parse_args(argv[1:])
        given = {}
        for kv in args.param or []:
            k, v = kv.split("=", 1)
            try:
                given[k] = json.loads(v)
            except json.JSONDecodeError:
                given[k] = v
        for body in files.get(args.params, [{}]) if args.params else [{}]:
            warnings: list[str] = []
            get_spec(args.kind).parse({**supplied.get(args.kind, {}), **body, **given}, warn=warnings.append)
            assert warnings == [], (argv, warnings)


def test_no_other_doc_repeats_a_figure():
    """Apart from docs/capacity.md (and the VC3D comparison with its method), the docs state no
    timing or throughput figure either."""
    pattern = r"\d[\d,.–-]*\s?(?:ms\b|jobs/s|samples/s|vx²/CPU|cm²/CPU)"
    for doc in sorted((ROOT / "docs").glob("*.md")):
        if doc.name in ("capacity.md", "vc3d-comparison.md"):
            continue
        assert re.findall(pattern, doc.read_text()) == [], doc.name
