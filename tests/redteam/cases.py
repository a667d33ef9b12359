"""The red-team table: bad inputs and faults for every ``brats`` subcommand.

Each :class:`Attack` builds its arguments in a fresh work folder (copying and damaging shared
inputs where it needs to) and names the exit status and a fragment of the one-line error it must
give. Damage helpers edit NIfTI files at the byte level where nibabel would repair the value
on writing (pixdim, sform columns).
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.redteam.conftest import Session


@dataclass
class Env:
    """A case's view: the shared ``s`` (read only) and its own work folder ``ws``."""

    s: Session
    ws: Path

    def copy(self, source: Path, name: str | None = None) -> Path:
        """A copy of a shared file or folder inside ``ws``."""
        target = self.ws / (name or source.name)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
        return target

    def data_copy(self) -> Path:
        """A private copy of the training dataset."""
        return self.copy(self.s.data)

    def file(self, name: str, text: str = "mine\n") -> Path:
        """A file of the user's in ``ws``."""
        path = self.ws / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


@dataclass(frozen=True)
class Attack:
    """One bad input: ``build(env)`` returns the arguments; ``code`` and ``expect`` (a fragment
    of the error line, or of stdout for ``brats check``'s status 1) are what must come back."""

    name: str
    build: Callable[[Env], list[str]]
    expect: str
    code: int = 2
    read_only: bool = False


# --- byte-level damage of one NIfTI file ------------------------------------------------------

def _raw(path: Path) -> bytearray:
    return bytearray(gzip.decompress(path.read_bytes()))


def _put(path: Path, raw: bytes | bytearray) -> None:
    path.write_bytes(gzip.compress(bytes(raw)))


def _patch_floats(offsets_values: dict[int, float]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        raw = _raw(path)
        for offset, value in offsets_values.items():
            struct.pack_into("<f", raw, offset, value)
        _put(path, raw)
    return damage


def _zero_sform_column(path: Path) -> None:
    raw = _raw(path)
    for row in (280, 296, 312):  # srow_x, srow_y, srow_z: column 1 of each
        struct.pack_into("<f", raw, row + 4, 0.0)
    struct.pack_into("<h", raw, 252, 0)  # qform_code 0: the sform is the only affine
    _put(path, raw)


def _flip_payload_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _rewrite(array_fn: Callable[[np.ndarray], np.ndarray],
             affine_fn: Callable[[np.ndarray], np.ndarray] = lambda a: a) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        img = nib.load(path)
        data = array_fn(np.asanyarray(img.dataobj))
        out = nib.Nifti1Image(data, affine_fn(img.affine.copy()))
        nib.save(out, path)
    return damage


def _with_nan(a: np.ndarray) -> np.ndarray:
    out = a.astype(np.float32)
    out[a.shape[0] // 2, a.shape[1] // 2, a.shape[2] // 2] = np.nan
    return out


def _with_inf(a: np.ndarray) -> np.ndarray:
    out = a.astype(np.float32)
    out[0, 0, 0] = np.inf
    return out


def _label_at_corner(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    out[0, 0, 0] = 2
    return out


def _shift(affine: np.ndarray) -> np.ndarray:
    affine[0, 3] += 5
    return affine


#: name → (modality whose file is damaged, damage, fragment of the message).
CORRUPTIONS: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "gzip-bit-flip": ("t1", _flip_payload_bit, "corrupt or truncated"),
    "truncated-gzip": ("t2", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
                       "corrupt or truncated"),
    "empty-file": ("flair", lambda p: p.write_bytes(b""), "cannot read NIfTI"),
    "junk-bytes": ("t1ce", lambda p: p.write_bytes(b"this is not a NIfTI file"), "cannot read"),
    "header-only": ("t1", lambda p: _put(p, _raw(p)[:352]), "corrupt or truncated"),
    "zero-pixdim": ("t1", _patch_floats({80: 0.0}), "pixdim"),
    "negative-pixdim": ("t2", _patch_floats({84: -3.0}), "pixdim"),
    "nan-pixdim": ("flair", _patch_floats({88: float("nan")}), "pixdim"),
    "zero-sform-column": ("t1", _zero_sform_column, "voxel spacing"),
    "nan-in-affine": ("t1ce", _patch_floats({292: float("nan")}), "NaN or infinite"),
    "complex-voxels": ("t2", _rewrite(lambda a: a.astype(np.complex64)), "not real numeric"),
    "all-zero-modality": ("flair", _rewrite(np.zeros_like), "every voxel is 0"),
    "nan-voxel": ("t1", _rewrite(_with_nan), "NaN or infinite"),
    "inf-voxel": ("t1ce", _rewrite(_with_inf), "NaN or infinite"),
    "4d-volume": ("t2", _rewrite(lambda a: np.stack([a, a], axis=-1)), "3-D"),
    "shape-mismatch": ("flair", _rewrite(lambda a: a[:-1]), "differs from"),
    "affine-mismatch": ("t1ce", _rewrite(lambda a: a, _shift), "affine differs"),
    "unknown-label": ("seg", _rewrite(lambda a: np.where(a == 2, 3, a).astype(np.uint8)),
                      "label"),
    "float-label": ("seg", _rewrite(lambda a: a.astype(np.float32) + 0.5), "non-integer"),
    "label-outside-brain": ("seg", _rewrite(_label_at_corner), "outside the brain"),
}


def _damaged_case(env: Env, modality: str, damage: Callable[[Path], None]) -> tuple[Path, Path]:
    """A dataset copy whose first case's ``modality`` file is damaged; (dataset, case folder)."""
    data = env.data_copy()
    case = sorted(p.parent for p in data.rglob("*_t1.nii.gz"))[0]
    damage(next(case.glob(f"*_{modality}.nii.gz")))
    return data, case


def _corruption_attacks() -> list[Attack]:
    attacks = []
    for name, (modality, damage, message) in CORRUPTIONS.items():
        def check(env: Env, m: str = modality, d: Callable[[Path], None] = damage) -> list[str]:
            return ["check", str(_damaged_case(env, m, d)[0])]

        def prepare(env: Env, m: str = modality, d: Callable[[Path], None] = damage) -> list[str]:
            return ["prepare", str(_damaged_case(env, m, d)[0]), "--out", str(env.ws / "cache")]

        def show(env: Env, m: str = modality, d: Callable[[Path], None] = damage) -> list[str]:
            return ["show", str(_damaged_case(env, m, d)[1]), "--out", str(env.ws / "f.png")]

        attacks += [Attack(f"check-{name}", check, message, code=1),
                    Attack(f"prepare-{name}", prepare, message),
                    Attack(f"show-{name}", show, message)]
    return attacks


# --- caches ------------------------------------------------------------------------------------

def _cache_copy(env: Env, damage: Callable[[Path, str], None]) -> Path:
    cache = env.copy(env.s.cache)
    first = sorted(p.name[: -len("_image.npy")] for p in cache.glob("*_image.npy"))[0]
    damage(cache, first)
    return cache


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


CACHE_DAMAGE: dict[str, tuple[Callable[[Path, str], None], str]] = {
    "missing-image": (lambda c, i: (c / f"{i}_image.npy").unlink(), "cached array missing"),
    "truncated-image": (lambda c, i: _truncate(c / f"{i}_image.npy"), "cached array damaged"),
    "missing-labels": (lambda c, i: (c / f"{i}_labels.npy").unlink(), "cached array missing"),
    "truncated-record": (lambda c, i: _truncate(c / f"{i}.json"), "damaged case record"),
    "missing-record": (lambda c, i: (c / f"{i}.json").unlink(), "is not in the cache"),
    "truncated-index": (lambda c, i: _truncate(c / "dataset.json"), "damaged cache index"),
    "wrong-shape-image": (lambda c, i: np.save(c / f"{i}_image.npy", np.zeros((4, 2, 2, 2),
                                                                               np.float32)),
                          "do not match its record"),
    "pickled-image": (lambda c, i: np.save(c / f"{i}_image.npy", np.array([{"a": 1}]),
                                           allow_pickle=True), "cached array damaged"),
}

TRAIN_FAST = ["--profile", "quick", "data.workers=0", "train.tensorboard=false",
              "network.kwargs.base_filters=2", "train.iterations_per_epoch=1",
              "train.val_batches=1", "train.epochs=1"]


def _cache_attacks() -> list[Attack]:
    attacks = []
    for name, (damage, message) in CACHE_DAMAGE.items():
        def train(env: Env, d: Callable[[Path, str], None] = damage) -> list[str]:
            return ["train", "isensee2017", "--data", str(_cache_copy(env, d)), "--out",
                    str(env.ws / "run"), "--device", "cpu", *TRAIN_FAST]

        attacks.append(Attack(f"train-cache-{name}", train, message))
    attacks += [
        Attack("prepare-other-source-into-cache",
               lambda e: ["prepare", str(e.s.val), "--out", str(e.copy(e.s.cache))],
               "existing cache has"),
        Attack("prepare-into-damaged-index",
               lambda e: ["prepare", str(e.s.data), "--out",
                          str(_cache_copy(e, lambda c, i: _truncate(c / "dataset.json")))],
               "damaged cache index"),
        Attack("prepare-into-user-folder",
               lambda e: ["prepare", str(e.s.data), "--out", str(e.file("mine/notes.txt").parent)],
               "not a brats cache"),
        Attack("prepare-into-a-file",
               lambda e: ["prepare", str(e.s.data), "--out", str(e.file("cache.txt"))],
               "is a file"),
        Attack("prepare-float16-into-float32-cache",
               lambda e: ["prepare", str(e.s.data), "--out", str(e.copy(e.s.cache)),
                          "--dtype", "float16"], "image_dtype"),
        Attack("train-not-a-cache",
               lambda e: ["train", "isensee2017", "--data", str(e.s.data), "--out",
                          str(e.ws / "run"), *TRAIN_FAST], "not a brats cache"),
        Attack("train-missing-cache",
               lambda e: ["train", "isensee2017", "--data", str(e.ws / "absent"), "--out",
                          str(e.ws / "run"), *TRAIN_FAST], "not a brats cache"),
    ]
    return attacks


# --- checkpoints -------------------------------------------------------------------------------

def _fake_run(env: Env, damage: Callable[[Path], None]) -> Path:
    """A run folder whose checkpoint_last.pt is damaged by ``damage``."""
    from brats.config import load_config, parse_overrides, to_dict
    from brats.nets import build_network
    from brats.reproduce import resolve_entry
    from brats.training.checkpoint import save_checkpoint

    config = load_config(resolve_entry("isensee2017"), "quick",
                         parse_overrides(["network.kwargs.base_filters=2"])).member("model")
    network = build_network(config.network.name, in_channels=4, num_classes=4,
                            **config.network.kwargs)
    run = env.ws / "run"
    save_checkpoint({"entry": config.entry, "member": "model", "fold": 0,
                     "config": to_dict(config), "network": config.network.name,
                     "network_kwargs": dict(config.network.kwargs), "in_channels": 4,
                     "num_outputs": 4, "target": "classes", "intensity": config.data.intensity,
                     "epoch": 0, "model": network.state_dict()}, run / "checkpoint_last.pt")
    damage(run / "checkpoint_last.pt")
    return run


def _middle_zeros(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


def _foreign_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"not a pickle")


def _pickle_bomb(path: Path) -> None:
    import torch

    torch.save({"format": 1, "hook": os.system}, path)  # a global weights_only refuses


CHECKPOINT_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "64-zero-bytes": (_middle_zeros, "checkpoint is damaged"),
    "truncated": (_truncate, "corrupt or truncated"),
    "empty": (lambda p: p.write_bytes(b""), "corrupt or truncated"),
    "foreign-zip": (_foreign_zip, "cannot read checkpoint"),
    "unsafe-pickle": (_pickle_bomb, "cannot read checkpoint"),
}


def _checkpoint_attacks() -> list[Attack]:
    attacks = []
    for name, (damage, message) in CHECKPOINT_DAMAGE.items():
        def resume(env: Env, d: Callable[[Path], None] = damage) -> list[str]:
            return ["train", "isensee2017", "--data", str(env.s.cache), "--out",
                    str(_fake_run(env, d)), "--resume", "--device", "cpu", *TRAIN_FAST]

        def predict(env: Env, d: Callable[[Path], None] = damage) -> list[str]:
            return ["predict", str(_fake_run(env, d)), "--input", str(env.s.val), "--output",
                    str(env.ws / "pred"), "--device", "cpu"]

        attacks += [Attack(f"resume-checkpoint-{name}", resume, message),
                    Attack(f"predict-checkpoint-{name}", predict, message)]
    return attacks


# --- arguments and values ----------------------------------------------------------------------

def _train(*extra: str) -> Callable[[Env], list[str]]:
    return lambda e: ["train", "isensee2017", "--data", str(e.s.cache), "--out",
                      str(e.ws / "run"), *TRAIN_FAST, *extra]


def _leaderboard_csv(text: str | bytes) -> Callable[[Env], list[str]]:
    def build(env: Env) -> list[str]:
        path = env.ws / "bad.csv"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["leaderboard", str(env.s.metrics), str(path), "--name", "a", "--name", "b"]
    return build


def _bad_config(text: str) -> Callable[[Env], list[str]]:
    def build(env: Env) -> list[str]:
        return ["train", str(env.file("entry.yaml", text)), "--data", str(env.s.cache), "--out",
                str(env.ws / "run")]
    return build


ARGUMENT_ATTACKS = [
    Attack("no-subcommand", lambda e: [], "required"),
    Attack("unknown-subcommand", lambda e: ["frobnicate"], "invalid choice"),
    Attack("unknown-option", lambda e: ["check", str(e.s.data), "--frobnicate"], "unrecognized"),
    Attack("verbose-and-quiet", lambda e: ["-v", "entries", "-q"], "at most one"),
    Attack("synth-zero-cases", lambda e: ["synth", str(e.ws / "d"), "--cases", "0"], "positive"),
    Attack("synth-text-cases", lambda e: ["synth", str(e.ws / "d"), "--cases", "many"],
           "positive integer"),
    Attack("synth-zero-shape", lambda e: ["synth", str(e.ws / "d"), "--shape", "0", "0", "0"],
           "positive"),
    Attack("synth-tiny-shape", lambda e: ["synth", str(e.ws / "d"), "--shape", "4", "4", "4"],
           "shape"),
    Attack("synth-unknown-release", lambda e: ["synth", str(e.ws / "d"), "--release", "1999"],
           "1999"),
    Attack("synth-negative-seed", lambda e: ["synth", str(e.ws / "d"), "--seed", "-1"], "seed"),
    Attack("synth-zero-jobs", lambda e: ["synth", str(e.ws / "d"), "--jobs", "0"], "positive"),
    Attack("synth-into-user-folder", lambda e: ["synth", str(e.file("mine/a.txt").parent)],
           "not empty"),
    Attack("synth-under-a-file", lambda e: ["synth", str(e.file("f.txt") / "d")], "f.txt"),
    Attack("check-missing-folder", lambda e: ["check", str(e.ws / "absent")], "not found"),
    Attack("check-a-file", lambda e: ["check", str(e.file("f.txt"))], "f.txt"),
    Attack("check-unknown-release", lambda e: ["check", str(e.s.data), "--release", "1999"],
           "1999"),
    Attack("prepare-missing-data", lambda e: ["prepare", str(e.ws / "absent"), "--out",
                                              str(e.ws / "c")], "not found"),
    Attack("prepare-bad-dtype", lambda e: ["prepare", str(e.s.data), "--out", str(e.ws / "c"),
                                           "--dtype", "int8"], "int8"),
    Attack("prepare-zero-locations", lambda e: ["prepare", str(e.s.data), "--out",
                                                str(e.ws / "c"), "--locations", "0"], "positive"),
    Attack("prepare-under-a-file", lambda e: ["prepare", str(e.s.data), "--out",
                                              str(e.file("f.txt") / "c")], "f.txt"),
    Attack("train-fold-abc", _train("--fold", "abc"), "fold"),
    Attack("train-fold-negative", _train("--fold=-1"), "fold"),
    Attack("train-fold-7", _train("--fold", "7"), "fold"),
    Attack("train-device-foo", _train("--device", "foo"), "unknown device"),
    Attack("train-device-missing-gpu", _train("--device", "cuda:99"), "CUDA device"),
    Attack("train-negative-lr", _train("optim.lr=-0.1"), "optim.lr"),
    Attack("train-zero-batch", _train("data.batch_size=0"), "data.batch_size"),
    Attack("train-zero-epochs", _train("train.epochs=0"), "train.epochs"),
    Attack("train-overlap-above-one", _train("inference.overlap=1.5"), "inference.overlap"),
    Attack("train-foreground-fraction-2", _train("data.foreground_fraction=2"),
           "data.foreground_fraction"),
    Attack("train-nan-lr", _train("optim.lr=.nan"), "optim.lr"),
    Attack("train-one-fold", _train("train.folds=1"), "train.folds"),
    Attack("train-zero-patch", _train("data.patch_size=[0, 32, 32]"), "data.patch_size"),
    Attack("train-text-lr", _train("optim.lr=fast"), "optim.lr"),
    Attack("train-typo-key", _train("optim.lrr=0.1"), "did you mean"),
    Attack("train-bad-yaml-override", _train("data.patch_size=[1, 2"), "not valid YAML"),
    Attack("train-unknown-member", _train("--member", "nobody"), "no member"),
    Attack("train-unknown-profile", lambda e: ["train", "isensee2017", "--data", str(e.s.cache),
                                               "--out", str(e.ws / "run"), "--profile", "nope"],
           "no profile"),
    Attack("train-unknown-entry", lambda e: ["train", "nobody2017", "--data", str(e.s.cache),
                                             "--out", str(e.ws / "run")], "nobody2017"),
    Attack("train-config-bad-yaml", _bad_config("entry: x\ndata: [unclosed\n"), "not valid YAML"),
    Attack("train-config-a-list", _bad_config("- 1\n- 2\n"), "mapping"),
    Attack("train-config-unknown-key", _bad_config("entry: x\ndata: {batch_sise: 2}\n"),
           "did you mean"),
    Attack("train-into-user-folder", lambda e: ["train", "isensee2017", "--data", str(e.s.cache),
                                                "--out", str(e.file("mine/a.txt").parent),
                                                *TRAIN_FAST], "not a run folder"),
    Attack("train-into-a-file", lambda e: ["train", "isensee2017", "--data", str(e.s.cache),
                                           "--out", str(e.file("run.txt")), *TRAIN_FAST],
           "is a file"),
    Attack("show-slice-500", lambda e: ["show", str(e.s.case_dirs[0]), "--out",
                                        str(e.ws / "f.png"), "--slice", "500"], "slice 500"),
    Attack("show-slice-negative", lambda e: ["show", str(e.s.case_dirs[0]), "--out",
                                             str(e.ws / "f.png"), "--slice=-3"], "slice -3"),
    Attack("show-unknown-extension", lambda e: ["show", str(e.s.case_dirs[0]), "--out",
                                                str(e.ws / "f.xyz")], "unknown figure format"),
    Attack("show-no-extension", lambda e: ["show", str(e.s.case_dirs[0]), "--out",
                                           str(e.ws / "figure")], "unknown figure format"),
    Attack("show-several-cases", lambda e: ["show", str(e.s.data), "--out", str(e.ws / "f.png")],
           "pick one with --case"),
    Attack("show-unknown-case", lambda e: ["show", str(e.s.data), "--out", str(e.ws / "f.png"),
                                           "--case", "nobody"], "no case"),
    Attack("show-existing-figure", lambda e: ["show", str(e.s.case_dirs[0]), "--out",
                                              str(e.file("f.png"))], "pass --overwrite"),
    Attack("show-over-its-input", lambda e: ["show", str(e.copy(e.s.case_dirs[0])), "--out",
                                             str(next((e.ws / e.s.case_dirs[0].name)
                                                      .glob("*_t1.nii.gz"))), "--overwrite"],
           "unknown figure format"),
    Attack("show-overwrite-input-file", lambda e: _show_over_input(e), "never writes over"),
    Attack("show-under-a-file", lambda e: ["show", str(e.s.case_dirs[0]), "--out",
                                           str(e.file("f.txt") / "f.png")], "f.txt"),
    Attack("evaluate-missing-predictions", lambda e: ["evaluate", str(e.ws / "absent"),
                                                      str(e.s.data)], "absent"),
    Attack("evaluate-missing-references", lambda e: ["evaluate", str(e.s.preds),
                                                     str(e.ws / "absent")], "absent"),
    Attack("evaluate-unknown-convention", lambda e: ["evaluate", str(e.s.preds), str(e.s.data),
                                                     "--convention", "nope"], "nope"),
    Attack("evaluate-existing-out", lambda e: ["evaluate", str(e.s.preds), str(e.s.data),
                                               "--out", str(e.file("m.csv"))], "pass --overwrite"),
    Attack("evaluate-over-a-prediction", lambda e: _evaluate_over_input(e), "never writes over"),
    Attack("evaluate-zero-jobs", lambda e: ["evaluate", str(e.s.preds), str(e.s.data), "--jobs",
                                            "0"], "positive"),
    Attack("evaluate-under-a-file", lambda e: ["evaluate", str(e.s.preds), str(e.s.data),
                                               "--out", str(e.file("f.txt") / "m.csv")], "f.txt"),
    Attack("evaluate-empty-prediction-folder", lambda e: ["evaluate",
                                                          str(e.file("p/x.txt").parent),
                                                          str(e.s.data)], "prediction"),
    Attack("validate-missing-folder", lambda e: ["validate", str(e.ws / "absent"), "--images",
                                                 str(e.s.val)], "absent"),
    Attack("validate-existing-zip", lambda e: ["validate", str(e.s.preds), "--images",
                                               str(e.s.val), "--zip", str(e.file("s.zip"))],
           "pass --overwrite"),
    Attack("validate-zip-over-an-image", lambda e: _validate_over_input(e), "never writes over"),
    Attack("leaderboard-missing-csv", lambda e: ["leaderboard", str(e.ws / "absent.csv")],
           "not found"),
    Attack("leaderboard-empty-csv", _leaderboard_csv(""), "not a readable CSV"),
    Attack("leaderboard-binary-csv", _leaderboard_csv(b"\xff\xfe\x00\x81" * 50),
           "bad.csv"),
    Attack("leaderboard-no-columns", _leaderboard_csv("a,b\n1,2\n"), "not a brats metrics CSV"),
    Attack("leaderboard-text-dice", _leaderboard_csv("case,region,dice,hd95\nc1,WT,high,3\n"),
           "non-numeric"),
    Attack("leaderboard-no-regions", _leaderboard_csv("case,region,dice,hd95\nc1,XX,1,3\n"),
           "no rows"),
    Attack("leaderboard-unknown-plot-format",
           lambda e: ["leaderboard", str(e.s.metrics), "--plot", str(e.ws / "p.xyz")],
           "unknown figure format"),
    Attack("leaderboard-out-over-its-csv",
           lambda e: ["leaderboard", str(e.copy(e.s.metrics)), "--out",
                      str(e.ws / e.s.metrics.name), "--overwrite"], "never writes over"),
    Attack("leaderboard-same-out-and-csv",
           lambda e: ["leaderboard", str(e.s.metrics), "--out", str(e.ws / "x"), "--csv",
                      str(e.ws / "x")], "different files"),
    Attack("leaderboard-name-count",
           lambda e: ["leaderboard", str(e.s.metrics), str(e.s.metrics2), "--name", "a"],
           "--name"),
    Attack("leaderboard-duplicate-names",
           lambda e: ["leaderboard", str(e.s.metrics), str(e.s.metrics2), "--name", "a",
                      "--name", "a"], "must differ"),
    Attack("leaderboard-existing-out",
           lambda e: ["leaderboard", str(e.s.metrics), "--out", str(e.file("b.md"))],
           "pass --overwrite"),
    Attack("leaderboard-under-a-file",
           lambda e: ["leaderboard", str(e.s.metrics), "--out", str(e.file("f.txt") / "b.md")],
           "f.txt"),
    Attack("predict-missing-run", lambda e: ["predict", str(e.ws / "absent"), "--input",
                                             str(e.s.val), "--output", str(e.ws / "p")], "absent"),
    Attack("predict-not-a-run", lambda e: ["predict", str(e.file("r/x.txt").parent), "--input",
                                           str(e.s.val), "--output", str(e.ws / "p")], "r"),
    Attack("predict-tta-0", lambda e: ["predict", str(e.ws / "r"), "--input", str(e.s.val),
                                       "--output", str(e.ws / "p"), "--tta", "0"], "tta"),
    Attack("predict-shard-3-of-2", lambda e: ["predict", str(e.ws / "r"), "--input",
                                              str(e.s.val), "--output", str(e.ws / "p"),
                                              "--shard", "3/2"], "shard"),
    Attack("predict-shard-text", lambda e: ["predict", str(e.ws / "r"), "--input", str(e.s.val),
                                            "--output", str(e.ws / "p"), "--shard", "a/b"],
           "shard"),
    Attack("predict-device-foo", lambda e: ["predict", str(e.ws / "r"), "--input", str(e.s.val),
                                            "--output", str(e.ws / "p"), "--device", "foo"],
           "unknown device"),
    Attack("predict-into-user-folder",
           lambda e: ["predict", str(_fake_run(e, lambda p: None)), "--input", str(e.s.val),
                      "--output", str(e.file("mine/a.txt").parent)], "mine"),
    Attack("ensemble-missing-source", lambda e: ["ensemble", str(e.ws / "absent"), "--input",
                                                 str(e.s.val), "--output", str(e.ws / "o")],
           "absent"),
    Attack("ensemble-weight-count", lambda e: ["ensemble", str(e.s.preds), "--input",
                                               str(e.s.val), "--output", str(e.ws / "o"),
                                               "--weights", "1", "2"], "weight"),
    Attack("ensemble-text-weight", lambda e: ["ensemble", str(e.s.preds), "--input", str(e.s.val),
                                              "--output", str(e.ws / "o"), "--weights", "x"],
           "weights"),
    Attack("reproduce-unknown-entry", lambda e: ["reproduce", "nobody2017", "--data", str(e.s.data),
                                                 "--out", str(e.ws / "r")], "nobody2017"),
    Attack("reproduce-into-user-folder",
           lambda e: ["reproduce", "isensee2017", "--data", str(e.s.data), "--out",
                      str(e.file("mine/submission.zip").parent), "--profile", "quick"],
           "not made by brats reproduce"),
    Attack("reproduce-bad-override", lambda e: ["reproduce", "isensee2017", "--data", str(e.s.data),
                                                "--out", str(e.ws / "r"), "optim.lr=-1"],
           "optim.lr"),
    Attack("reproduce-unknown-profile", lambda e: ["reproduce", "isensee2017", "--data",
                                                   str(e.s.data), "--out", str(e.ws / "r"),
                                                   "--profile", "nope"], "no profile"),
    Attack("reproduce-zero-jobs", lambda e: ["reproduce", "isensee2017", "--data", str(e.s.data),
                                             "--out", str(e.ws / "r"), "--jobs", "0"], "positive"),
    Attack("demo-into-user-folder", lambda e: ["demo", "--out", str(e.file("mine/data/a.nii.gz")
                                                                    .parent.parent)],
           "not made by brats demo"),
    Attack("demo-user-data-folder", lambda e: _demo_with_user_data(e), "not made by brats demo"),
    Attack("compare-missing-run", lambda e: ["compare", str(e.ws / "absent"), "--data",
                                             str(e.s.data), "--out", str(e.ws / "c")], "absent"),
    Attack("compare-zero-boot", lambda e: ["compare", str(e.s.metrics), "--data", str(e.s.data),
                                           "--out", str(e.ws / "c"), "--boot", "0"], "positive"),
    Attack("export-missing-run", lambda e: ["export", str(e.ws / "absent"), "--out",
                                            str(e.ws / "m.zip")], "absent"),
    Attack("postprocess-tune-missing-folder",
           lambda e: ["postprocess", "tune", str(e.ws / "absent"), "--data", str(e.s.data)],
           "prediction folder not found"),
    Attack("postprocess-tune-negative-threshold",
           lambda e: ["postprocess", "tune", str(e.s.preds), "--data", str(e.s.data),
                      "--thresholds", "-5"], "expected integers"),
    Attack("postprocess-apply-corrupt-rule",
           lambda e: ["postprocess", "apply", str(e.s.preds), "--rule",
                      str(e.file("rule.json", "{not json")), "--output", str(e.ws / "o")],
           "cannot read the rule file"),
]


def _show_over_input(env: Env) -> list[str]:
    case = env.copy(env.s.case_dirs[0])
    target = case / "overlay.png"
    target.write_bytes(b"a figure the user keeps with the case")
    return ["show", str(case), "--out", str(target), "--overwrite"]


def _evaluate_over_input(env: Env) -> list[str]:
    preds = env.copy(env.s.preds)
    return ["evaluate", str(preds), str(env.s.data), "--out", str(next(preds.glob("*.nii.gz"))),
            "--overwrite"]


def _validate_over_input(env: Env) -> list[str]:
    images = env.copy(env.s.val)
    image = next(images.rglob("*_t1.nii.gz"))
    return ["validate", str(env.s.preds), "--images", str(images), "--zip", str(image),
            "--overwrite"]


def _demo_with_user_data(env: Env) -> list[str]:
    out = env.ws / "demo"
    out.mkdir()
    (out / ".brats-demo").write_text("working folder of brats demo\n")
    env.file("demo/data/Brats17TrainingData/my_scan.nii.gz", "the user's own data")
    return ["demo", "--out", str(out)]


# --- the file system ---------------------------------------------------------------------------

#: The reason a write into :func:`_read_only`'s folder fails.
READ_ONLY = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
#: Read-only mounts made by :func:`_read_only` (as root), unmounted by the test after each case.
MOUNTS: list[Path] = []


def _read_only(env: Env) -> Path:
    """A folder the command cannot write into: mode 0555, or, as root (whom modes do not stop),
    a read-only tmpfs mounted on it."""
    folder = env.ws / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs",
                                  str(folder)], capture_output=True)
        if mounted.returncode != 0:
            pytest.skip("runs as root and cannot mount a read-only tmpfs here")
        MOUNTS.append(folder)
    else:
        folder.chmod(0o555)
    return folder


FILESYSTEM_ATTACKS = [
    Attack("read-only-show", lambda e: ["show", str(e.s.case_dirs[0]), "--out",
                                        str(_read_only(e) / "f.png")], READ_ONLY,
           read_only=True),
    Attack("read-only-evaluate", lambda e: ["evaluate", str(e.s.preds), str(e.s.data), "--out",
                                            str(_read_only(e) / "m.csv")], READ_ONLY,
           read_only=True),
    Attack("read-only-prepare", lambda e: ["prepare", str(e.s.data), "--out",
                                           str(_read_only(e) / "c")], READ_ONLY,
           read_only=True),
    Attack("read-only-synth", lambda e: ["synth", str(_read_only(e) / "d"), "--cases", "1",
                                         "--shape", "16", "16", "16"], READ_ONLY,
           read_only=True),
    Attack("read-only-leaderboard", lambda e: ["leaderboard", str(e.s.metrics), "--csv",
                                               str(_read_only(e) / "b.csv")], READ_ONLY,
           read_only=True),
    Attack("read-only-train", lambda e: ["train", "isensee2017", "--data", str(e.s.cache),
                                         "--out", str(_read_only(e) / "run"), *TRAIN_FAST],
           READ_ONLY, read_only=True),
]

ATTACKS: list[Attack] = [*_corruption_attacks(), *_cache_attacks(), *_checkpoint_attacks(),
                         *ARGUMENT_ATTACKS, *FILESYSTEM_ATTACKS]
