"""The `drlrec` command line: one command per pipeline stage, plus tools. Heavy libraries load lazily.

The package: `commands` (one handler per command: load Params once, call the stage) and `parser` (the
argparse tree, the commands other packages add through the `drlrec.commands` entry point, and `main`).
`python -m drlrec.cli` runs `main` (`__main__.py`).
"""

from __future__ import annotations

from drlrec.cli.commands import (  # noqa: F401
    _load,
    cmd_ab,
    cmd_compare,
    cmd_evaluate,
    cmd_featurize,
    cmd_ingest,
    cmd_models,
    cmd_monitor,
    cmd_ope,
    cmd_promote,
    cmd_register,
    cmd_rollback,
    cmd_serve,
    cmd_simulate,
    cmd_stats,
    cmd_summary,
    cmd_synth,
    cmd_train,
    cmd_tune,
    cmd_ui,
    cmd_validate,
)
from drlrec.cli.parser import (  # noqa: F401
    COMMANDS_GROUP,
    DESCRIPTION,
    Handler,
    _common,
    _plugins,
    build_parser,
    main,
)
