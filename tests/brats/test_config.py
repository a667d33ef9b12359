"""Config loading: strict keys, types, profiles, overrides, members; every shipped config loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from brats.config import EntryConfig, dump_config, from_dict, load_config, parse_overrides
from brats.errors import BratsInputError

SUBMISSIONS = Path(__file__).resolve().parents[2] / "submissions"


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "entry.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_key_suggests_the_closest() -> None:
    with pytest.raises(BratsInputError, match=r"unknown config key 'train.epoch'; did you mean "
                                              r"'epochs'\?"):
        from_dict(EntryConfig, {"entry": "x", "train": {"epoch": 3}})
    with pytest.raises(BratsInputError, match="unknown config key 'trian'"):
        from_dict(EntryConfig, {"entry": "x", "trian": {}})


@pytest.mark.parametrize("section, value, message", [
    ({"train": {"epochs": "ten"}}, None, "train.epochs: expected int"),
    ({"train": {"amp": 1}}, None, "train.amp: expected bool"),
    ({"data": {"patch_size": [64, 64]}}, None, "data.patch_size: expected 3 values"),
    ({"optim": {"lr": "fast"}}, None, "optim.lr: expected float"),
])
def test_wrong_types(section: dict, value, message: str) -> None:
    with pytest.raises(BratsInputError, match=message):
        from_dict(EntryConfig, {"entry": "x", **section})


def test_profile_then_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, {"entry": "x", "train": {"epochs": 300, "folds": 5},
                            "profiles": {"quick": {"train": {"epochs": 3}}}})
    assert load_config(path).train.epochs == 300
    assert load_config(path, "paper").train.epochs == 300
    quick = load_config(path, "quick", parse_overrides(["train.folds=2",
                                                       "data.patch_size=[32, 32, 32]"]))
    assert (quick.train.epochs, quick.train.folds, quick.data.patch_size) == (3, 2, (32, 32, 32))
    with pytest.raises(BratsInputError, match="no profile 'fast'; profiles: paper .*quick"):
        load_config(path, "fast")
    with pytest.raises(BratsInputError, match="expected key=value"):
        parse_overrides(["train.epochs"])


def test_members_apply_their_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, {"entry": "x", "optim": {"lr": 0.1}, "members": [
        {"name": "a"}, {"name": "b", "overrides": {"optim.lr": 0.5, "network": {"name": "n"}}}]})
    config = load_config(path)
    assert config.member_names == ["a", "b"]
    assert config.member("a").optim.lr == 0.1
    b = config.member("b")
    assert (b.optim.lr, b.network.name, b.member_names) == (0.5, "n", ["b"])
    with pytest.raises(BratsInputError, match="no member 'c'; members: a, b"):
        config.member("c")
    bad = write(tmp_path, {"entry": "x", "members": [{"name": "a", "overrides": {"optim.lrr": 1}}]})
    with pytest.raises(BratsInputError, match="optim.lrr"):
        load_config(bad)


def test_user_overrides_win_over_member_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, {"entry": "x", "train": {"epochs": 9}, "members": [
        {"name": "a", "overrides": {"train": {"epochs": 20, "folds": 3}}}, {"name": "b"}]})
    config = load_config(path, overrides=parse_overrides(["train.epochs=1"]))
    assert [config.member(m).train.epochs for m in ("a", "b")] == [1, 1]
    assert config.member("a").train.folds == 3 and config.train.epochs == 1


def test_dump_round_trips(tmp_path: Path) -> None:
    config = load_config(SUBMISSIONS / "isensee2017.yaml", "quick")
    again = from_dict(EntryConfig, yaml.safe_load(dump_config(config)))
    assert again == config


@pytest.mark.parametrize("path", sorted(SUBMISSIONS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_load_and_build(path: Path) -> None:
    from brats.config import import_package
    from brats.losses import LOSS_TARGETS
    from brats.nets import build_network

    raw = yaml.safe_load(path.read_text())
    for profile in ["paper", *raw.get("profiles", {})]:
        config = load_config(path, profile)
        import_package(config.package)
        for name in config.member_names:
            member = config.member(name)
            outputs = (2 if member.data.target != "classes"
                       else 4 if LOSS_TARGETS[member.loss.name] == "labels" else 3)
            network = build_network(member.network.name, in_channels=4, num_classes=outputs,
                                    **member.network.kwargs)
            assert sum(p.numel() for p in network.parameters()) > 0


def test_isensee_paper_settings() -> None:
    config = load_config(SUBMISSIONS / "isensee2017.yaml")
    assert config.data.patch_size == (128, 128, 128) and config.data.batch_size == 2
    assert (config.train.epochs, config.train.iterations_per_epoch, config.train.folds) == (
        300, 100, 5)
    assert (config.optim.name, config.optim.lr, config.optim.gamma, config.optim.l2) == (
        "adam", 5e-4, 0.985, 1e-5)
    assert config.inference.num_mirrors == 8 and config.inference.test_time_dropout
    assert config.network.kwargs == {"base_filters": 16, "dropout": 0.3}
