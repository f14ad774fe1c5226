"""`make bench`'s summary: each benchmark's JSON result line becomes one row of the table."""

import json

from bench import summary
from bench.summary import Bench, Row, format_table, parse_result, postgres_url, row_for


def result_line(**fields: object) -> str:
    return json.dumps(fields)


def test_the_last_json_line_naming_a_bench_is_the_result():
    stdout = "\n".join(
        [
            "round 1 bare 4000 jobs/s",
            '{"rows": 3}',  # a JSON line of another kind (a helper process's output)
            result_line(
                bench="jobs_throughput", figure="tracked 70% of bare", bar="tracked >= 90% of bare", **{"pass": False}
            ),
            "",
        ]
    )

    assert parse_result(stdout) == {
        "bench": "jobs_throughput",
        "figure": "tracked 70% of bare",
        "bar": "tracked >= 90% of bare",
        "pass": False,
    }
    assert parse_result("no result here\n{not json") is None


def test_the_table_has_one_row_per_benchmark_with_its_figure_bar_and_result():
    rows = [
        row_for(
            "idle_latency",
            parse_result(result_line(bench="idle_latency", figure="p50 3.1 ms", bar="p50 <= 30 ms", **{"pass": True})),
        ),
        row_for(
            "jobs_throughput",
            parse_result(
                result_line(
                    bench="jobs_throughput",
                    figure="tracked 70% of bare",
                    bar="tracked >= 90% of bare",
                    **{"pass": False},
                )
            ),
        ),
        # A benchmark written elsewhere: flat figures, no `figure` headline, no bar.
        row_for(
            "premium_latency",
            parse_result(result_line(bench="premium_latency", premium_p95_ms=312.5, **{"pass": True})),
        ),
        row_for("order_latency", None, note="exit code 1: Traceback | boom"),
        Row("premium_latency", "skipped: bench/premium_latency.py does not exist yet", "", "skipped"),
    ]

    assert format_table(rows).splitlines() == [
        "| benchmark | figure | bar | result |",
        "|---|---|---|---|",
        "| idle_latency | p50 3.1 ms | p50 <= 30 ms | pass |",
        "| jobs_throughput | tracked 70% of bare | tracked >= 90% of bare | **FAIL** |",
        "| premium_latency | premium_p95_ms 312.5 |  | pass |",
        "| order_latency | exit code 1: Traceback \\| boom |  | error |",
        "| premium_latency | skipped: bench/premium_latency.py does not exist yet |  | skipped |",
    ]


def test_a_missing_script_is_skipped_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr(summary, "ROOT", tmp_path)

    row = summary.run_one(
        "premium_latency", Bench("premium_latency", ("bench/premium_latency.py", "--quick")), None, ""
    )

    assert row == Row("premium_latency", "skipped: bench/premium_latency.py does not exist yet", "", "skipped")


def test_each_benchmark_gets_a_postgresql_database_of_its_own():
    base = "postgres://postgres@127.0.0.1:5432/bs_bench"

    assert (
        postgres_url(base, Bench("jobs_throughput", (), suffix="jobs"))
        == "postgres://postgres@127.0.0.1:5432/bs_bench_jobs"
    )
    # admin_scale drops only databases named bench_*.
    assert (
        postgres_url(base, Bench("admin_scale", (), suffix="admin"))
        == "postgres://postgres@127.0.0.1:5432/bench_bs_bench_admin"
    )


def test_every_benchmark_runs_on_sqlite_and_the_sql_ones_again_on_postgresql():
    plain = summary.plan(summary.parse_args([]))
    both = summary.plan(summary.parse_args(["--database-url", "postgres://postgres@127.0.0.1:5432/bs_bench"]))

    assert [label for label, _, url in plain] == [b.name for b in summary.BENCHMARKS]
    assert all(url is None for _, _, url in plain)
    on_postgres = [label for label, _, url in both if url]
    assert "report_throughput (PostgreSQL)" not in on_postgres  # SQLite only
    assert "idle_latency (PostgreSQL)" in on_postgres and "admin_scale (PostgreSQL)" in on_postgres
