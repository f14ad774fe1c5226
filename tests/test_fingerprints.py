"""Error fingerprints: the same failure with different ids is one group."""

import pytest

from jobs.fingerprints import fingerprint, normalise, signature, split_error


def test_errors_that_differ_only_in_an_id_share_a_fingerprint():
    assert fingerprint("send_email", "LookupError: Order 1234 not found") == fingerprint(
        "send_email", "LookupError: Order 5678 not found"
    )


def test_different_exception_classes_with_the_same_message_stay_apart():
    assert fingerprint("send_email", "LookupError: Order 1234 not found") != fingerprint(
        "send_email", "KeyError: Order 1234 not found"
    )


def test_the_same_error_from_different_actors_stays_apart():
    assert fingerprint("send_email", "TimeoutError: relay gone") != fingerprint(
        "update_inventory", "TimeoutError: relay gone"
    )


def test_different_messages_stay_apart():
    assert fingerprint("a", "ValueError: price missing") != fingerprint("a", "ValueError: stock missing")


@pytest.mark.parametrize(
    ("message", "normalised"),
    [
        ("job 3f2a6c1e-1111-2222-3333-444455556666 lost", "job <uuid> lost"),
        ("job 3f2a6c1e111122223333444455556666 lost", "job <uuid> lost"),
        ("no mailbox for Bob.Smith+shop@example.co.uk", "no mailbox for <email>"),
        ("bad pointer 0x7f3a9c00", "bad pointer <hex>"),
        ("token a3f9c2e81b7d mismatch", "token <hex> mismatch"),
        ("unknown sku 'BUZ-001'", "unknown sku '<str>'"),
        ('unknown sku "MUG-001"', 'unknown sku "<str>"'),
        ("Order 1234 not found", "Order <num> not found"),
        ("paid 12.50 of 24.90", "paid <num> of <num>"),
        ("order-77 failed at 2026-01-02T03:04:05Z", "order-<num> failed at <date>"),
        ("  spaces   and\ttabs  ", "spaces and tabs"),
        ("first line 1\nTraceback line 2", "first line <num>"),
    ],
)
def test_variable_parts_are_normalised(message, normalised):
    assert normalise(message) == normalised


def test_emails_and_uuids_group_together_whatever_their_value():
    one = fingerprint("a", "SMTPRecipientsRefused: bob@example.com refused for 3f2a6c1e-1111-2222-3333-444455556666")
    two = fingerprint("a", "SMTPRecipientsRefused: ann@example.org refused for 9d8c7b6a-5555-4444-3333-222211110000")
    assert one == two


def test_the_signature_names_actor_exception_and_normalised_message():
    sig = signature("send_email", "smtplib.SMTPServerDisconnected: relay 42 gone")
    assert (sig.actor_name, sig.exception, sig.message) == (
        "send_email",
        "smtplib.SMTPServerDisconnected",
        "relay <num> gone",
    )
    assert len(sig.fingerprint) == 40 and sig.fingerprint == fingerprint(
        "send_email", "smtplib.SMTPServerDisconnected: relay 42 gone"
    )


def test_an_error_without_a_class_is_all_message():
    assert split_error("The message could not be decoded: bad json") == (
        "",
        "The message could not be decoded: bad json",
    )
    assert split_error("TimeoutError: ") == ("TimeoutError", "")


def test_no_error_no_fingerprint():
    assert fingerprint("a", "") == ""
