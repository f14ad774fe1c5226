"""The counting helpers of bench/capacity.py: what a statement is, how readings add up,
and how a MONITOR recording becomes a replay."""

from __future__ import annotations

from collections import Counter

from bench.capacity import family, parse_monitor_line, replayable, resp, unescape
from bench.capacity_probe import Totals, classify, commandstats_delta


def test_a_statement_is_classified_by_its_first_word_and_the_table_it_writes():
    assert classify('INSERT INTO "jobs_job" ("id") VALUES (%s)') == ("INSERT", "jobs_job")
    assert classify('INSERT OR IGNORE INTO "jobs_job" ("id") VALUES (?)') == ("INSERT", "jobs_job")
    assert classify('  UPDATE "orders_product" SET "stock" = 1') == ("UPDATE", "orders_product")
    assert classify('DELETE FROM "jobs_job" WHERE id IN (1)') == ("DELETE", "jobs_job")
    assert classify('SELECT 1 FROM "jobs_job"') == ("SELECT", "")
    assert classify('SAVEPOINT "s1"') == ("SAVEPOINT", "")


def test_totals_count_rows_of_writes_only_and_subtract_a_reading():
    totals = Totals()
    totals.record('INSERT INTO "jobs_job" VALUES (1), (2), (3)', 3)
    totals.record('SELECT * FROM "jobs_job"', 40)
    totals.record('UPDATE "jobs_job" SET status = 1', -1, autocommit=True)  # rowcount unknown
    before = Totals(Counter({"INSERT": 1}), Counter({"INSERT jobs_job": 1}), Counter({"INSERT jobs_job": 3}))

    delta = totals.minus(before)

    assert totals.statement_count == 3
    assert totals.rows_written == 3
    assert totals.transactions == 1
    assert delta.statement_count == 2
    assert delta.rows_written == 0
    assert Totals.from_dict(totals.as_dict()) == totals


def test_commandstats_delta_keeps_the_commands_that_ran():
    before = {"cmdstat_get": {"calls": 5, "usec": 9}, "cmdstat_set": {"calls": 2, "usec": 4}}
    after = {
        "cmdstat_get": {"calls": 8, "usec": 12},
        "cmdstat_set": {"calls": 2, "usec": 4},
        "cmdstat_zadd": {"calls": 1},
    }

    assert commandstats_delta(before, after) == {"get": 3, "zadd": 1}


def test_a_monitor_line_gives_its_client_and_exact_arguments():
    line = r'1764490000.123456 [0 127.0.0.1:5555] "EVALSHA" "ab12" "1" "q\"x\\y" "\x00\xff" "a b"'

    client, arguments = parse_monitor_line(line)

    assert client == "127.0.0.1:5555"
    assert arguments == [b"EVALSHA", b"ab12", b"1", b'q"x\\y', b"\x00\xff", b"a b"]
    assert parse_monitor_line("OK") is None
    assert parse_monitor_line('1764490000.1 [0 lua] "get" "k"') == ("lua", [b"get", b"k"])
    assert unescape(r"\n\r\t") == b"\n\r\t"


def test_a_replay_never_blocks_and_leaves_out_the_benchmarks_own_commands():
    assert replayable([b"BLPOP", b"ns:default.wake", b"0.25"]) == [b"LPOP", b"ns:default.wake"]
    assert replayable([b"INFO", b"commandstats"]) is None
    assert replayable([b"CLIENT", b"SETINFO", b"LIB-NAME", b"redis-py"]) is None
    assert replayable([b"ZADD", b"k", b"1", b"m"]) == [b"ZADD", b"k", b"1", b"m"]
    assert resp([b"GET", b"k"]) == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"


def test_a_command_is_put_down_to_the_part_of_buzzer_its_key_belongs_to():
    ns = b"buzzer-abc"
    assert (
        family(
            [
                b"EVALSHA",
                b"sha",
                b"3",
                ns + b":__heartbeats__",
                ns + b":buzzer:claim:j:0",
                ns + b":buzzer:cancel:j",
                b"1",
            ]
        )
        == "claims"
    )
    assert family([b"EVALSHA", b"sha", b"1", ns, b"fetch"]) == "broker"
    assert family([b"HINCRBY", ns + b":buzzer:stats:totals", b"c|a|succeeded", b"1"]) == "stats"
    assert family([b"SET", ns + b":buzzer:effect-done:email:x", b"1"]) == "effect marks"
    assert family([b"RPUSH", ns + b":default", b"id"]) == "broker"
    assert family([b"SCRIPT", b"LOAD", b"return 1"]) == "other"
