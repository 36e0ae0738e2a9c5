"""The masking primitives, on their own (without Dagster where they do not need it), with a key
holding every character an escape changes: the Redactor's forms and its fast path; metadata
values of every Dagster type, keys included; exceptions with their whole chain, attributes,
notes and ``dg.Failure`` metadata, and the stand-in for one whose text cannot be masked in
place; the logger wrapper; a preview masked before it is cut; the usage check comparing model
names masked alike; and, inside a real in-process run, what Dagster records of a masked log
and a masked failure. The real runs of the assets are in ``test_secrets.py``."""

from __future__ import annotations

import base64
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import dagster as dg
import pandas as pd
import pytest
from dagster._utils.error import serializable_error_info_from_exc_info
from dagster_shared.serdes.serdes import serialize_value
from support.leaks import assert_no_leak, hostile_key
from support.reliability import http_server, json_reply

from cloudglue_dagster import CloudglueClient, CloudglueResource
from cloudglue_dagster.api.secrecy import CUT, MaskedError, MaskedLog, Redactor, errors_masked, masked_error
from cloudglue_dagster.assets.masking import Masker
from cloudglue_dagster.assets.metadata import markdown_preview
from cloudglue_dagster.assets.usage_checks import usage_against_recorded
from cloudglue_dagster.errors import InvalidResponseError


@pytest.fixture
def key() -> str:
    return hostile_key()


def forms(key: str) -> list[str]:
    """The key as a server or our own messages could write it inside a longer text."""
    return [
        key,
        repr(key)[1:-1],
        repr(f"it's {key}")[1:-1],  # a longer text's repr escapes ' differently
        json.dumps(key)[1:-1],
        quote(key, safe=""),
        quote_plus(key),
        base64.b64encode(f"x{key}".encode()).decode(),
        base64.urlsafe_b64encode(f"ab{key}".encode()).decode(),
    ]


# -- texts ---------------------------------------------------------------------------------------


def test_the_redactor_masks_every_form_of_the_key_inside_a_longer_text(key: str) -> None:
    redact = Redactor(key)
    for form in forms(key):
        text = f"before {form} after"
        assert_no_leak(redact(text), key, f"the masked {text!r}")
        assert redact(text).startswith("before ")


def test_the_redactors_fast_path_never_skips_what_the_pattern_would_mask(key: str) -> None:
    """The substring search that spares the pattern on clean texts must say "maybe" wherever
    the pattern matches: every form, in upper case, and with the non-ASCII letters that
    re.IGNORECASE takes for ASCII ones (the Kelvin sign for k, the long s for s, dotted and
    dotless i), in ASCII and non-ASCII surroundings."""
    redact = Redactor(key)
    lookalikes = {"k": "\u212a", "s": "\u017f", "i": "\u0131", "I": "\u0130"}
    for form in forms(key):
        variants = [form, form.upper(), "".join(lookalikes.get(c, c) for c in form)]
        for variant in variants:
            for text in (f"x {variant} y", f"Été {variant} 東京"):
                assert redact(text) == redact._pattern.sub("***", text), text
    assert redact("nothing to see, 東京") == "nothing to see, 東京"


def test_an_empty_secret_masks_nothing() -> None:
    assert Redactor("")("some text") == "some text"
    masker = Masker("  ")
    assert masker.text("some text") == "some text"
    assert masker.metadata({"a": "b"}) == {"a": "b"}


# -- metadata --------------------------------------------------------------------------------------


def every_metadata_type(key: str) -> dict[str, Any]:
    """One value of each kind the assets (or a user's) can put in metadata, each holding the
    key, plus the ones that cannot hold text."""
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name=f"c {key}", type="string", description=key, tags={"t": key})],
        constraints=dg.TableConstraints(other=[key]),
    )
    return {
        "raw text": f"id {key}",
        "raw json": {key: [key, {"nested": key}], "n": 1},
        "raw list": [key, 2],
        "text": dg.MetadataValue.text(f"a {key} b"),
        "markdown": dg.MetadataValue.md(f"| id |\n|---|\n| {key} |"),
        "json": dg.MetadataValue.json({f"model:{key}": 3, "list": [{"id": key}]}),
        "url": dg.MetadataValue.url(f"https://example.com/{quote(key, safe='')}"),
        "path": dg.MetadataValue.path(f"/data/{key}"),
        "notebook": dg.MetadataValue.notebook(f"/nb/{key}.ipynb"),
        "table": dg.MetadataValue.table([dg.TableRecord({"id": key, "n": 1})]),
        "table schema": dg.MetadataValue.table_schema(schema),
        "raw table schema": schema,
        "asset": dg.MetadataValue.asset(dg.AssetKey(["raw", key])),
        "python artifact": dg.MetadataValue.python_artifact(dg.AssetKey),
        f"a key naming {key}": 1,
    }


NOT_TEXT = {
    "int": dg.MetadataValue.int(7),
    "float": dg.MetadataValue.float(1.5),
    "bool": dg.MetadataValue.bool(True),
    "timestamp": dg.MetadataValue.timestamp(1_700_000_000.0),
    "null": dg.MetadataValue.null(),
    "raw int": 3,
    "raw float": 2.5,
    "raw none": None,
}


def test_every_metadata_value_type_is_masked_with_its_keys_and_keeps_its_type(key: str) -> None:
    """Text, markdown, JSON (keys too, nested), URL, path, notebook, table (records and
    schema), table schema, asset key, raw texts and JSON, the mapping's own keys: none holds
    the key after, in any form, each is the type it was, and Dagster takes the result as a
    materialization's metadata. Values with no text are the very same objects."""
    given = {**every_metadata_type(key), **NOT_TEXT}
    masked = Masker(key).metadata(given)
    assert list(masked) == [name.replace(key, "***") for name in given]
    for (name, before), after in zip(given.items(), masked.values()):
        assert type(after) is type(before), name
        assert_no_leak(serialize_value(after) if not isinstance(after, str) else after, key, name)
    for name, value in NOT_TEXT.items():
        assert masked[name] is value
    assert masked["json"].value == {"model:***": 3, "list": [{"id": "***"}]}
    assert masked["table"].value.records[0].data == {"id": "***", "n": 1}
    assert masked["raw table schema"].columns[0].name == "c ***"
    event = dg.AssetMaterialization("probe", metadata=masked)  # Dagster normalizes it as usual
    assert_no_leak(serialize_value(event), key, "the materialization")


def test_a_value_that_holds_no_secret_is_returned_as_is(key: str) -> None:
    """The contract's schema goes on every day's metadata: left untouched, not rebuilt."""
    schema = dg.TableSchema(columns=[dg.TableColumn("id", "string", description="Completion id")])
    masker = Masker(key)
    assert masker.value(schema) is schema
    assert masker.value(dg.MetadataValue.table_schema(schema)).schema is schema


def test_keys_that_mask_alike_are_kept_apart(key: str) -> None:
    masked = Masker(key).value({f"m:{key}": 1, f"m:{key.upper()}": 2, "m:***": 3})
    assert masked == {"m:***": 1, "m:*** (2)": 2, "m:*** (3)": 3}


def test_a_masker_from_a_resource_uses_its_key_and_one_without_a_key_masks_nothing(key: str) -> None:
    assert Masker.of(CloudglueResource(api_key=key)).text(key) == "***"
    nothing = Masker.of(object())
    value = {"id": key}
    assert nothing.text(key) == key and nothing.value(value) is value and nothing.metadata(value) == value
    error = ValueError(key)
    assert nothing.error(error) is error and str(error) == key


# -- exceptions ------------------------------------------------------------------------------------


def raised(exc: BaseException) -> BaseException:
    """``exc`` after a real raise (with a traceback)."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def failure_chain(key: str) -> dg.Failure:
    """What a step raises: a ``dg.Failure`` (description and metadata naming the record) from
    an InvalidResponseError (its attributes too), raised while a KeyError was handled, with a
    note; each names the key."""
    try:
        try:
            raise KeyError(f"id {key}")
        except KeyError:
            invalid = InvalidResponseError("integer out of range", completion_id=f"c.{key}", field="usage")
            if sys.version_info >= (3, 11):
                invalid.add_note(f"seen in {key}")
            raise invalid  # noqa: B904 - the KeyError is its __context__ on purpose
    except InvalidResponseError as exc:
        try:
            raise dg.Failure(description=str(exc), metadata={"row": key, f"k {key}": 1}) from exc
        except dg.Failure as failure:
            return failure


def recorded(exc: BaseException) -> str:
    """What Dagster records of an exception in a step failure: its serializable error info,
    with the message, stack, cause and context chains."""
    return serializable_error_info_from_exc_info((type(exc), exc, exc.__traceback__)).to_string()


def test_an_exception_chain_is_masked_in_place_with_its_args_attributes_notes_and_failure_metadata(key: str) -> None:
    failure = failure_chain(key)
    assert key in recorded(failure)  # what there was to mask
    masked = Masker(key).error(failure)
    assert masked is failure  # in place: a bare raise keeps it
    cause, context = failure.__cause__, failure.__cause__.__context__
    assert isinstance(cause, InvalidResponseError) and isinstance(context, KeyError)
    shown = recorded(failure)
    assert_no_leak(shown, key, "the recorded error")
    assert "completion 'c.***'" in shown and "'id ***'" in shown
    assert failure.description is not None and "c.***" in failure.description
    assert_no_leak(serialize_value(failure.metadata), key, "the failure's metadata")
    assert set(failure.metadata) == {"row", "k ***"}
    assert cause.completion_id == "c.***" and context.args == ("id ***",)
    if sys.version_info >= (3, 11):
        assert cause.__notes__ == ["seen in ***"]


def test_an_exception_whose_text_cannot_be_masked_in_place_gets_a_stand_in_under_its_name(key: str) -> None:
    """An OSError's text comes from its file name, not its args: in a chain it is replaced by
    a :class:`MaskedError` under its name (FileNotFoundError, which OSError(2, ...) is); raised
    from a masked block, the stand-in is what leaves it, with the original's context
    suppressed and the masked chain as its cause."""
    os_error = raised(OSError(2, "No such file", f"/data/{key}"))
    outer = raised(RuntimeError("writing failed"))
    outer.__cause__ = os_error
    masked = Masker(key).error(outer)
    assert masked is outer and isinstance(outer.__cause__, MaskedError)
    assert type(outer.__cause__).__name__ == "FileNotFoundError" and "/data/***" in str(outer.__cause__)
    assert_no_leak(recorded(outer), key, "the recorded chain")
    assert "FileNotFoundError: [Errno 2] No such file: '/data/***'" in recorded(outer)

    with pytest.raises(MaskedError) as info:
        with Masker(key).errors():
            try:
                raise ValueError(f"while reading {key}")
            except ValueError:
                raise OSError(2, "No such file", f"/data/{key}") from None
    stand_in = info.value
    assert type(stand_in).__name__ == "FileNotFoundError" and stand_in.__suppress_context__
    assert_no_leak(recorded(stand_in), key, "the stand-in as Dagster records it")


def test_a_cycle_in_an_exception_chain_is_masked_once(key: str) -> None:
    first, second = ValueError(key), ValueError(f"again {key}")
    first.__context__, second.__context__ = second, first
    assert Masker(key).error(first) is first
    assert first.args == ("***",) and second.args == ("again ***",)


def test_masked_error_needs_no_dagster_only_a_mask_and_checks_the_text_whatever_the_mask_reaches(
    key: str,
) -> None:
    """``Redactor.error`` (what the client uses) sees texts only: an exception whose text
    shows a dict it holds gets a stand-in; one whose text is its masked args stays itself,
    through ``errors_masked`` too; any mask can be given to :func:`masked_error`."""
    redact = Redactor(key)
    masked = redact.error(raised(ValueError(f"bad {key}", {"id": key})))
    assert isinstance(masked, MaskedError) and type(masked).__name__ == "ValueError"
    assert str(masked) == "('bad ***', {'id': '***'})"
    with pytest.raises(ValueError, match=r"^bad \*\*\*$"):
        with errors_masked(redact.error):
            raise ValueError(f"bad {key}")
    exc = raised(ValueError({"id": key}))
    assert masked_error(exc, lambda v: {"id": "hidden"} if isinstance(v, dict) else v) is exc
    assert exc.args == ({"id": "hidden"},)


# -- log lines -------------------------------------------------------------------------------------


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, Kept]]:
    log = logging.getLogger("test_masking")
    log.setLevel(logging.DEBUG)
    kept = Kept()
    log.addHandler(kept)
    try:
        yield log, kept
    finally:
        log.removeHandler(kept)


def test_the_masked_log_masks_every_level_its_arguments_and_tracebacks(
    key: str, logger: tuple[logging.Logger, Kept]
) -> None:
    log, kept = logger
    masked = MaskedLog(log, Redactor(key))
    masked.debug("debug %s", key)
    masked.info("info %(id)s", {"id": key})
    masked.warning(f"warning {json.dumps(key)}")
    masked.error("error %s", quote(key, safe=""))
    masked.critical(f"critical {base64.b64encode(key.encode()).decode()}")
    masked.log(logging.INFO, "log %r", key)
    try:
        raise ValueError(f"failed on {key}")
    except ValueError:
        masked.exception("exception")
        masked.warning("with exc_info", exc_info=True)
    assert len(kept.lines) == 8
    for line in kept.lines:
        assert_no_leak(line, key, line[:20])
    assert kept.lines[0] == "debug ***" and kept.lines[1] == "info ***"
    assert "ValueError: failed on ***" in kept.lines[6] and "Traceback" in kept.lines[7]


# -- where masking must come before the text is cut ---------------------------------------------


def test_a_preview_cell_is_masked_before_it_is_escaped_and_cut(key: str) -> None:
    """A cell of 40 characters would keep the first part of a key it cut (and markdown's \\|
    escape would hide the rest from any later masking)."""
    frame = pd.DataFrame({"id": [f"completion-{key}"], "text": [f"a|{key}"]})
    assert_no_leak(markdown_preview(frame, ["id", "text"], mask=Redactor(key)), key, "the preview")
    # Masked only afterwards, the cut cells end with the key's beginning: masked at the cut too.
    assert_no_leak(Masker(key).text(markdown_preview(frame, ["id", "text"])), key, "the preview masked afterwards")


def test_the_usage_check_compares_models_masked_alike_on_both_sides(key: str) -> None:
    """chat_completions recorded its completions per model masked; the stored token_usage
    holds the models as the server sent them: masked the same way, they match."""
    masker = Masker(key)
    usage = pd.DataFrame(
        {
            "model": [f"a:{key}", f"b:{key}"],
            "completions": [2, 3],
            **{f: [1, 1] for f in ("prompt_tokens", "completion_tokens", "total_tokens")},
            "completions_without_usage": [0, 0],
        }
    )
    recorded_day = {
        "dagster/partition_row_count": 5,
        **{f: 2 for f in ("prompt_tokens", "completion_tokens", "total_tokens")},
        "completions_without_usage": 0,
        "completions_by_model": masker.value({f"b:{key}": 3, f"a:{key}": 2}),
    }
    assert usage_against_recorded(usage, recorded_day, masker.value) == []
    assert usage_against_recorded(usage, recorded_day) != []  # unmasked, they would differ


# -- inside a real run -----------------------------------------------------------------------------


def test_in_a_run_a_masked_log_and_a_masked_failure_leave_nothing_in_the_event_log(key: str) -> None:
    """An asset logs through the masker of its resource and fails, inside ``Masker.errors``,
    with a ``dg.Failure`` chain naming the key: Dagster's event log (the log lines, the step
    failure's error with its cause chain, the failure's description and metadata) holds the
    masked texts only."""

    @dg.asset(required_resource_keys={"cloudglue"})
    def probe(context) -> None:  # unannotated: Dagster refuses the string annotation this module makes
        masker = Masker.of(context.resources.cloudglue)
        with masker.errors():
            masker.log(context.log).warning(f"Completion c.{key} arrived late")
            raise failure_chain(key)

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [probe], resources={"cloudglue": CloudglueResource(api_key=key)}, instance=instance, raise_on_error=False
    )
    assert not result.success
    records = instance.all_logs(result.run_id)
    assert any(r.user_message == "Completion c.*** arrived late" for r in records)
    failure = result.get_step_failure_events()[0].step_failure_data
    assert "completion 'c.***'" in failure.error.to_string()
    assert failure.user_failure_data is not None and failure.user_failure_data.metadata["row"].value == "***"
    for record in records:
        assert_no_leak(serialize_value(record), key, f"the event {record.user_message[:30]!r}")


def test_a_text_cut_short_inside_the_key_keeps_no_beginning_of_it(key: str) -> None:
    """A value shortened for a message (cut marked by the redactor's CUT), or a body read up
    to its limit (cut at its end), can end inside the key, where the whole-key pattern cannot
    see it: its beginning, raw or escaped, is masked at the cut."""
    redact = Redactor(key)
    for form in (key, repr(key)[1:-1], json.dumps(key)[1:-1]):
        for n in (8, 16, len(form) - 1):
            for text in (f"timestamp 'xxxx{form[:n]}{CUT}: unreadable", f"error page ... {form[:n]}"):
                masked = redact(text)
                assert_no_leak(masked, key, repr(text))
                assert form[:8] not in masked, masked
    assert redact(f"{key[:7]}{CUT} is too short to tell") == f"{key[:7]}{CUT} is too short to tell"
    assert redact("an ordinary text… with a cut") == "an ordinary text… with a cut"


def test_a_key_a_server_puts_in_a_long_timestamp_leaves_no_part_of_it_in_the_error(key: str) -> None:
    """The parser quotes a bad value's first 59 characters: with the key past the 20th, that
    used to show the key's beginning (escaped by repr), after the redaction had looked for the
    whole key."""
    record = {"id": "c1", "object": "chat.completion", "created_at": "9" * 20 + key, "model": "m"}
    page = {"object": "list", "data": [record], "total": 1, "limit": 100, "offset": 0}
    with http_server("127.0.0.1", json_reply(page)) as (root, _):
        with pytest.raises(InvalidResponseError) as info:
            CloudglueClient(key, f"{root}/v1", max_retries=0).list_chat_completions()
    said = str(info.value)
    assert "unreadable timestamp '99999999999999999999***" in said, said
    assert_no_leak(said, key, "the InvalidResponseError")
