"""System tools some tests need (redis-server, wrk, chromium): skip without them, fail in CI."""

from __future__ import annotations

import os

import pytest


def system_tool(name: str) -> str:
    """Path of a system tool the test needs (redis-server, wrk, chromium): skip when it is absent, or fail
    under DRLREC_REQUIRE_SYSTEM_TOOLS=1 (CI), where `make test` installs them."""
    import shutil

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (`make system-tools` installs it with apt-get)"
        if os.environ.get("DRLREC_REQUIRE_SYSTEM_TOOLS", "") not in ("", "0", "false"):
            pytest.fail(f"DRLREC_REQUIRE_SYSTEM_TOOLS=1 but {message}")
        pytest.skip(message)
    return path
