"""CloudglueResource: validation at load time, secrets, and the client it hands out."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
from pydantic import ValidationError

from cloudglue_dagster import CloudglueClient, CloudglueResource
from cloudglue_dagster.emulator import Dataset, Emulator

KEY = "sk-resource-test-SECRET"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("page_size", 0),
        ("page_size", 101),
        ("timeout_seconds", -1),
        ("timeout_seconds", 0),
        ("connect_timeout_seconds", -5),
        ("max_retries", -1),
        ("max_concurrent_requests", 0),
        ("max_response_bytes", 0),
        ("max_response_bytes", 1023),
        ("max_response_bytes", 2**41),
        ("max_response_bytes", 1.5),
        ("max_window_records", 0),
        ("max_window_records", 2.5),
        ("base_url", "not a url"),
        ("base_url", "http://api.cloudglue.dev/v1"),
    ],
)
def test_invalid_values_fail_at_construction_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        CloudglueResource(api_key=KEY, **{field: value})
    assert field in str(info.value)
    assert KEY not in str(info.value)


def test_every_field_has_a_description() -> None:
    for name, field in CloudglueResource.model_fields.items():
        assert field.description, name


def test_repr_and_str_hide_the_key() -> None:
    resource = CloudglueResource(api_key=KEY)
    assert KEY not in repr(resource) and KEY not in str(resource)
    assert KEY not in repr(resource.get_client())


def test_env_var_key_and_a_working_client(monkeypatch: pytest.MonkeyPatch) -> None:
    day = dt.date(2026, 2, 1)
    monkeypatch.setenv("CLOUDGLUE_API_KEY", KEY)
    with Emulator(Dataset(day, day, counts={day: 7}), api_key=KEY) as emu:

        @dg.asset
        def probe(cloudglue: CloudglueResource) -> int:
            client = cloudglue.get_client()
            assert isinstance(client, CloudglueClient)
            return client.list_chat_completions(created_after=day, created_before=day).total

        result = dg.materialize(
            [probe],
            resources={
                "cloudglue": CloudglueResource(
                    api_key=dg.EnvVar("CLOUDGLUE_API_KEY"),
                    base_url=emu.base_url,
                    page_size=10,
                    max_concurrent_requests=2,
                )
            },
        )
        assert result.output_for_node("probe") == 7


def test_client_gets_the_configured_values() -> None:
    resource = CloudglueResource(
        api_key=KEY,
        base_url="http://127.0.0.1:9/v1/",
        timeout_seconds=3,
        connect_timeout_seconds=2,
        max_retries=7,
        max_concurrent_requests=3,
        max_response_bytes=1 << 20,
        max_window_records=5000,
    )
    client = resource.get_client()
    assert client.base_url == "http://127.0.0.1:9/v1"
    assert client.timeout == (2, 3)
    assert client.retry.max_retries == 7
    assert client.max_concurrent_requests == 3
    assert client.max_response_bytes == 1 << 20 and client.max_window_records == 5000
    assert CloudglueResource(api_key=KEY).get_client().max_response_bytes == 128 * 1024 * 1024


def test_invalid_config_at_definitions_load() -> None:
    """An invalid value in code fails when the module defining the Definitions is imported."""
    with pytest.raises(ValidationError, match="page_size"):
        dg.Definitions(resources={"cloudglue": CloudglueResource(api_key=dg.EnvVar("X"), page_size=500)})
