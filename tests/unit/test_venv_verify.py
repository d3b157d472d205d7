"""Post-provisioning verification: the installed versions are the ones asked for."""
import pytest

from harness.backends import ProvisionError
from harness.backends.venv import requirements_for, verify
from harness.config import Env


def test_pins_satisfied():
    verify(["tensorflow-cpu==2.15.1", "tf-keras~=2.21.0", "setuptools<82"],
           {"tensorflow_cpu": "2.15.1", "tf-keras": "2.21.3", "setuptools": "81.0.0"})


def test_wrong_version_and_missing_reported():
    with pytest.raises(ProvisionError) as info:
        verify(["tensorflow-hub==0.16.1", "setuptools<82"], {"setuptools": "82.0.1"})
    assert "tensorflow-hub==0.16.1 asked, not installed" in str(info.value)
    assert "setuptools<82 asked, 82.0.1 installed" in str(info.value)


def test_second_tensorflow_pulled_in_is_caught():
    # the resolver trap: tensorflow-hub 0.16 + unpinned tf-keras drags in TF 2.21
    with pytest.raises(ProvisionError, match="several TensorFlow distributions installed"):
        verify(["tensorflow-cpu==2.15.1"], {"tensorflow-cpu": "2.15.1", "tensorflow": "2.21.0"})


def test_runtime_packages_added_only_when_missing():
    env = Env("e", "3.7", ("tensorflow==1.15.5", "pytest==7.4.4"), ("tf1",))
    assert requirements_for(env) == ["tensorflow==1.15.5", "pytest==7.4.4", "pytest-xdist"]
