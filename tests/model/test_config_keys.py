"""Config keys that would change nothing are refused rather than silently accepted (#14.11)."""

from __future__ import annotations

import pytest

from eqv2.model import EquiformerV2Config
from eqv2.model.heads import resolve_heads
from tests.tiny import tiny


def test_s2_activation_attention_is_refused():
    with pytest.raises(ValueError, match="use_s2_act_attn=True.*set it to false"):
        EquiformerV2Config.from_dict(tiny(use_s2_act_attn=True))


@pytest.mark.parametrize("value", [0, -5, 12.5, "128", True])
def test_num_sphere_samples_must_be_a_positive_integer(value):
    with pytest.raises(ValueError, match="num_sphere_samples"):
        EquiformerV2Config.from_dict(tiny(num_sphere_samples=value))


@pytest.mark.parametrize("key", ["attn_activation", "ffn_activation"])
def test_unimplemented_activations_are_refused(key):
    with pytest.raises(ValueError, match=f"{key}='gelu'.*SiLU"):
        EquiformerV2Config.from_dict(tiny(**{key: "gelu"}))
    for value in ("silu", "scaled_silu"):  # both are what the reference computes
        EquiformerV2Config.from_dict(tiny(**{key: value}))


def test_dens_only_options_need_the_dens_backbone():
    with pytest.raises(ValueError, match="backbone='dens'"):
        EquiformerV2Config.from_dict(tiny(use_noise_schedule_sigma_encoding=True))
    with pytest.raises(ValueError, match="backbone='transformer'"):
        EquiformerV2Config.from_dict(tiny(backbone="transformer"))


def test_head_configs_are_checked():
    def heads(**specs):
        return resolve_heads(EquiformerV2Config.from_dict(tiny(heads=specs)))

    resolved = heads(
        energy={"module": "equiformer_v2_energy_head"},
        stress={"module": "rank2_symmetric_head", "decompose": True},
    )
    assert list(resolved) == ["energy", "stress"]
    assert resolved["stress"].attribute == "stress_head"
    with pytest.raises(ValueError, match="no energy head"):
        heads(forces={"module": "equiformer_v2_force_head"})
    with pytest.raises(ValueError, match="both energy heads"):
        heads(a={"module": "equiformer_v2_energy_head"}, b={"module": "DeNSScalarHead"})
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['decompse'\]"):
        heads(
            energy={"module": "equiformer_v2_energy_head"},
            stress={"module": "rank2_symmetric_head", "decompse": True},
        )
    with pytest.raises(ValueError, match="'magmom'.*supported heads"):
        heads(energy={"module": "equiformer_v2_energy_head"}, magmom={"module": "magmom_head"})
    with pytest.raises(ValueError, match="direct_forces=False"):
        resolve_heads(
            EquiformerV2Config.from_dict(
                tiny(
                    direct_forces=False,
                    heads={
                        "e": {"module": "equiformer_v2_energy_head"},
                        "f": {"module": "equiformer_v2_force_head"},
                    },
                )
            )
        )
