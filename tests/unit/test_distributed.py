"""course.foundations.distributed: torchrun jobs on 127.0.0.1 only, results collected by rank, nothing left running."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest
import torch

from course.foundations import distributed

pytestmark = pytest.mark.unit

LISTEN = "0A"  # the TCP state of a listening socket in /proc/net/tcp


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def processes_running(needle: str) -> list[int]:
    """Pids whose command line mentions `needle` (Linux /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle in cmdline.read_bytes().decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            pass
    return found


def test_free_port_is_bindable_on_loopback():
    port = distributed.free_port()
    assert 1024 <= port < 65536
    with socket.socket() as sock:
        sock.bind((distributed.HOST, port))


def test_loopback_interface_exists():
    name = distributed.loopback_interface()
    assert name in [n for _, n in socket.if_nameindex()]
    assert name.startswith("lo")


def test_results_round_trip_in_rank_order_and_a_missing_rank_is_named(tmp_path):
    distributed.save_result({"x": torch.arange(3), "rank": 1}, tmp_path, rank=1)
    distributed.save_result({"x": torch.zeros(2), "rank": 0}, tmp_path, rank=0)
    got = distributed.collect(tmp_path, 2)
    assert [r["rank"] for r in got] == [0, 1]
    assert torch.equal(got[1]["x"], torch.arange(3))
    assert not list(tmp_path.glob("*.tmp")), "results are written atomically"
    with pytest.raises(FileNotFoundError, match="rank 2"):
        distributed.collect(tmp_path, 3)


def test_the_first_worker_traceback_is_found_among_the_agents_noise():
    output = "\n".join(
        [
            "[default0]:starting",
            "[default1]:[rank1]: Traceback (most recent call last):",
            "[default0]:still fine",
            '[default1]:[rank1]:   File "w.py", line 3, in <module>',
            "[default1]:[rank1]:     boom()",
            "[default1]:[rank1]: ValueError: the real cause",
            "[default1]:later noise",
            "Traceback (most recent call last):",
            "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: w.py FAILED",
        ]
    )
    run = distributed.Run(["python"], 1, output, 1.0, 2, 1234)
    found = run.first_traceback()
    assert found.splitlines()[0] == "[default1]:[rank1]: Traceback (most recent call last):"
    assert found.splitlines()[-1] == "[default1]:[rank1]: ValueError: the real cause"
    assert len(found.splitlines()) == 4
    assert "still fine" not in found and "ChildFailedError" not in found
    assert distributed.Run(["python"], 1, "no traceback here", 1.0, 2, 1234).first_traceback() == ""


@pytest.mark.parametrize(
    "flags",
    [
        ["--standalone", "--nproc-per-node", "2", "x.py"],
        ["--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:29400", "--nproc-per-node", "2", "x.py"],
        ["--master-addr", "0.0.0.0", "--master-port", "29500", "x.py"],
        ["--master-addr", "127.0.0.1", "x.py"],  # no port: torchrun would switch to a c10d store
        ["--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", "29500", "x.py"],
    ],
)
def test_flags_that_would_listen_beyond_loopback_are_refused(flags):
    with pytest.raises(SystemExit):
        distributed._checked(flags)


def test_a_two_process_job_all_reduces_and_listens_on_loopback_only(tmp_path):
    script = write(
        tmp_path,
        "job.py",
        """
        import os, sys, torch, torch.distributed as dist
        from pathlib import Path
        from course.foundations.distributed import save_result

        def sockets(pid):
            inodes = set()
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
            return inodes

        def listening():
            rows = []
            for table in ("/proc/net/tcp", "/proc/net/tcp6"):
                for line in Path(table).read_text().splitlines()[1:]:
                    fields = line.split()
                    if fields[3] == "0A":
                        rows.append((fields[1], fields[9]))  # local address:port (hex), inode
            return rows

        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        x = torch.tensor([float(rank + 1)])
        dist.all_reduce(x)
        pids = [None] * world
        dist.all_gather_object(pids, os.getpid())
        dist.barrier()
        ours = set().union(*(sockets(p) for p in [os.getppid(), *pids]))  # the agent and every worker
        mine = [addr for addr, inode in listening() if inode in ours]
        save_result({"sum": x, "listen": mine, "port": int(os.environ["MASTER_PORT"]),
                     "env": {k: os.environ[k] for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR",
                                                         "OMP_NUM_THREADS", "GLOO_SOCKET_IFNAME")}}, sys.argv[1])
        dist.barrier()
        dist.destroy_process_group()
    """,
    )
    out = tmp_path / "out"
    run = distributed.torchrun(script, out, nproc=2, timeout=180)
    assert run.returncode == 0
    assert run.torchrun_line.startswith("torchrun --nproc-per-node 2 --master-addr 127.0.0.1")
    assert "--log-dir" not in run.torchrun_line and "--listen-fd" not in run.torchrun_line
    r0, r1 = distributed.collect(out, 2)
    assert r0["sum"].item() == r1["sum"].item() == 3.0
    assert [r0["env"]["RANK"], r1["env"]["RANK"]] == ["0", "1"] and r0["env"]["WORLD_SIZE"] == "2"
    assert r0["env"]["MASTER_ADDR"] == "127.0.0.1" and r0["env"]["OMP_NUM_THREADS"] == "1"
    assert r0["env"]["GLOO_SOCKET_IFNAME"] == distributed.loopback_interface()
    assert r0["port"] == run.port
    assert r0["listen"], "the job's store and gloo listen somewhere"
    loopback = {"0100007F"}  # 127.0.0.1 as /proc/net/tcp writes it
    wide = [a for a in r0["listen"] if a.split(":")[0] not in loopback]
    assert not wide, f"the job listens beyond 127.0.0.1: {wide}"
    assert any(int(a.split(":")[1], 16) == run.port for a in r0["listen"]), "the rendezvous store is on our port"
    assert not Path(run.command[run.command.index("--log-dir") + 1]).exists(), "torchrun's log folder is removed"


FAILING_RANK = """
    import os
    import torch.distributed as dist
    dist.init_process_group("gloo")
    if dist.get_rank() == 1:
        {failure}
    dist.destroy_process_group()
"""


@pytest.mark.parametrize(
    ("failure", "shown"),
    [
        ('raise ValueError("rank one is broken on purpose")', "ValueError: rank one is broken on purpose"),
        # SIGABRT, as a C++ std::terminate would: no Python traceback, so what the rank printed last is shown
        ('print("rank one is about to abort", flush=True); os.abort()', "[default1]:rank one is about to abort"),
    ],
    ids=["traceback", "abort"],
)
def test_a_failing_rank_raises_with_what_it_said_last(tmp_path, failure, shown):
    script = write(tmp_path, "fails.py", FAILING_RANK.format(failure=failure))
    with pytest.raises(distributed.DistributedRunError) as caught:
        distributed.torchrun(script, nproc=2, timeout=180)
    assert shown in str(caught.value)
    run = distributed.torchrun(script, nproc=2, timeout=180, check=False)
    assert run.returncode != 0


def test_a_job_past_its_timeout_is_stopped_with_all_its_processes(tmp_path):
    script = write(
        tmp_path,
        "hangs.py",
        """
        import time
        import torch.distributed as dist
        dist.init_process_group("gloo")
        if dist.get_rank() == 1:
            time.sleep(600)  # rank 0 finishes; the job never does
        dist.destroy_process_group()
    """,
    )
    with pytest.raises(distributed.DistributedRunError, match="ran past"):
        distributed.torchrun(script, nproc=2, timeout=20)
    assert not processes_running(str(script)), "a worker outlived the job's timeout"
