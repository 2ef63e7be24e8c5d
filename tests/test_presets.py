"""Presets: the full preset's smoke mode applies the notebook's caps, and only names settings it has."""
import pytest

from cnflib.collection.presets import resolve

TUTORIAL = dict(steps=100, image={}, per_dataset={})
FULL = dict(steps=10_000, image=dict(steps=30_000, n_test=10_000, scales=3),
            per_dataset={"miniboone": dict(n_test=3648, hidden=(860, 860))})
CAPS = dict(steps=2, image=dict(steps=2, n_test=4), per_dataset={"miniboone": dict(n_test=50)})


def test_smoke_mode_caps_the_full_preset_key_by_key():
    cfg = resolve("full", tutorial=TUTORIAL, full=FULL, smoke_caps=CAPS, smoke=True)
    assert cfg.smoke and cfg.preset == "full" and cfg.steps == 2
    assert cfg.image == dict(steps=2, n_test=4, scales=3)  # the uncapped keys are the full preset's
    assert cfg.per_dataset == {"miniboone": dict(n_test=50, hidden=(860, 860))}
    assert FULL["image"]["steps"] == 30_000, "the preset itself is left alone"


def test_without_smoke_the_caps_change_nothing_and_overrides_still_win():
    assert resolve("full", tutorial=TUTORIAL, full=FULL, smoke_caps=CAPS).steps == 10_000
    assert not resolve("tutorial", tutorial=TUTORIAL, full=FULL, smoke_caps=CAPS).smoke
    assert resolve("full", tutorial=TUTORIAL, full=FULL, smoke_caps=CAPS, smoke=True, steps=7).steps == 7


@pytest.mark.parametrize("caps, match", [
    (dict(stepz=2), r"smoke_caps names unknown settings \['stepz'\]; valid: image, per_dataset, steps"),
    (dict(image=dict(n_tset=4)), r"smoke_caps\['image'\] names unknown settings \['n_tset'\]"),
    (dict(per_dataset={"minibone": {}}), r"smoke_caps\['per_dataset'\] names unknown settings \['minibone'\]"),
])
def test_caps_name_only_settings_the_presets_have_even_when_smoke_is_off(caps, match):
    with pytest.raises(ValueError, match=match):
        resolve("full", tutorial=TUTORIAL, full=FULL, smoke_caps=caps)


def test_smoke_mode_needs_the_full_preset_and_caps():
    with pytest.raises(ValueError, match="smoke mode caps the full preset"):
        resolve("tutorial", tutorial=TUTORIAL, full=FULL, smoke_caps=CAPS, smoke=True)
    with pytest.raises(ValueError, match="needs the notebook's smoke_caps"):
        resolve("full", tutorial=TUTORIAL, full=FULL, smoke=True)
