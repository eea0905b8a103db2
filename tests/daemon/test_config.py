"""The daemon config: typed tables, one-line errors naming the bad key, and the example file in step."""

from __future__ import annotations

import pickle
from dataclasses import fields
from pathlib import Path

import pytest

from vcd.daemon.config import Config, ScheduleTable, example_toml, load_config, make_config
from vcd.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "vcd.example.toml"


def _load(tmp_path, text: str) -> Config:
    (tmp_path / "vcd.toml").write_text(text)
    return load_config(tmp_path)


def _error(tmp_path, text: str) -> str:
    with pytest.raises(InputError) as err:
        _load(tmp_path, text)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "vcd.toml") in msg
    return msg


def test_example_is_generated_from_the_dataclasses_and_is_the_defaults(monkeypatch):
    monkeypatch.delenv("VCD_CONFIG", raising=False)
    assert EXAMPLE.read_text() == example_toml(), "run: python -m vcd.daemon.config > config/vcd.example.toml"
    cfg = load_config(ROOT, EXAMPLE)
    assert cfg == Config()
    text = EXAMPLE.read_text()
    for table in fields(Config):
        assert f"[{table.name}" in text
        t = getattr(cfg, table.name)
        for f in fields(t):
            assert f.metadata["help"]
            if f.name != "by_kind":
                assert f"\n{f.name} = " in text
    load_config(ROOT, ROOT / "config" / "vcd.dask.example.toml")  # the other example parses too


def test_typed_access_the_kind_tables_and_no_mapping_layer(tmp_path):
    cfg = _load(tmp_path, "[daemon]\nworkers = 3\n[concurrency]\ntrace = 1\n[pipeline]\nafter_trace = ['winding']\n"
                          "[params.seed]\ngenerations = 7\n[params_files]\nseed = 'my_seed.json'\n")
    assert cfg.daemon.workers == 3
    assert dict(cfg.concurrency) == {"trace": 1}  # kind -> value tables are mappings of job kinds
    assert cfg.pipeline.after_trace == ("winding",)
    assert dict(cfg.params["seed"]) == {"generations": 7}
    assert cfg.params_files["seed"] == "my_seed.json" and cfg.params_files["expand"] == "expand.json"
    with pytest.raises(TypeError):
        cfg["daemon"]  # fixed-key tables are read as attributes only
    with pytest.raises(TypeError):
        cfg.daemon["workers"]
    assert make_config(schedule={"seed_count": 4}).schedule == ScheduleTable(seed_count=4)
    with pytest.raises(InputError, match="seed_cont"):
        make_config(schedule={"seed_cont": 4})
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    with pytest.raises(Exception):
        cfg.daemon.workers = 4  # frozen
    assert cfg.replace(daemon={"workers": 5}).daemon.workers == 5 and cfg.daemon.workers == 3


def test_overrides_merge_over_the_file(tmp_path):
    (tmp_path / "vcd.toml").write_text("[daemon]\nworkers = 3\nlog_format = 'json'\n")
    cfg = load_config(tmp_path, overrides={"daemon": {"workers": 6}})
    assert (cfg.daemon.workers, cfg.daemon.log_format) == (6, "json")


@pytest.mark.parametrize("text, needle", [
    ("[daemon]\nwrokers = 2\n", "'wrokers' (did you mean 'workers'?)"),
    ("[schedul]\nseed_count = 2\n", "'schedul' (did you mean 'schedule'?)"),
    ("[schedule]\nseed_cout = 2\nexpand_queu = 1\n", "'expand_queu' (did you mean 'expand_queue'?), 'seed_cout'"),
    ("[concurrency]\ntrase = 1\n", "'trase' (did you mean 'trace'?)"),
    ("[params.expnad]\ngenerations = 2\n", "'expnad' (did you mean 'expand'?)"),
    ("[params_files]\nsed = 'x.json'\n", "'sed' (did you mean 'seed'?)"),
    ("[pipeline]\nafter_trace = ['windng']\n", "'windng' (did you mean 'winding'?)"),
    ("[daemon]\nworkers = 'many'\n", "[daemon] workers = 'many' is not an int"),
    ("[daemon]\nworkers = 2.5\n", "workers"),
    ("[schedule]\nexpansion = 'maybe'\n", "[schedule] expansion"),
    ("[daemon]\nexecutor = 'slurm'\n", "executor"),
    ("[daemon]\nlog_format = 'xml'\n", "log_format"),
    ("[concurrency]\ntrace = -1\n", "negative"),
    ("[params]\nseed = 3\n", "not a table"),
    ("[pipeline]\nafter_trace = 'winding'\n", "list of strings"),
])
def test_bad_keys_and_values_are_one_line_naming_them(tmp_path, text, needle):
    assert needle in _error(tmp_path, text)
