"""check_training: what counts as "it trained", without dropout's noise deciding."""
import numpy as np
import pytest

from harness.runtime.fixtures import CheckFailed, check_training

BEFORE = {"w": np.zeros(3), "b": np.zeros(1)}
AFTER = {"w": np.ones(3), "b": np.zeros(1)}
BOTH = {"w": np.ones(3), "b": np.ones(1)}


def test_noisy_last_step_does_not_decide_when_the_settled_loss_fell():
    noisy = [1.0, 0.9, 0.8, 0.7, 1.2]  # dropout: the last step is worse than the first
    got = check_training(BEFORE, BOTH, noisy, "fit",
                         settled=(1.0, 0.6, "Model.evaluate before and after training"))
    assert (got["loss_first"], got["loss_last"]) == (1.0, 0.6)
    assert got["loss_measured"] == "Model.evaluate before and after training"
    with pytest.raises(CheckFailed, match=r"loss did not decrease \(Model.evaluate"):
        check_training(BEFORE, BOTH, [1.0, 0.5], "fit", settled=(0.6, 0.6, "Model.evaluate"))


def test_without_settled_the_first_and_last_fifth_are_compared():
    losses = [1.0, 1.1, 0.9, 0.95, 0.8, 0.85, 0.7, 0.75, 0.5, 1.05]
    got = check_training(BEFORE, BOTH, losses, "tape")
    assert got["loss_first"] == pytest.approx(1.05) and got["loss_last"] == pytest.approx(0.775)
    with pytest.raises(CheckFailed, match="first and last 2 steps"):
        check_training(BEFORE, BOTH, losses[::-1], "tape")


def test_every_variable_must_change_unless_told_at_least_one():
    with pytest.raises(CheckFailed, match="did not change: b"):
        check_training(BEFORE, AFTER, [1.0, 0.5], "module")
    got = check_training(BEFORE, AFTER, [1.0, 0.5], "user model", every=False)
    assert got["variables_changed"] == ["w"]
    with pytest.raises(CheckFailed, match="did not change: b, w"):
        check_training(BEFORE, BEFORE, [1.0, 0.5], "user model", every=False)
    with pytest.raises(CheckFailed, match="no trainable variables"):
        check_training({}, {}, [1.0, 0.5], "user model", every=False)
