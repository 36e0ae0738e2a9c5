"""One model for each option: the factory's signature and docstring, the component's YAML keys,
the bundled definitions' variables and the docs' tables are held against ``AssetOptions`` and the
resource's fields, so an option or a bound cannot change in one place only."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster.components.testing.utils import component_defs
from pydantic import ValidationError

import cloudglue_dagster.components.component as component_module
import cloudglue_dagster.definitions as definitions_module
from cloudglue_dagster import CloudglueComponent, CloudglueConfigError, CloudglueResource, build_cloudglue_assets
from cloudglue_dagster.assets.options import AssetOptions, option_doc
from cloudglue_dagster.bounds import Bounds, bounds_of, is_optional_field
from cloudglue_dagster.components.component import CloudglueAccount
from cloudglue_dagster.environment import VARIABLES

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = AssetOptions.model_fields
START = "2026-01-01"

# Component fields that are no factory option.
COMPONENT_ONLY = {"account", "io_manager", "translation", "in_process", "text_hash_key_env_var"}
# Options whose YAML key is spelt otherwise (YAML types), and those whose YAML default differs
# (the account's names all default to the joined prefix).
YAML_TYPES = {
    "start_date",
    "key_prefix",
    "group_name",
    "resource_key",
    "io_manager_key",
    "prices",
    "shrink_guard",
    "text_rewrite",
}
YAML_DEFAULTS = {"key_prefix": "cloudglue", "group_name": None, "resource_key": None, "io_manager_key": None}


def words(text: str) -> str:
    return " ".join(text.split())


def docstring_args(function: Any) -> dict[str, str]:
    """The ``Args:`` section of a Google-style docstring: name -> its text, whitespace folded."""
    section = inspect.getdoc(function).split("Args:\n", 1)[1]
    entries: dict[str, str] = {}
    for line in section.splitlines():
        start = re.match(r"^    (\w+): (.*)$", line)
        if start:
            entries[start[1]] = start[2]
        elif line.startswith("        ") and entries:
            last = next(reversed(entries))
            entries[last] += " " + line.strip()
        elif line.strip():
            break
    return {name: words(text) for name, text in entries.items()}


def test_the_factory_signature_is_the_option_model_in_order_with_its_defaults_and_types() -> None:
    parameters = inspect.signature(build_cloudglue_assets).parameters
    hints = typing.get_type_hints(build_cloudglue_assets)
    assert list(parameters) == list(OPTIONS), "add the option to AssetOptions and the signature, in the same place"
    for name, parameter in parameters.items():
        field = OPTIONS[name]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, name
        expected = inspect.Parameter.empty if field.is_required() else field.default
        assert parameter.default == expected, name
        assert hints[name] == field.annotation, name


def test_the_factory_docstring_gives_each_option_the_model_doc_with_its_bounds() -> None:
    rendered = "\n".join(f"        {name}: {option_doc(name)}" for name in OPTIONS)
    message = f"the factory's Args must read (wrap as you like):\n{rendered}"
    assert docstring_args(build_cloudglue_assets) == {name: words(option_doc(name)) for name in OPTIONS}, message


def test_every_option_is_a_yaml_key_of_the_component_or_is_said_not_to_be() -> None:
    fields = CloudglueComponent.model_fields
    not_in_yaml = component_module._NOT_IN_YAML
    assert set(fields) - set(OPTIONS) == COMPONENT_ONLY
    assert set(OPTIONS) - set(fields) == set(not_in_yaml), "a new option: a YAML key, or a reason in _NOT_IN_YAML"
    for name in set(OPTIONS) & set(fields):
        option, key = OPTIONS[name], fields[name]
        assert (key.description or "").startswith(re.sub(r"\bNone\b", "null", option_doc(name))), name
        if name not in YAML_TYPES:
            assert key.annotation == option.annotation, name
        if name in YAML_DEFAULTS:
            assert key.get_default(call_default_factory=True) == YAML_DEFAULTS[name], name
        elif name == "shrink_guard":
            assert vars(key.get_default(call_default_factory=True)) == vars(option.default)
        else:
            assert key.is_required() == option.is_required() and key.default == option.default, name


def test_the_component_gives_the_factory_every_option_it_has(monkeypatch: pytest.MonkeyPatch) -> None:
    received: dict[str, Any] = {}

    def recording(**arguments: Any) -> Any:
        received.update(arguments)
        return build_cloudglue_assets(**arguments)

    monkeypatch.setattr(component_module, "build_cloudglue_assets", recording)
    set_here = {"max_partitions_per_run": 5, "schedule_hour": 2, "freshness_deadline_hour": 9}
    set_here |= {"late_data_lookback_days": 3, "late_data_interval_seconds": 60, "collection_usage": True}
    component = CloudglueComponent(
        account=CloudglueAccount(api_key_env_var="CLOUDGLUE_API_KEY"), start_date=START, **set_here
    )
    component_defs(component=component)
    assert set(received) == (set(OPTIONS) & set(CloudglueComponent.model_fields)) | {"translator", "text_hash_key"}
    assert {name: received[name] for name in set_here} == set_here


def test_the_account_settings_are_the_resource_fields_with_their_bounds_and_defaults() -> None:
    for name, setting in CloudglueAccount.model_fields.items():
        if name == "api_key_env_var":
            continue
        field = CloudglueResource.model_fields[name]
        assert setting.annotation == field.annotation | None and setting.default is None, name
        assert (setting.description or "").startswith(str(field.description)), name
        bounds = bounds_of(field)
        if bounds is not None:
            assert bounds.text(byte_units=name.endswith("_bytes")) in str(setting.description), name


def test_the_bundled_definitions_set_options_and_fields_by_their_model_names() -> None:
    factory = definitions_module.FACTORY_OPTIONS_FROM_ENVIRONMENT
    resource = definitions_module.RESOURCE_FIELDS_FROM_ENVIRONMENT
    assert set(factory) <= set(OPTIONS) and set(resource) <= set(CloudglueResource.model_fields)
    meanings = {v.name: v.meaning for v in VARIABLES}
    for name, variable in [*factory.items(), *resource.items()]:
        field = OPTIONS.get(name) or CloudglueResource.model_fields[name]
        bounds = bounds_of(field)
        if bounds is not None:  # the variable's documented range is the field's
            assert f"({bounds.text()})" in meanings[variable], variable


# Every bounded option and resource field, read from the models: a new bound is tested here
# without listing it.
def outside(bounds: Bounds) -> Iterator[float]:
    """Values just outside ``bounds``."""
    if bounds.ge is not None:
        yield bounds.ge - 1
    if bounds.gt is not None:
        yield bounds.gt
    if bounds.le is not None:
        yield bounds.le + 1
    if bounds.lt is not None:
        yield bounds.lt


def inside(bounds: Bounds) -> Iterator[float]:
    """The bounds themselves, where they are allowed."""
    yield from (b for b in (bounds.ge, bounds.le) if b is not None)


BOUNDED_OPTIONS = [(name, bounds) for name, field in OPTIONS.items() if (bounds := bounds_of(field)) is not None]
BOUNDED_SETTINGS = [
    (name, bounds) for name, field in CloudglueResource.model_fields.items() if (bounds := bounds_of(field)) is not None
]


def causes(exc: BaseException | None) -> str:
    out = []
    while exc is not None:
        out.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(out)


@pytest.mark.parametrize(("name", "bounds"), BOUNDED_OPTIONS, ids=[n for n, _ in BOUNDED_OPTIONS])
def test_an_option_bound_is_enforced_by_the_factory_the_component_and_the_definitions(
    name: str, bounds: Bounds, monkeypatch: pytest.MonkeyPatch
) -> None:
    span = bounds.text(byte_units=name.endswith("_bytes"))
    extra = {"freshness_deadline_hour": None} if name == "schedule_hour" else {}
    for value in inside(bounds):
        build_cloudglue_assets(start_date=START, **{name: value, **extra})
    for value in outside(bounds):
        message = f"{name} must be {span}{' or None' if is_optional_field(OPTIONS[name]) else ''}, got {value}"
        with pytest.raises(CloudglueConfigError) as failure:
            build_cloudglue_assets(start_date=START, **{name: value, **extra})
        assert str(failure.value) == message
        if name in CloudglueComponent.model_fields:
            component = CloudglueComponent(
                account=CloudglueAccount(api_key_env_var="K"), start_date=START, **{name: value, **extra}
            )
            with pytest.raises(Exception) as failure:
                component_defs(component=component)
            assert message in causes(failure.value)
        variable = definitions_module.FACTORY_OPTIONS_FROM_ENVIRONMENT.get(name)
        if variable is not None:
            monkeypatch.setenv(variable, str(value))
            with pytest.raises(CloudglueConfigError, match=re.escape(message)):
                definitions_module.build_definitions()


@pytest.mark.parametrize(("name", "bounds"), BOUNDED_SETTINGS, ids=[n for n, _ in BOUNDED_SETTINGS])
def test_a_resource_bound_is_enforced_by_the_resource_its_variables_the_component_and_the_definitions(
    name: str, bounds: Bounds, monkeypatch: pytest.MonkeyPatch
) -> None:
    span = bounds.text(byte_units=name.endswith("_bytes"))
    for value in inside(bounds):
        CloudglueResource(api_key="k", **{name: value})
    integer = CloudglueResource.model_fields[name].annotation is int
    for value in outside(bounds):
        message = f"{name} must be {span}, got {value}"
        with pytest.raises(ValidationError, match=re.escape(message)):
            CloudglueResource(api_key="k", **{name: value})
        if integer:  # Dagster reads variables into integer fields only
            monkeypatch.setenv("CG_BOUND_TEST", str(value))
            with pytest.raises(ValidationError, match=re.escape(message)):
                CloudglueResource(api_key="k", **{name: dg.EnvVar.int("CG_BOUND_TEST")})
        if name in CloudglueAccount.model_fields:
            with pytest.raises(ValidationError, match=re.escape(message)):
                component_defs(
                    component=CloudglueComponent(
                        account=CloudglueAccount(api_key_env_var="K", **{name: value}), start_date=START
                    )
                )
        variable = definitions_module.RESOURCE_FIELDS_FROM_ENVIRONMENT.get(name)
        if variable is not None:
            monkeypatch.setenv(variable, str(value))
            with pytest.raises(CloudglueConfigError, match=re.escape(message)):
                definitions_module.build_definitions()
            monkeypatch.delenv(variable)


def _configuration_row(field: str) -> str:
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text.split("### `CloudglueResource` fields", 1)[1].split("\n### ", 1)[0]
    [row] = [line for line in section.splitlines() if line.startswith(f"| `{field}` |")]
    return re.sub(r"2\^(\d+)", lambda m: str(2 ** int(m[1])), row)  # 2^40 as written in the docs


@pytest.mark.parametrize(("name", "bounds"), BOUNDED_SETTINGS, ids=[n for n, _ in BOUNDED_SETTINGS])
def test_the_resource_table_of_the_docs_gives_each_field_its_bounds(name: str, bounds: Bounds) -> None:
    assert bounds.text() in _configuration_row(name)


def test_the_docs_name_every_option_and_every_yaml_key() -> None:
    configuration = (ROOT / "docs" / "configuration.md").read_text()
    arguments = configuration.split("`build_cloudglue_assets` arguments:", 1)[1].split("\n\n", 1)[0]
    assert [name for name in OPTIONS if f"`{name}`" not in arguments] == []
    operations = (ROOT / "docs" / "operations.md").read_text()
    table = [line for line in operations.splitlines() if line.startswith("| `")]
    keys = {key for line in table for key in re.findall(r"`([\w.]+)`", line.split(" | ")[0])}
    yaml_keys = set(CloudglueComponent.model_fields) - {"account"}
    yaml_keys |= {f"account.{name}" for name in CloudglueAccount.model_fields}
    assert sorted(yaml_keys - keys) == []
