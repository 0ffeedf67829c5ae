"""The one registry of hardware targets (trt_nm.exporters.targets): names, aliases, energy.

Parametrised over :func:`list_targets` (timm style): every target, every command.
"""

from __future__ import annotations

import dataclasses

import pytest

from trt_nm.cli.main import main
from trt_nm.errors import ConfigError
from trt_nm.exporters import get_exporter, list_exporters
from trt_nm.exporters.profile import TargetProfile
from trt_nm.exporters.targets import (
    EnergyOnlyTarget,
    get_target,
    list_aliases,
    list_targets,
    register_alias,
    register_target,
    resolve_targets,
)
from trt_nm.metrics.energy import get_energy_profile, list_energy_profiles
from trt_nm.training.checkpoint import save_checkpoint

#: every name that worked before the registry (export, and simulate/report --target)
OLD_EXPORT_NAMES = ("generic45nm", "loihi2", "speck", "spinnaker2", "xylo")
OLD_ENERGY_NAMES = ("cmos45nm", "loihi", "loihi2", "spinnaker", "spinnaker2", "truenorth", "xylo")
ENERGY_ONLY = ("loihi", "spinnaker", "truenorth")
ALL_NAMES = sorted(set(list_targets()) | set(list_aliases()))


def test_target_list_and_aliases():
    assert list_targets() == ["generic45nm", "loihi", "loihi2", "speck", "spinnaker", "spinnaker2",
                              "truenorth", "xylo"]
    assert list_aliases() == {"cmos45nm": "generic45nm"}
    assert set(list_exporters()) <= set(list_targets())
    for name in OLD_EXPORT_NAMES + OLD_ENERGY_NAMES:
        assert get_target(name).name in list_targets()
    assert get_target("cmos45nm") == get_target("generic45nm")
    assert [t.name for t in resolve_targets(["cmos45nm", "generic45nm", "loihi"])] == ["generic45nm", "loihi"]
    assert [t.name for t in resolve_targets(None)] == list_targets()


def test_unknown_target_lists_valid_names():
    with pytest.raises(ConfigError) as exc:
        get_target("gpu")
    msg = str(exc.value)
    assert "unknown target 'gpu'" in msg and "valid targets:" in msg
    for name in ALL_NAMES:
        assert name in msg
    assert "\n" not in msg


@pytest.mark.parametrize("name", list_targets())
def test_each_target_has_constraint_and_energy_halves(name):
    t = get_target(name)
    assert t.name == name and t.chip
    if name in ENERGY_ONLY:
        assert t.energy_only and t.profile is None and t.qat_bits is None
        with pytest.raises(EnergyOnlyTarget, match="energy-only"):
            t.get_exporter()
        assert t.check(object()) is None
    else:
        assert t.get_exporter() is get_exporter(name)
        # the energy profile is named once, in the TargetProfile
        assert t.energy == t.profile.energy_profile
        assert t.qat_bits == t.profile.weight_bits
    prof = t.energy_profile
    if prof is None:
        assert t.energy_status == "not published" and t.energy_note
    else:
        assert prof.source and 1990 < prof.year < 2100
        assert t.energy_status == ("provisional" if prof.provisional else "published")
        if t.profile is not None:  # one number: the TargetProfile's is the energy profile's
            assert t.profile.energy_per_synop_pj == prof.synop_pj


def test_energy_numbers_written_once():
    assert get_exporter("loihi2").profile.energy_per_synop_pj == pytest.approx(23.6)
    assert get_exporter("generic45nm").profile.energy_per_synop_pj == pytest.approx(0.9)
    assert get_exporter("speck").profile.energy_per_synop_pj is None
    assert get_exporter("xylo").profile.energy_per_synop_pj is None  # per inference only
    loihi2 = get_exporter("loihi2").profile
    with pytest.raises(ConfigError, match="disagrees with energy profile"):
        dataclasses.replace(loihi2, energy_per_synop_pj=30.0)
    with pytest.raises(ConfigError, match="disagrees"):
        TargetProfile(name="x", chip="x", toolchain="x", neuron_models=("LIF",), energy_per_synop_pj=1.0)
    with pytest.raises(ConfigError, match="valid energy profiles"):
        TargetProfile(name="x", chip="x", toolchain="x", neuron_models=("LIF",), energy_profile="tpu")


def test_every_energy_profile_is_reachable_as_a_target():
    for name in list_energy_profiles():
        assert get_target(name).energy == name


def test_provisional_and_unpublished_energy():
    assert get_target("speck").energy_status == "not published"
    for name in ("loihi2", "spinnaker2", "xylo"):
        assert get_target(name).energy_status == "provisional"
    for name in ("generic45nm", "loihi", "spinnaker", "truenorth"):
        assert get_target(name).energy_status == "published"
    assert "PROVISIONAL" in get_energy_profile("loihi2").summary()


def test_cli_targets_lists_every_target_one_line_each(capsys):
    assert main(["targets"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(list_targets()) + 1  # + the aliases line
    for name, line in zip(list_targets(), lines):
        assert line.split()[0] == name
        for field in ("export:", "energy", "QAT:", "aliases:"):
            assert field in line
    by_name = dict(zip(list_targets(), lines))
    assert "energy: not published" in by_name["speck"]
    assert "energy-only" in by_name["truenorth"] and "26 pJ" in by_name["truenorth"]
    assert "PROVISIONAL" in by_name["loihi2"] and "8-bit" in by_name["loihi2"]
    assert "Horowitz" in by_name["generic45nm"] and "cmos45nm" in by_name["generic45nm"]
    assert "cmos45nm -> generic45nm" in lines[-1]
    assert main(["targets", "cmos45nm"]) == 0
    assert "generic45nm" in capsys.readouterr().out


def _one_line_error(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("command", ["export", "simulate", "report"])
def test_three_commands_accept_the_same_names(tmp_path, capsys, command, name):
    """The target name is resolved before the model is read: a known target fails on the
    missing model file, an unknown one on its name; export refuses energy-only targets."""
    missing = str(tmp_path / "missing.pt")
    extra = {"export": ["--check"], "simulate": [], "report": ["--out", str(tmp_path / "r")]}[command]
    err = _one_line_error(capsys, [command, missing, "--target", name, *extra])
    assert "unknown target" not in err
    if command == "export" and get_target(name).energy_only:
        assert "energy-only" in err and name in err
    else:
        assert "missing.pt" in err
    err = _one_line_error(capsys, [command, missing, "--target", "gpu", *extra])
    assert "unknown target 'gpu'" in err


def test_export_through_an_alias(tmp_path, capsys):
    from test_nir_helpers import make_model

    model = make_model("mlp")
    ck = tmp_path / "ck.pt"
    save_checkpoint(ck, {"epoch": 1, "model": model.state_dict(), "model_spec": model.spec, "config": {}})
    out = tmp_path / "m.nir"
    assert main(["export", str(ck), "--target", "cmos45nm", "--out", str(out)]) == 0
    assert out.exists() and "target generic45nm: fits" in capsys.readouterr().out


def test_profile_kinds_come_from_the_node_table():
    from trt_nm.exporters.profile import LAYER_KINDS, NEURON_KINDS
    from trt_nm.nir.nodes import NODE_KINDS

    assert set(NEURON_KINDS) == {k.name for k in NODE_KINDS.values() if k.neuron}
    assert set(LAYER_KINDS) == {k.layer for k in NODE_KINDS.values() if k.weighted or k.relay}
    for name in list_exporters():
        p = get_exporter(name).profile
        assert set(p.neuron_models) <= set(NEURON_KINDS) and set(p.layer_types) <= set(LAYER_KINDS)
    with pytest.raises(ConfigError, match="not in the node table"):
        TargetProfile(name="x", chip="x", toolchain="x", neuron_models=("Izhikevich",))


def test_register_target_refuses_a_second_source_of_truth():
    with pytest.raises(ConfigError, match="named once"):
        register_target("loihi2", energy="loihi")
    with pytest.raises(ConfigError, match="needs chip and energy"):
        register_target("mychip")
    with pytest.raises(ConfigError, match="valid energy profiles"):
        register_target("mychip", chip="My chip", energy="tpu")
    with pytest.raises(ConfigError, match="already a target name"):
        register_alias("loihi", "truenorth")
    assert "mychip" not in list_targets()
