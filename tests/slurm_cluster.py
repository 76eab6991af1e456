"""A real single-node SLURM cluster (munged + slurmctld + slurmd) for tests.

Why: the ``gpu-cluster`` Snakemake profile is only trustworthy if real ``sbatch``
and ``squeue`` accept what the SLURM executor plugin generates from it. This
module starts a private SLURM on the test machine -- one node, two fake GPUs
on empty device files, no accounting database -- and hands tests a
:class:`SlurmCluster` with the client environment and small query helpers.

Use it from a test module with ``from slurm_cluster import slurm_cluster`` (several
modules may do so; they share one cluster) and run Snakemake with the environment of
:func:`gpu_profile_env` and the flags of :data:`FAST_POLL_ARGS`.

Everything (config, state, spool, logs, pid files, MUNGE socket and key) lives
under one directory (``$VLBICORE_SLURM_TEST_DIR`` or ``<tmp>/vlbicore-slurm-test``)
that is wiped at start; daemons left by an earlier crashed session are found
by their pid files (or by our config path in their command line) and stopped
first. A file lock keeps two pytest sessions from sharing the fixed ports.
If SLURM cannot be installed or started, the fixture skips with the exact
reason and the tail of the daemon log -- never silently.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import pytest

CTLD_PORT = 16817  # not SLURM's 6817/6818, so a real cluster on the host is untouched
SLURMD_PORT = 16818
PARTITION = "debug"  # the default partition
GPU_PARTITION = "gpu"  # same node, so tests can see which partition a job was sent to
CLUSTER_NAME = "vlbicoretest"
GPU_TYPE = "fake"  # gres type, so `--gpus=fake:1` (the plugin's gpu_model) is schedulable
N_FAKE_GPUS = 2
# The node advertises at least this many CPUs (SlurmdParameters=config_overrides),
# so jobs asking for the profile's cpus_per_gpu fit on a 2-core CI runner.
MIN_NODE_CPUS = 8
MIN_NODE_MEMORY_MB = 65536  # likewise for mem_mb requests (see node_memory_mb)
START_TIMEOUT_S = 20.0
LOCK_TIMEOUT_S = 120.0
DAEMONS = ("slurmd", "slurmctld", "munged")  # stop order: node first, munge last


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be installed or started here; the message says why."""


class SlurmJob(NamedTuple):
    """One row of ``squeue --states=all``."""

    job_id: str  # "12", or "12_3" for task 3 of array job 12
    state: str  # e.g. "COMPLETED"
    name: str  # "<prefix>_<run uuid>" for jobs submitted by the Snakemake plugin
    partition: str
    tres_per_job: str  # e.g. "gres:gpu:fake:1" after `--gpus=fake:1`; "N/A" if none
    tres_per_node: str  # e.g. "gres:gpu:1" after `--gres=gpu:1`; "N/A" if none

    @property
    def requested_gpu(self) -> bool:
        return "gpu" in self.tres_per_job or "gpu" in self.tres_per_node


def default_base_dir() -> Path:
    env_dir = os.environ.get("VLBICORE_SLURM_TEST_DIR")
    return Path(env_dir) if env_dir else Path(tempfile.gettempdir()) / "vlbicore-slurm-test"


# --------------------------------------------------------------------------- config text


def short_hostname() -> str:
    return socket.gethostname().split(".")[0]


def node_memory_mb() -> int:
    """Memory the node advertises: 90 % of MemTotal, but at least MIN_NODE_MEMORY_MB.

    With SlurmdParameters=config_overrides slurmd trusts this number, and with
    CR_Core memory is not a consumable, so the floor only lets jobs that ask for
    the profile's real-cluster memory be scheduled on a small CI runner.
    """
    meminfo = Path("/proc/meminfo").read_text()
    total_kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))
    return max(int(total_kb / 1024 * 0.9), MIN_NODE_MEMORY_MB)


def render_slurm_conf(
    root: Path, *, node: str, cpus: int, memory_mb: int, gpu_files: Sequence[Path]
) -> str:
    """slurm.conf for a sandboxed single node; every path lives under ``root``."""
    lines = [
        f"ClusterName={CLUSTER_NAME}",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={CTLD_PORT}",
        f"SlurmdPort={SLURMD_PORT}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root / 'munge' / 'munge.socket'}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'run' / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        # No cgroups in a container: a cgroup.conf or proctrack/cgroup stops slurmd.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "MpiDefault=none",
        # A cluster without an accounting database, like many small GPU clusters:
        # sacct is disabled, job state comes from squeue.
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "GresTypes=gpu",
        # Keep finished jobs visible to `squeue --states=all` (the plugin's squeue
        # status command and our assertions both need them).
        "MinJobAge=86400",
        "ReturnToService=2",
        "SlurmdParameters=config_overrides",
        "SchedulerType=sched/builtin",
        "InactiveLimit=0",
        "MailProg=/bin/true",
        "KillWait=5",
        (
            f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} "
            f"Gres=gpu:{GPU_TYPE}:{len(gpu_files)} State=UNKNOWN"
        ),
        f"PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
        f"PartitionName={GPU_PARTITION} Nodes={node} Default=NO MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


def render_gres_conf(*, node: str, gpu_files: Sequence[Path]) -> str:
    return "".join(
        f"NodeName={node} Name=gpu Type={GPU_TYPE} File={path}\n" for path in gpu_files
    )


# --------------------------------------------------------------------------- processes


def _process_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _terminate(pid: int, timeout_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if the process is still there after ``timeout_s``."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _is_zombie(pid: int) -> bool:
    try:
        return ") Z" in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True


def our_daemon_pids(root: Path) -> list[int]:
    """Pids of daemons started from ``root``: from pid files, plus any process whose
    command line names a file under ``root`` (daemons whose pid file is gone)."""
    pids: set[int] = set()
    for name in DAEMONS:
        pid_file = root / "run" / f"{name}.pid"
        try:
            pids.add(int(pid_file.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            pass
    marker = str(root) + "/"
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and marker in _process_cmdline(int(proc.name)):
            pids.add(int(proc.name))
    own = os.getpid()
    return sorted(
        pid for pid in pids
        if pid != own and any(d in _process_cmdline(pid) for d in DAEMONS)
    )


def stop_daemons(root: Path) -> None:
    for pid in our_daemon_pids(root):
        _terminate(pid)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _log_tail(path: Path, n_lines: int = 25) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return f"--- last lines of {path} ---\n" + "\n".join(lines[-n_lines:])


# --------------------------------------------------------------------------- installation


def ensure_slurm_installed() -> None:
    """apt-get install slurm-wlm + munge when slurmctld is missing (CI machines start bare)."""
    if all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "munged", "sbatch")):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("slurmctld is not installed and we are not root, so apt-get cannot install it")
    if not shutil.which("apt-get"):
        raise SlurmUnavailable("slurmctld is not installed and there is no apt-get to install slurm-wlm")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "slurm-wlm", "munge"]):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise SlurmUnavailable(f"`{' '.join(cmd)}` failed (exit {result.returncode}):\n{tail}")


# --------------------------------------------------------------------------- the cluster


@dataclass
class SlurmCluster:
    """A running private SLURM; pass ``env`` to every SLURM client or Snakemake call."""

    root: Path
    node: str
    partition: str
    gpu_partition: str
    gpu_type: str
    n_gpus: int
    env: dict[str, str] = field(repr=False)
    daemons: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a SLURM client command (``squeue``, ``scontrol``...) against this cluster."""
        return subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=30, check=check
        )

    def jobs(self) -> list[SlurmJob]:
        """All jobs the controller still knows, finished ones included (MinJobAge=1 day)."""
        # `-O field:|` appends "|" to a field without padding or truncating it.
        fields = "JobArrayID:|,State:|,Name:|,Partition:|,tres-per-job:|,tres-per-node:"
        out = self.run("squeue", "--states=all", "--noheader", "-O", fields).stdout
        return [
            SlurmJob(*(part.strip() for part in line.split("|", 5)))
            for line in out.splitlines() if line.strip()
        ]

    def job_details(self, job_id: str) -> dict[str, str]:
        """``scontrol show job -d -o`` as a dict: JobState, Partition, TimeLimit,
        MinMemoryNode, NumCPUs, TresPerJob, CpusPerTres, and JOB_GRES -- the GRES
        SLURM actually allocated (e.g. "gpu:fake:1"; "(null)" when none was)."""
        out = self.run("scontrol", "show", "job", "-d", "-o", str(job_id)).stdout
        return dict(re.findall(r"(\w[\w/:]*)=(\S*)", out))

    def log_tail(self, daemon: str, n_lines: int = 25) -> str:
        return _log_tail(self.root / "log" / f"{daemon}.log", n_lines)

    def node_state(self) -> str:
        """sinfo's state of the node ("idle", "mixed", "down"...)."""
        out = self.run("sinfo", "--noheader", f"--partition={self.partition}", "--format=%T",
                       check=False).stdout
        return out.strip()


def _client_env(root: Path) -> dict[str, str]:
    env = {
        key: value for key, value in os.environ.items()
        # Inherited job context or client defaults would redirect our commands.
        if not key.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SQUEUE_"))
    }
    env["SLURM_CONF"] = str(root / "slurm.conf")
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}"
    return env


def _write_srun_wrapper(root: Path) -> None:
    """An ``srun`` first on PATH that restores SLURM_CONF.

    Inside a job, snakemake-executor-plugin-slurm-jobstep (0.6.1) launches the rule
    with a nested ``srun`` after deleting every SLURM_* variable but the job ids,
    SLURM_CONF included. Real clusters keep slurm.conf where srun finds it without
    the variable (/etc/slurm or configless); this private cluster must not write
    into /etc, so srun gets its config path back here.
    """
    real_srun = shutil.which("srun")
    if real_srun is None:
        raise SlurmUnavailable("srun is not on PATH although slurm-wlm is installed")
    wrapper = root / "bin" / "srun"
    wrapper.write_text(
        f'#!/bin/sh\nSLURM_CONF="${{SLURM_CONF:-{root / "slurm.conf"}}}" exec {real_srun} "$@"\n'
    )
    wrapper.chmod(0o755)


def _write_munge_key(path: Path) -> None:
    path.write_bytes(os.urandom(1024))
    path.chmod(0o400)


def _spawn(name: str, cmd: list[str], root: Path, env: dict[str, str]) -> subprocess.Popen:
    # Own session: a Ctrl-C in pytest must not kill the daemons before teardown.
    with open(root / "log" / f"{name}.stdio", "ab") as stdio:
        return subprocess.Popen(
            cmd, env=env, stdout=stdio, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _wait_for(predicate, timeout_s: float, what: str, cluster_root: Path,
              daemons: dict[str, subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, proc in daemons.items():
            if proc.poll() is not None:
                raise SlurmUnavailable(
                    f"{name} exited with code {proc.returncode} while waiting for {what}\n"
                    + _log_tail(cluster_root / "log" / f"{name}.log")
                    + "\n" + _log_tail(cluster_root / "log" / f"{name}.stdio")
                )
        if predicate():
            return
        time.sleep(0.2)
    raise SlurmUnavailable(
        f"timed out after {timeout_s:.0f} s waiting for {what}\n"
        + "\n".join(_log_tail(cluster_root / "log" / f"{d}.log") for d in daemons)
    )


def start_cluster(root: Path | None = None, timeout_s: float = START_TIMEOUT_S) -> SlurmCluster:
    """Start munged, slurmctld and slurmd under ``root``; return once the node is idle.

    Raises :class:`SlurmUnavailable` with the daemon log tail if anything fails.
    """
    root = Path(root) if root else default_base_dir()
    ensure_slurm_installed()
    stop_daemons(root)  # leftovers of a crashed earlier session
    for port in (CTLD_PORT, SLURMD_PORT):
        if not _port_is_free(port):
            raise SlurmUnavailable(f"TCP port {port} is taken by a process we did not start")
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("state", "spool", "log", "run", "munge", "gpus", "bin"):
        (root / sub).mkdir(parents=True)
    (root / "munge").chmod(0o700)  # munged refuses group/world-writable socket dirs

    node = short_hostname()
    gpu_files = [root / "gpus" / f"gpu{i}" for i in range(N_FAKE_GPUS)]
    for path in gpu_files:
        path.touch()
    cpus = max(os.cpu_count() or 1, MIN_NODE_CPUS)
    (root / "slurm.conf").write_text(
        render_slurm_conf(root, node=node, cpus=cpus, memory_mb=node_memory_mb(), gpu_files=gpu_files)
    )
    (root / "gres.conf").write_text(render_gres_conf(node=node, gpu_files=gpu_files))
    _write_munge_key(root / "munge" / "munge.key")
    _write_srun_wrapper(root)

    env = _client_env(root)
    cluster = SlurmCluster(root=root, node=node, partition=PARTITION,
                           gpu_partition=GPU_PARTITION, gpu_type=GPU_TYPE,
                           n_gpus=N_FAKE_GPUS, env=env)
    munge = root / "munge"
    try:
        cluster.daemons["munged"] = _spawn("munged", [
            "munged", "--foreground", "--force",
            f"--socket={munge / 'munge.socket'}", f"--key-file={munge / 'munge.key'}",
            f"--pid-file={root / 'run' / 'munged.pid'}", f"--log-file={root / 'log' / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        ], root, env)
        _wait_for(lambda: (munge / "munge.socket").exists(), timeout_s, "the MUNGE socket",
                  root, cluster.daemons)
        cluster.daemons["slurmctld"] = _spawn(
            "slurmctld", ["slurmctld", "-D", "-i", "-f", str(cluster.conf)], root, env)
        _wait_for(lambda: cluster.run("scontrol", "ping", check=False).stdout.count("UP") > 0,
                  timeout_s, "slurmctld to answer `scontrol ping`", root, cluster.daemons)
        cluster.daemons["slurmd"] = _spawn(
            "slurmd", ["slurmd", "-D", "-f", str(cluster.conf), "-N", node], root, env)
        _wait_for(lambda: cluster.node_state() == "idle", timeout_s,
                  f"node {node} to be idle in sinfo", root, cluster.daemons)
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def stop_cluster(cluster: SlurmCluster) -> None:
    """Cancel leftover jobs (their slurmstepd would outlive slurmd), then stop the daemons."""
    if cluster.daemons.get("slurmctld") is not None and cluster.daemons["slurmctld"].poll() is None:
        try:
            cluster.run("scancel", f"--user={os.getuid()}", check=False)
        except subprocess.TimeoutExpired:
            pass
    for name in DAEMONS:
        proc = cluster.daemons.get(name)
        if proc is not None and proc.poll() is None:
            _terminate(proc.pid)
            proc.wait(timeout=10)
    stop_daemons(cluster.root)  # anything that forked away from our Popen handles


def _acquire_session_lock(root: Path):
    """Exclusive for the session: the ports and ``root`` are fixed, so two pytest
    sessions must take turns. The kernel drops the lock if this process dies."""
    lock_path = root.parent / f"{root.name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "w")
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                raise SlurmUnavailable(
                    f"another test session holds {lock_path} (its SLURM uses ports "
                    f"{CTLD_PORT}/{SLURMD_PORT}) for more than {LOCK_TIMEOUT_S:.0f} s"
                )
            time.sleep(1)


# One cluster per pytest process even if several test modules import the fixture
# (each import registers its own session-scoped FixtureDef). The first one set up
# owns the daemons; session fixtures tear down in reverse order, so it stops last.
_session_cluster: SlurmCluster | None = None


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A running single-node SLURM with 2 fake GPUs for the whole test session."""
    global _session_cluster
    if _session_cluster is not None:
        yield _session_cluster
        return

    root = default_base_dir()
    try:
        lock = _acquire_session_lock(root)
    except SlurmUnavailable as exc:
        pytest.skip(f"local SLURM unavailable: {exc}")
    try:
        try:
            cluster = start_cluster(root)
        except SlurmUnavailable as exc:
            pytest.skip(f"local SLURM unavailable: {exc}")
        _session_cluster = cluster
        try:
            yield cluster
        finally:
            _session_cluster = None
            stop_cluster(cluster)
    finally:
        lock.close()


# --------------------------------------------------------------------------- Snakemake


# Command-line overrides for tests: poll job states 1 s after submission instead of
# 40 s and every 2 s instead of 10 s (a private single-node SLURM, not a shared
# controller), and wait at most 5 s for outputs (local disk, not NFS).
FAST_POLL_ARGS = ("--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
                  "--latency-wait", "5")


def gpu_profile_env(cluster: SlurmCluster) -> dict[str, str]:
    """``cluster.env`` plus what a user of this cluster exports for profiles/gpu-cluster:
    CPU and GPU partitions and the GPU type. No VLBICORE_SLURM_ACCOUNT: a cluster
    without slurmdbd has no accounts to check."""
    return {
        **cluster.env,
        "VLBICORE_SLURM_PARTITION": cluster.partition,
        "VLBICORE_SLURM_GPU_PARTITION": cluster.gpu_partition,
        "VLBICORE_SLURM_GPU_MODEL": cluster.gpu_type,
    }
