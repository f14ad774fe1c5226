"""Worker groups (BUZZER_WORKER_GROUPS): how `runworkers` splits the queues among its
`rundramatiq` processes, and what it refuses to start."""

from __future__ import annotations

import re

import pytest

from jobs import topology
from jobs.management.commands import runworkers
from jobs.topology import TopologyError, WorkerGroup

KNOWN = {"default", "premium", "reports"}


def test_the_default_topology_reserves_workers_for_premium_jobs_and_reports(settings):
    known = set(settings.BUZZER_QUEUES)
    groups = topology.resolve(topology.parse(settings.BUZZER_WORKER_GROUPS), known)

    by_queue = {queue: group for group in groups for queue in group.queues}
    assert set(by_queue) == known == KNOWN | {"webhooks"}
    assert by_queue["premium"].queues == ("premium",) and by_queue["premium"].threads >= 1
    assert by_queue["reports"].queues == ("reports",)
    assert by_queue["webhooks"].queues == ("webhooks",) and by_queue["webhooks"].threads >= 16
    assert by_queue["default"] not in (by_queue["premium"], by_queue["reports"], by_queue["webhooks"])


def test_star_takes_every_queue_no_other_group_names():
    groups = topology.resolve(topology.parse("*:2x4, premium:1x2"), {"default", "premium", "reports", "webhooks"})

    assert groups == [WorkerGroup(("default", "reports", "webhooks"), 2, 4), WorkerGroup(("premium",), 1, 2)]
    assert groups[0].name == "default+reports+webhooks"


def test_queues_joined_by_plus_share_one_group():
    groups = topology.resolve(topology.parse("default+reports:2x4,premium:1x1"), KNOWN)

    assert groups == [WorkerGroup(("default", "reports"), 2, 4), WorkerGroup(("premium",), 1, 1)]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("default:2", "expected QUEUES:PROCESSESxTHREADS"),
        ("*:0x4,premium:1x1,reports:1x1", "at least 1 process"),
        ("*:1x1,*:1x1", "only one worker group may be '*'"),
        ("*:1x1,premium:1x1,premium:1x2", "in two worker groups"),
        ("*:1x1,premum:1x1", "'premum' of worker group 'premum' is neither in BUZZER_QUEUES"),
        ("default:2x4,premium:1x2", "no worker group consumes reports"),
        ("default+premium+reports:1x1,*:1x1", "no queue left"),
        ("", "no worker group given"),
    ],
)
def test_a_topology_that_would_leave_work_undone_is_refused(spec, message):
    with pytest.raises(TopologyError, match=re.escape(message)):
        topology.resolve(topology.parse(spec), KNOWN)


def test_processes_threads_or_queues_keep_runworkers_one_pool_as_before():
    assert runworkers.is_single_pool(["--processes", "2", "--threads", "4", "--reload"])
    assert runworkers.is_single_pool(["--queues", "premium"])
    assert runworkers.is_single_pool(["--threads=8"])
    assert not runworkers.is_single_pool(["--reload", "--worker-shutdown-timeout", "10000"])


def test_groups_option_is_taken_out_of_the_rundramatiq_arguments():
    assert runworkers.split_groups_option(["--groups", "*:1x1", "--reload"]) == ("*:1x1", ["--reload"])
    assert runworkers.split_groups_option(["--groups=*:1x1"]) == ("*:1x1", [])
    assert runworkers.split_groups_option(["--reload"]) == (None, ["--reload"])


def test_runworkers_knows_every_actor_queue_and_the_configured_ones(settings):
    settings.BUZZER_QUEUES = ["default", "premium", "reports", "extra"]

    queues = runworkers.known_queues()

    assert {"default", "premium", "reports", "extra"} <= queues
    assert not any(queue.endswith((".DQ", ".XQ")) for queue in queues)


def test_every_report_actor_runs_on_the_reports_queue(settings):
    from reports import tasks

    for actor in (tasks.generate_report, tasks.run_scheduled_report, tasks.expire_reports):
        assert actor.queue_name == "reports", actor.actor_name
    assert "reports" in settings.BUZZER_QUEUES
