"""Model packages: export runs, predict with the package alone, refuse corrupt, mismatched or
malicious packages (pickled objects, paths outside the archive, foreign imports)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from brats.cli import main
from brats.data.layouts import discover
from brats.data.nifti import read_nifti
from brats.errors import BratsInputError
from brats.inference.combine import load_probabilities
from brats.manifest import read_manifest
from brats.package import MANIFEST_NAME, export_package, open_package
from brats.submission import submission_name
from tests.brats.test_uncertainty import make_run


class Payload:
    """An object whose unpickling would create ``marker``: what a malicious package carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def rewrite(package: Path, out: Path, replace: dict[str, bytes],
            extra: dict[str, bytes] | None = None, fix_checksums: bool = True) -> Path:
    """A copy of ``package`` with some files replaced (checksums updated) or added."""
    with zipfile.ZipFile(package) as source:
        files = {name: source.read(name) for name in source.namelist()}
    files.update(replace)
    manifest = json.loads(files[MANIFEST_NAME])
    if fix_checksums:
        for record in manifest["members"]:
            for path in record["sha256"]:
                record["sha256"][path] = hashlib.sha256(files[path]).hexdigest()
    files[MANIFEST_NAME] = json.dumps(manifest).encode()
    with zipfile.ZipFile(out, "w") as target:
        for name, data in {**files, **(extra or {})}.items():
            target.writestr(name, data)
    return out


@pytest.fixture()
def package(tmp_path: Path) -> tuple[Path, list[Path]]:
    runs = [make_run(tmp_path / "runs" / f"fold{i}", seed=i) for i in range(2)]
    out = tmp_path / "model.zip"
    assert main(["export", str(tmp_path / "runs"), "--out", str(out), "--no-progress"]) == 0
    return out, runs


def test_export_records_entry_rule_folds_and_checksums(package) -> None:
    path, _ = package
    loaded = open_package(path)
    manifest = loaded.manifest
    assert manifest["entry"] == "isensee2017" and manifest["combine"] == "mean"
    assert manifest["folds"] == [0, 1] and manifest["versions"]["torch"] == torch.__version__
    assert [m["name"] for m in manifest["members"]] == ["model/fold0", "model/fold1"]
    with zipfile.ZipFile(path) as archive:
        weights = torch.load(io.BytesIO(archive.read("members/00/weights.pt")), weights_only=True)
        config = yaml.safe_load(archive.read("members/00/config.yaml"))
    assert all(isinstance(v, torch.Tensor) for v in weights.values())
    assert config["network"]["kwargs"]["base_filters"] == 4
    with pytest.raises(BratsInputError, match="exists"):
        export_package([path.parent / "runs"], path)


def test_package_predicts_like_the_runs(package, tiny_2017: Path, tmp_path: Path) -> None:
    path, runs = package
    common = ["--input", str(tiny_2017), "--no-progress", "--save-probabilities",
              "inference.num_mirrors=2"]
    assert main(["predict", *map(str, runs), "--output", str(tmp_path / "a"), *common]) == 0
    assert main(["predict", "--model", str(path), "--output", str(tmp_path / "b"), *common]) == 0
    for case in discover(tiny_2017):
        a, _, _ = read_nifti(tmp_path / "a" / submission_name(case.id))
        b, _, _ = read_nifti(tmp_path / "b" / submission_name(case.id))
        assert np.array_equal(a, b)
        pa, _ = load_probabilities(tmp_path / "a_probabilities" / f"{case.id}_probabilities.npz")
        pb, _ = load_probabilities(tmp_path / "b_probabilities" / f"{case.id}_probabilities.npz")
        assert np.array_equal(pa, pb)
    settings = read_manifest(tmp_path / "b")["settings"]
    assert settings["checkpoint"] == "package"
    assert settings["members"]["model/fold1"]["inference"]["num_mirrors"] == 2
    assert main(["ensemble", "--model", str(path), "--input", str(tiny_2017), "--output",
                 str(tmp_path / "e"), "--no-progress"]) == 0
    assert len(list((tmp_path / "e").glob("*.nii.gz"))) == 2


def test_pickled_object_is_refused_and_never_run(package, tmp_path: Path) -> None:
    path, _ = package
    marker = tmp_path / "code_ran"
    evil = io.BytesIO()
    torch.save({"conv.weight": Payload(marker)}, evil)
    bad = rewrite(path, tmp_path / "evil.zip", {"members/00/weights.pt": evil.getvalue()})
    loaded = open_package(bad)   # the checksums match: only loading can tell
    with pytest.raises(BratsInputError, match="not a plain state dict of tensors; refused"):
        loaded.members(torch.device("cpu"))
    assert not marker.exists()


def test_paths_outside_the_package_are_refused(package, tmp_path: Path) -> None:
    path, _ = package
    for name in ("../escape.txt", "/etc/escape", "members/../../escape"):
        bad = rewrite(path, tmp_path / "bad.zip", {}, extra={name: b"x"})
        with pytest.raises(BratsInputError, match="not a plain path inside the package"):
            open_package(bad)
    assert not (tmp_path / "escape.txt").exists()


def test_corrupt_and_mismatched_packages_are_clear_errors(
        package, tiny_2017: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path, _ = package
    with zipfile.ZipFile(path) as archive:
        config = archive.read("members/01/config.yaml")
        weights = archive.read("members/01/weights.pt")
    altered = rewrite(path, tmp_path / "altered.zip",
                      {"members/01/weights.pt": weights[:-9] + b"0" * 9}, fix_checksums=False)
    with pytest.raises(BratsInputError, match="does not match its checksum"):
        open_package(altered)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BratsInputError, match="not a readable model package"):
        open_package(truncated)
    foreign = yaml.safe_load(config)
    foreign["package"] = "os"
    imports = rewrite(path, tmp_path / "imports.zip",
                      {"members/01/config.yaml": yaml.safe_dump(foreign).encode()})
    with pytest.raises(BratsInputError, match="may only use cascade, ensemble"):
        open_package(imports).members(torch.device("cpu"))
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read(MANIFEST_NAME))
    manifest["members"][1]["network_kwargs"]["base_filters"] = 8
    wider = rewrite(path, tmp_path / "wider.zip", {MANIFEST_NAME: json.dumps(manifest).encode()})
    with pytest.raises(BratsInputError, match="do not fit network"):
        open_package(wider).members(torch.device("cpu"))
    capsys.readouterr()
    assert main(["predict", "--model", str(altered), "--input", str(tiny_2017), "--output",
                 str(tmp_path / "p"), "--no-progress"]) == 2
    assert "checksum" in capsys.readouterr().err


def test_torchscript_export_computes_what_the_network_does(package, tmp_path: Path) -> None:
    from brats.nets import build_network
    from brats.training.checkpoint import load_checkpoint

    _, runs = package
    out = tmp_path / "net.pt"
    assert main(["export", str(runs[1]), "--out", str(out), "--torchscript", "--no-progress"]) == 0
    state = load_checkpoint(runs[1] / "checkpoint_last.pt")
    network = build_network(state["network"], in_channels=4, num_classes=4,
                            **state["network_kwargs"])
    network.load_state_dict(state["model"])
    network.eval()
    x = torch.randn(1, 4, 16, 32, 48, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = network(x)
        got = torch.jit.load(str(out))(x)
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5)
    assert expected.abs().max() > 0
