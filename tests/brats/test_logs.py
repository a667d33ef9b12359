"""Console logging levels and the per-run ``train.log``."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from brats.logs import LOGGERS, configure_logging, run_log


def _emit_all(name: str = "brats.training.trainer") -> None:
    log = logging.getLogger(name)
    log.debug("debug line")
    log.info("info line")
    log.warning("warning line")


@pytest.mark.parametrize("verbosity, shown", [(-1, ["warning"]), (0, ["info", "warning"]),
                                              (1, ["debug", "info", "warning"])])
def test_configure_logging_levels(verbosity: int, shown: list[str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(verbosity)
    _emit_all()
    err = capsys.readouterr().err
    assert [w for w in ("debug", "info", "warning") if f"{w} line" in err] == shown
    if verbosity >= 0:
        assert "INFO brats.training.trainer: info line" in err


def test_configure_logging_twice_keeps_one_handler_and_covers_method_packages(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(0)
    configure_logging(0)
    logging.getLogger("cascade.pipeline").info("cascade says")
    logging.getLogger("ensemble.deepmedic").info("ensemble says")
    logging.getLogger("brats").info("once")
    err = capsys.readouterr().err
    assert err.count("once") == 1
    assert "INFO cascade.pipeline: cascade says" in err and "ensemble says" in err


def test_run_log_appends_with_timestamps_for_the_block_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(-1)  # --quiet: the console shows warnings only, the file still gets INFO
    log = logging.getLogger("brats.training.trainer")
    with run_log(tmp_path / "run") as path:
        log.info("epoch 0 done")
        logging.getLogger("cascade.nets").info("cascade line")
    log.info("after the block")
    with run_log(tmp_path / "run"):
        log.info("resumed")
    assert path == tmp_path / "run" / "train.log"
    lines = path.read_text().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["epoch 0 done", "cascade line", "resumed"]
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO "
    assert re.fullmatch(stamp + r"brats\.training\.trainer: epoch 0 done", lines[0])
    assert "epoch 0 done" not in capsys.readouterr().err
    for name in LOGGERS:
        logger = logging.getLogger(name)
        assert not any(isinstance(h, logging.FileHandler) for h in logger.handlers)
        assert logger.level == logging.WARNING


def test_run_log_without_console_restores_levels(tmp_path: Path) -> None:
    logging.getLogger("brats").setLevel(logging.ERROR)
    with run_log(tmp_path) as path:
        logging.getLogger("brats.x").info("kept")
    logging.getLogger("brats.x").error("not kept")
    assert logging.getLogger("brats").level == logging.ERROR
    assert path.read_text().count("kept") == 1
