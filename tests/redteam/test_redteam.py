"""Red-team suite: every bad input of :data:`tests.redteam.cases.ATTACKS` gives its exit status,
exactly one line on stderr (``brats: error: …``) without a traceback, and leaves every input
file as it was (checksums of the shared inputs and of the files the case set up)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import subprocess
from pathlib import Path

import pytest

from brats.cli import main
from tests.redteam.cases import ATTACKS, MOUNTS, Attack, Env
from tests.redteam.conftest import Session


def checksums(root: Path) -> dict[str, str]:
    """Relative path → sha256 of every file under ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """``brats -q ARGS --no-progress`` in this process (warnings and errors only on stderr):
    (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["-q", *args, "--no-progress"] if args else args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack(attack: Attack, session: Session, tmp_path: Path) -> None:
    shared = checksums(session.root)
    ws = tmp_path / "ws"
    ws.mkdir()
    try:
        args = attack.build(Env(session, ws))
        before = checksums(ws)
        code, out, err = run_cli(args)
    finally:
        while MOUNTS:
            subprocess.run(["umount", str(MOUNTS.pop())], check=False)
        for folder in ws.rglob("*"):
            if folder.is_dir():
                folder.chmod(0o755)
    assert "Traceback" not in err + out
    assert code == attack.code, (code, err, out[-500:])
    if code == 2:
        assert err.startswith("brats: error: ") and err.endswith("\n"), err
        assert err.count("\n") == 1, err
        assert attack.expect in err, err
    else:
        assert attack.expect in out, out[-1000:]
    after = checksums(ws)
    assert {k: after.get(k) for k in before} == before, "an input file changed or vanished"
    assert checksums(session.root) == shared, "a shared input changed"


def test_the_table_covers_every_subcommand() -> None:
    from brats.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    used = set()
    for attack in ATTACKS:
        used |= {word for word in attack.name.split("-")} & commands
    assert len(ATTACKS) >= 100
    assert commands - {"entries"} <= used, commands - used
