"""CloudglueResource: validation at load time, secrets, and the client it hands out."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
from pydantic import ValidationError

from cloudglue_dagster import CloudglueClient, CloudglueConfigError, CloudglueResource
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


# Every field of the resource, given as an environment variable: text fields take dg.EnvVar,
# integer fields dg.EnvVar.int (values valid for each).
_TEXT_AND_INTEGER_FIELDS = {
    "api_key": (dg.EnvVar, KEY),
    "base_url": (dg.EnvVar, "http://127.0.0.1:9/v1"),
    "max_retries": (dg.EnvVar.int, "7"),
    "page_size": (dg.EnvVar.int, "50"),
    "max_concurrent_requests": (dg.EnvVar.int, "3"),
    "max_response_bytes": (dg.EnvVar.int, "1048576"),
    "max_window_records": (dg.EnvVar.int, "5000"),
}


def _from_environment(fields: dict[str, tuple]) -> CloudglueResource:
    return CloudglueResource(**{field: make(f"CG_TEST_{field.upper()}") for field, (make, _) in fields.items()})


def test_every_text_and_integer_field_takes_an_environment_variable_read_when_the_run_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Built while no variable is set (a code server's environment), resolved in the run's."""
    for field in _TEXT_AND_INTEGER_FIELDS:
        monkeypatch.delenv(f"CG_TEST_{field.upper()}", raising=False)
    resource = _from_environment(_TEXT_AND_INTEGER_FIELDS)
    dg.Definitions(resources={"cloudglue": resource})  # loads
    for field, (_, value) in _TEXT_AND_INTEGER_FIELDS.items():
        monkeypatch.setenv(f"CG_TEST_{field.upper()}", value)
    with dg.build_resources({"cloudglue": resource}) as resources:
        client = resources.cloudglue.get_client()
        assert client.base_url == "http://127.0.0.1:9/v1"
        assert client.retry.max_retries == 7 and client.max_concurrent_requests == 3
        assert client.max_response_bytes == 1 << 20 and client.max_window_records == 5000
        assert resources.cloudglue.page_size == 50


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("base_url", "ftp://example.com/v1", "base_url must look like"),
        ("base_url", "http://api.cloudglue.dev/v1", "non-loopback"),
        ("page_size", "500", "page_size must be 1..100, got 500"),
        ("max_retries", "many", "max_retries must be an integer, got 'many'"),
        ("max_concurrent_requests", "0", "max_concurrent_requests must be 1..64"),
        ("api_key", "sk-pasted\nline", "control character"),
    ],
)
def test_an_invalid_variable_set_at_load_fails_there_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str, expected: str
) -> None:
    monkeypatch.setenv("CG_BAD", value)
    make = dg.EnvVar.int if field not in ("base_url", "api_key") else dg.EnvVar
    with pytest.raises(ValidationError) as info:
        CloudglueResource(**{"api_key": KEY, field: make("CG_BAD")})
    text = str(info.value)
    assert f"environment variable CG_BAD (for {field})" in text and expected in text
    assert KEY not in text and (field != "api_key" or "sk-pasted" not in text)


def test_an_invalid_variable_set_only_where_the_run_executes_fails_the_run_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CG_URL", raising=False)
    resource = CloudglueResource(api_key=KEY, base_url=dg.EnvVar("CG_URL"))
    monkeypatch.setenv("CG_URL", "https://user:hunter2@example.com/v1?x=1")
    with pytest.raises(dg.DagsterResourceFunctionError) as info, dg.build_resources({"cloudglue": resource}):
        pass
    text = str(info.value.__cause__)
    assert "environment variable CG_URL (for base_url)" in text and "https://***@example.com" in text
    assert "hunter2" not in text


@pytest.mark.parametrize("field", ["timeout_seconds", "connect_timeout_seconds", "request_deadline_seconds"])
def test_a_timeout_given_an_environment_variable_says_dagster_reads_no_floats(field: str) -> None:
    with pytest.raises(ValidationError) as info:
        CloudglueResource(api_key=KEY, **{field: dg.EnvVar("CG_TIMEOUT")})
    assert f"{field} takes a number of seconds" in str(info.value) and "float(os.environ" in str(info.value)


def test_an_integer_field_given_a_text_variable_names_envvar_int() -> None:
    with pytest.raises(ValidationError, match=r"give dg.EnvVar.int\('CG_PAGES'\)"):
        CloudglueResource(api_key=KEY, page_size=dg.EnvVar("CG_PAGES"))


def test_base_url_unset_reads_cloudglue_base_url_where_the_run_executes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOUDGLUE_BASE_URL", raising=False)
    resource = CloudglueResource(api_key=KEY)
    assert resource.get_client().base_url == "https://api.cloudglue.dev/v1"
    monkeypatch.setenv("CLOUDGLUE_BASE_URL", "http://127.0.0.1:9/v1/")
    assert resource.get_client().base_url == "http://127.0.0.1:9/v1"
    assert (
        CloudglueResource(api_key=KEY, base_url="http://localhost:9/v1")
        .get_client()
        .base_url.startswith("http://localhost")
    )
    monkeypatch.setenv("CLOUDGLUE_BASE_URL", "api.cloudglue.dev")
    with pytest.raises(ValidationError, match="environment variable CLOUDGLUE_BASE_URL"):
        CloudglueResource(api_key=KEY)  # set where the definitions load: checked there
    monkeypatch.delenv("CLOUDGLUE_BASE_URL")
    late = CloudglueResource(api_key=KEY)
    monkeypatch.setenv("CLOUDGLUE_BASE_URL", "api.cloudglue.dev")
    with pytest.raises(CloudglueConfigError, match="environment variable CLOUDGLUE_BASE_URL"):
        late.get_client()
