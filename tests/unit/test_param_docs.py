"""Every parameter of the public operators, sensor, trigger and hooks is documented with
`:param name:` in its class docstring, which Airflow's docs tooling renders."""

import inspect

import pytest

from airflow_provider_pdr.hooks import FirebirdHook, PdrHook
from airflow_provider_pdr.operators import (
    InstallTriggersOperator, ReconcileOperator, ReflectOperator, UninstallTriggersOperator,
)
from airflow_provider_pdr.sensors import PendingChangesSensor
from airflow_provider_pdr.triggers import PendingChangesTrigger

PUBLIC = [InstallTriggersOperator, UninstallTriggersOperator, ReflectOperator, ReconcileOperator,
          PendingChangesSensor, PendingChangesTrigger, PdrHook, FirebirdHook]


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: cls.__name__)
def test_every_parameter_is_documented(cls):
    if "__init__" in vars(cls):
        own = [name for name, parameter in inspect.signature(cls.__init__).parameters.items()
               if name != "self" and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)]
    else:  # Airflow's DbApiHook.__init__: the connection id by the hook's own name is ours to document
        own = [cls.conn_name_attr]
    undocumented = [name for name in own if f":param {name}:" not in (cls.__doc__ or "")]
    assert undocumented == []
