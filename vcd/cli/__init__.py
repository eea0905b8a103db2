"""Command lines: ``vcd`` (main.py, subcommands in ``cmd_*.py``) and ``vcdctl`` (ctl.py)."""
