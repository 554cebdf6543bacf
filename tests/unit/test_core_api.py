"""The core's public names, without a database."""

import pytest

import airflow_provider_pdr.core as core


@pytest.mark.parametrize("old, new", sorted(core.RENAMED.items()))
def test_a_renamed_name_still_works_with_a_warning(old, new):
    with pytest.warns(DeprecationWarning, match=f"{old} is renamed {new}"):
        assert getattr(core, old) is getattr(core, new)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        core.Nothing  # noqa: B018
