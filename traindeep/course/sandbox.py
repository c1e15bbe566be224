"""Run code we do not trust: its own namespaces and uid, a bare filesystem, limits it cannot lift.

What a sandboxed process sees: the Python installation and its packages and
the `traindeep` package, read-only; its own empty work folder, `/tmp` and
`/dev/shm`, each a small RAM disk that vanishes with it; its own `/proc`, in
which no process outside the run exists; no network. It gets its input on
stdin and gives its result on stdout, so nothing it writes lands on the host.

Two modes, by who runs the grader:

* **root**: bubblewrap unshares the PID, IPC, network, UTS and cgroup
  namespaces, then `setpriv` switches to a uid of the run's own (no account
  has it), clears every capability and sets no_new_privs. Cgroups of the run's
  own cap its memory (RAM disks included), its process count and its CPU (one
  core), and measure its CPU time, which is what its time limit counts.
* **any other user**: `bwrap --unshare-all` (a user namespace) with the
  caller's uid and no capabilities. Memory is watched from outside (the process
  tree's resident size) and the RAM disks are size-capped; without a cgroup the
  process count is capped only by the user's own limits.

In both modes a seccomp filter (x86-64) fails the system calls a run has no
use for and that reach beyond it: the kernel keyrings (a channel between runs
that would outlive them), mounts and namespaces, ptrace, BPF, kernel modules,
io_uring and the like, the set Docker's default profile blocks. The run cannot
outlive its namespace: when its first process ends or is killed, the kernel
kills everything else in it.
"""

from __future__ import annotations

import fcntl
import functools
import os
import pwd
import shutil
import stat
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

PACKAGE = Path(__file__).resolve().parents[1]  # the traindeep folder
PACKAGE_MOUNT = "/opt/traindeep"  # PYTHONPATH inside: only the package, not the repository around it
WORK = "/sandbox"
# Root mode: one uid per concurrent run, skipping any that has an account. The range is one systemd leaves
# unused (above its container ranges, below the foreign-uid range), so no dynamic service user is swept.
UID_POOL = range(1_900_000_000, 1_900_001_000)
WITHHELD = Path(__file__).resolve().parent / "withheld.py"  # bound over a module a lab forbids
ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "fonts", "localtime", "nsswitch.conf", "passwd", "group")


@dataclass(frozen=True)
class Limits:
    timeout: float = 600.0  # seconds for the whole run
    memory_gb: float = 4.0  # resident memory of all its processes (and, with a cgroup, its RAM disks)
    processes: int = 256
    file_mb: int = 512  # largest single file
    disk_mb: int = 256  # each of the work folder and /tmp
    shm_mb: int = 64
    output_mb: int = 64  # stdout read back; a run that writes more is stopped
    cpus: float = 1.0  # cores a run may use at once (root mode, with a cpu cgroup)


@dataclass
class Completed:
    stdout: bytes
    stderr: str  # the last 64 KB
    returncode: int | None
    killed: str | None  # "time" (CPU time, or wall time where none is measured), "wall", "memory", "output", None
    seconds: float
    cpu_seconds: float | None = None  # CPU time of all its processes, where a cgroup measures it


class SandboxUnavailable(RuntimeError):
    """bwrap is missing or does not work here."""


def _python_paths() -> list[Path]:
    """Host folders the interpreter and its packages need, outermost first, none inside another."""
    import site

    candidates = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    candidates.add(Path(os.path.realpath(sys.executable)).parent.parent)
    candidates |= {Path(p).resolve() for p in site.getsitepackages() if Path(p).exists()}
    kept: list[Path] = []
    for path in sorted(candidates, key=lambda p: len(p.parts)):
        if path == Path("/usr") or Path("/usr") in path.parents or any(k == path or k in path.parents for k in kept):
            continue
        kept.append(path)
    return kept


def exposed_paths() -> list[Path]:
    """Every host folder a sandboxed run can read; the grader refuses solutions or submissions inside one."""
    etc = [Path("/etc", name) for name in ETC if Path("/etc", name).exists()]
    return [Path("/usr"), *_python_paths(), PACKAGE, *etc]


def _filesystem(limits: Limits, hide=()) -> list[str]:
    # The RAM disks come first, so that read-only binds can sit on top of them: a checkout (and its
    # .venv) under /tmp, as in a CI clone made with mktemp, stays visible.
    args = ["--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", str(limits.shm_mb << 20), "--tmpfs", "/dev/shm",
            "--perms", "1777", "--size", str(limits.disk_mb << 20), "--tmpfs", "/tmp",
            "--perms", "0777", "--size", str(limits.disk_mb << 20), "--tmpfs", WORK]
    made = {"/", "/proc", "/dev", "/dev/shm", "/tmp", WORK}

    def parents(target: str):
        for parent in reversed(Path(target).parents):
            if str(parent) not in made:
                args.extend(["--perms", "0755", "--dir", str(parent)])
                made.add(str(parent))

    args += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/", name)
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
    for path in _python_paths():
        parents(str(path))
        args += ["--ro-bind", str(path), str(path)]
    parents(PACKAGE_MOUNT + "/traindeep")
    args += ["--ro-bind", str(PACKAGE), PACKAGE_MOUNT + "/traindeep"]
    for module in hide:  # a module file of the package this run must not have, e.g. "probes.py"
        if (PACKAGE / module).is_file() and ".." not in Path(module).parts:
            args += ["--ro-bind", str(WITHHELD), f"{PACKAGE_MOUNT}/traindeep/{module}"]
    for name in ETC:
        if Path("/etc", name).exists():
            parents(f"/etc/{name}")
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    return args + ["--remount-ro", "/", "--chdir", WORK]


def _environment(extra: dict | None) -> list[str]:
    env = {"HOME": WORK, "USER": "student", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
           "PYTHONPATH": PACKAGE_MOUNT, "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": "/tmp",
           "JUPYTER_RUNTIME_DIR": f"{WORK}/.runtime", "JUPYTER_CONFIG_DIR": f"{WORK}/.jupyter",
           "IPYTHONDIR": f"{WORK}/.ipython", "MPLCONFIGDIR": f"{WORK}/.mpl",
           "TQDM_DISABLE": "1", "CUDA_VISIBLE_DEVICES": "",
           # One thread per run: the grader's workers already use every core.
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **(extra or {})}
    args = ["--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args


@functools.cache
def mode() -> str | None:
    """'root', 'user' (an unprivileged user namespace), or None when bwrap is missing or fails here."""
    if not shutil.which("bwrap") or not shutil.which("setpriv"):
        return None
    wanted = "root" if os.geteuid() == 0 else "user"
    filter_fd = _seccomp_fd()
    try:
        probe = _command(["/usr/bin/true"], Limits(), wanted, uid=next(_free_uids()) if wanted == "root" else None,
                         seccomp_fd=filter_fd)
        ok = subprocess.run(probe, capture_output=True, timeout=30,
                            pass_fds=(filter_fd,) if filter_fd is not None else ()).returncode == 0
    except (OSError, subprocess.TimeoutExpired, RuntimeError):
        ok = False
    finally:
        if filter_fd is not None:
            os.close(filter_fd)
    return wanted if ok else None


def describe() -> str:
    """One paragraph on what isolation this machine gives a run (for the grader's output)."""
    which = mode()
    if which is None:
        return ("NO SANDBOX: bwrap (bubblewrap) is missing or cannot create namespaces here. Student code would "
                "run as you, see your files, reach the network and other students' runs.")
    roots = _cgroup_roots() if which == "root" else {}
    cgroup = ("cgroups cap memory and processes" + (", and CPU at one core, counted as the time limit"
                                                   if {"cpu", "cpuacct"} <= set(roots) else "")) if roots else \
        "memory is watched from outside; no cgroup caps the process count"
    syscalls = "a seccomp filter" if _SECCOMP_ARCH else "NO seccomp filter (not x86-64)"
    who = "a uid of its own with no capabilities" if which == "root" else "your uid inside a user namespace"
    return (f"sandbox: bubblewrap namespaces, {who}, {syscalls}, read-only Python and package, private RAM disks; "
            f"{cgroup}.")


def _command(argv, limits: Limits, which: str, uid: int | None, env: dict | None = None, hide=(),
             seccomp_fd: int | None = None) -> list[str]:
    namespaces = (["--unshare-pid", "--unshare-ipc", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
                  if which == "root" else ["--unshare-all", "--cap-drop", "ALL"])
    command = ["bwrap", *namespaces, "--new-session", "--die-with-parent", *_filesystem(limits, hide),
               *_environment(env)]
    if seccomp_fd is not None:
        command += ["--seccomp", str(seccomp_fd)]
    rlimits = [f"--fsize={limits.file_mb << 20}", "--core=0", "--nofile=1024"]
    if which == "root":
        rlimits.append(f"--nproc={limits.processes}")  # counted per uid, and the uid is the run's own
        command += ["--", "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    return command + ["--", "prlimit", *rlimits, "--", *argv]


# -- seccomp ------------------------------------------------------------------------------------------

_SECCOMP_ARCH = {"x86_64": 0xC000003E}.get(os.uname().machine)  # AUDIT_ARCH_X86_64; other machines get none
# x86-64 numbers of the system calls a run may not make (asm/unistd_64.h): Docker's default profile's set,
# the kernel keyrings first.
BLOCKED_SYSCALLS = {
    "add_key": 248, "request_key": 249, "keyctl": 250, "acct": 163, "bpf": 321, "clock_adjtime": 305,
    "clock_settime": 227, "settimeofday": 164, "create_module": 174, "delete_module": 176, "finit_module": 313,
    "init_module": 175, "get_kernel_syms": 177, "query_module": 178, "iopl": 172, "ioperm": 173, "kcmp": 312,
    "kexec_file_load": 320, "kexec_load": 246, "lookup_dcookie": 212, "mount": 165, "umount2": 166,
    "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "nfsservctl": 180, "perf_event_open": 298,
    "fanotify_init": 300, "pivot_root": 155, "process_vm_readv": 310, "process_vm_writev": 311, "ptrace": 101,
    "quotactl": 179, "reboot": 169, "setns": 308, "unshare": 272, "swapon": 167, "swapoff": 168, "sysfs": 139,
    "_sysctl": 156, "uselib": 134, "userfaultfd": 323, "ustat": 136, "vhangup": 153, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427,
}
CLONE, CLONE3 = 56, 435
CLONE_NEW_NAMESPACES = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET


def seccomp_filter() -> bytes:
    """The classic-BPF program bubblewrap installs (`--seccomp FD`): EPERM for BLOCKED_SYSCALLS, for clone
    with a new-namespace flag and for any other ABI (x32, i386); ENOSYS for clone3, whose flags a filter
    cannot read (the C library then falls back to clone); everything else allowed."""
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38

    def op(code, k, jt=0, jf=0):
        return (code, jt, jf, k)

    blocked = sorted(BLOCKED_SYSCALLS.values())
    # Layout: [arch check][number checks][clone flags][allow][eperm][enosys]; jumps count forward from the next op.
    body = [op(ld, 4), None, op(ld, 0), None] + [None] * len(blocked) + [None, None, op(ld, 16), None,
                                                                          op(ret, allow)]
    allow_at = len(body) - 1
    eperm_at, enosys_at = allow_at + 1, allow_at + 2
    body[1] = op(jeq, _SECCOMP_ARCH, 0, eperm_at - 2)
    body[3] = op(jge, 0x40000000, eperm_at - 4, 0)  # the x32 ABI's numbers
    for i, number in enumerate(blocked):
        at = 4 + i
        body[at] = op(jeq, number, eperm_at - at - 1, 0)
    at = 4 + len(blocked)
    body[at] = op(jeq, CLONE3, enosys_at - at - 1, 0)
    body[at + 1] = op(jeq, CLONE, 0, allow_at - at - 2)
    body[at + 3] = op(jset, CLONE_NEW_NAMESPACES, eperm_at - at - 4, 0)  # args[0], low 32 bits
    body += [op(ret, eperm), op(ret, enosys)]
    return b"".join(struct.pack("<HBBI", *instruction) for instruction in body)


def _seccomp_fd() -> int | None:
    """A file descriptor holding the filter for bubblewrap to read, or None where there is no filter."""
    if _SECCOMP_ARCH is None:
        return None
    fd = os.memfd_create("traindeep-seccomp", 0)
    os.write(fd, seccomp_filter())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


# -- cgroups (root mode) ------------------------------------------------------------------------------

@functools.cache
def _cgroup_roots() -> dict[str, Path]:
    """{'memory': folder, 'pids': folder, and 'cpu', 'cpuacct' where they can be used} under which a run's
    cgroups can be made (cgroup v1), or {} without memory and pids."""
    if os.geteuid() != 0:
        return {}
    roots = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in ("memory", "pids", "cpu", "cpuacct"):
            folder = Path("/sys/fs/cgroup", name) / path.lstrip("/")
            if name in controllers.split(",") and (folder / "cgroup.procs").exists():
                roots[name] = folder
    for name, folder in list(roots.items()):  # usable only if we can make a child here
        try:
            probe = folder / f"traindeep-probe-{os.getpid()}"
            probe.mkdir(exist_ok=True)
            probe.rmdir()
        except OSError:
            del roots[name]
    if not {"memory", "pids"} <= set(roots):
        return {}
    if not {"cpu", "cpuacct"} <= set(roots):
        roots.pop("cpu", None)
        roots.pop("cpuacct", None)
    return roots


def _make_cgroups(name: str, limits: Limits) -> list[Path]:
    """The run's cgroups (memory, pids, then cpu and cpuacct where available; one folder where two
    controllers share a hierarchy), made and limited; [] when they cannot be."""
    roots = _cgroup_roots()
    if not roots:
        return []
    groups = list(dict.fromkeys(root / name for root in roots.values()))
    try:
        for group in groups:
            group.mkdir()
        memory = roots["memory"] / name
        (memory / "memory.limit_in_bytes").write_text(str(int(limits.memory_gb * 2**30)))
        if (memory / "memory.memsw.limit_in_bytes").exists():
            (memory / "memory.memsw.limit_in_bytes").write_text(str(int(limits.memory_gb * 2**30)))
        (roots["pids"] / name / "pids.max").write_text(str(limits.processes))
        if "cpu" in roots:
            cpu = roots["cpu"] / name
            period = int((cpu / "cpu.cfs_period_us").read_text())
            (cpu / "cpu.cfs_quota_us").write_text(str(max(1000, int(limits.cpus * period))))
    except OSError:
        _remove_cgroups(groups)
        return []
    return groups


def _cpu_seconds(groups: list[Path]) -> float | None:
    """CPU time used so far by every process of the run (its cpuacct cgroup), None where none measures it."""
    for group in groups:
        usage = group / "cpuacct.usage"
        if usage.exists():
            try:
                return int(usage.read_text()) / 1e9
            except (OSError, ValueError):
                return None
    return None


def _cgroup_oom(groups: list[Path]) -> bool:
    for group in groups:
        control = group / "memory.oom_control"
        if control.exists():
            fields = dict(line.split() for line in control.read_text().splitlines() if len(line.split()) == 2)
            if int(fields.get("oom_kill", 0)) > 0:  # failcnt would also count page-cache reclaim
                return True
    return False


def _remove_cgroups(groups: list[Path]) -> None:
    for group in groups:
        for _ in range(50):
            try:
                pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
            except OSError:
                break
            for pid in pids:
                _kill_pid(pid)
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.02)


# -- uids (root mode) ---------------------------------------------------------------------------------

# One lock file per uid, shared by every grader on the machine. Under /run, which only root may write to
# (unlike /run/lock): no other account can make this folder first, or put a link in it.
UID_LOCKS = Path("/run/traindeep-sandbox")


def _lock_folder() -> int:
    """An open descriptor of UID_LOCKS, made if missing; refused unless it is root's own private folder."""
    try:
        UID_LOCKS.mkdir(mode=0o700)
    except FileExistsError:
        pass
    try:
        folder = os.open(UID_LOCKS, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as error:
        raise SandboxUnavailable(f"the uid lock folder {UID_LOCKS} cannot be opened safely ({error.strerror}: "
                                 "a link or not a folder); remove it and grade again") from None
    info = os.fstat(folder)
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        os.close(folder)
        raise SandboxUnavailable(f"the uid lock folder {UID_LOCKS} belongs to uid {info.st_uid} with mode "
                                 f"{stat.S_IMODE(info.st_mode):o}; it must be root's, mode 700. Another account "
                                 "may have made it to block grading: remove it and grade again")
    return folder


class _UidLease:
    """A uid of the pool that no other run holds, in this process or any other (two graders, two test
    workers): an exclusive flock on the uid's lock file, released by the kernel if the holder dies."""

    def __init__(self):
        folder = _lock_folder()
        try:
            for uid in _free_uids():
                handle = os.open(str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600, dir_fd=folder)
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(handle)
                    continue
                self.uid, self._handle = uid, handle
                return
        finally:
            os.close(folder)
        raise SandboxUnavailable(f"no free uid: every uid of the pool {UID_POOL.start}-{UID_POOL.stop - 1} is "
                                 f"held by another run (lock files in {UID_LOCKS}); grade with fewer workers")

    def release(self):
        os.close(self._handle)  # closing drops the flock


def leased(uid: int) -> bool:
    """Whether a run (of any process on this machine) holds `uid` now."""
    try:
        handle = os.open(UID_LOCKS / str(uid), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(handle)


def _free_uids():
    for uid in UID_POOL:
        try:
            pwd.getpwuid(uid)  # an account has it: never borrow (or sweep) a real user's uid
        except KeyError:
            yield uid


def _sweep_uid(uid: int) -> None:
    """Kill anything left running as a run's uid (nothing should be: its namespace is gone)."""
    for process in psutil.process_iter(["uids"]):
        try:
            if process.info["uids"] and uid in (process.info["uids"].real, process.info["uids"].effective):
                process.kill()
        except psutil.Error:
            pass


def _kill_pid(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except OSError:
        pass


# -- running ------------------------------------------------------------------------------------------

def run(argv: list[str], stdin, limits: Limits, sandbox: bool = True, env: dict | None = None,
        hide=()) -> Completed:
    """Run `argv` (inside the sandbox unless `sandbox` is False), feed it `stdin`, watch its limits.

    `stdin` is bytes, or an iterable of bytes that may block between chunks (the judge gets its
    helper cells at once and its tasks when the student's run has ended). `hide` names module files
    of the package (`probes.py`) the run gets a placeholder for instead.
    """
    which = mode() if sandbox else None
    if sandbox and which is None:
        raise SandboxUnavailable(describe())
    uid, lease, groups, filter_fd = None, None, [], None
    if which == "root":
        lease = _UidLease()
        uid = lease.uid
        _sweep_uid(uid)
        groups = _make_cgroups(f"traindeep-{uid}-{os.getpid()}", limits)
    try:
        if which:
            filter_fd = _seccomp_fd()
            command = _command(argv, limits, which, uid, env, hide, filter_fd)
            if groups:  # join the run's cgroups before bwrap starts, so every process it makes is inside
                join = " && ".join(f"echo $$ > {g / 'cgroup.procs'}" for g in groups)
                command = ["/bin/sh", "-c", join + ' && exec "$@"', "sh", *command]
        else:
            command = list(argv)
        return _watch(command, stdin, limits, groups, env if not which else None,
                      (filter_fd,) if filter_fd is not None else ())
    finally:
        if filter_fd is not None:
            os.close(filter_fd)
        if groups:
            _remove_cgroups(groups)
        if lease is not None:
            _sweep_uid(uid)
            lease.release()


def _watch(command, stdin: bytes, limits: Limits, groups, plain_env, pass_fds=()) -> Completed:
    env = None if plain_env is None else {**os.environ, **plain_env}
    start = time.monotonic()
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, start_new_session=True, pass_fds=pass_fds)
    cap = limits.output_mb << 20
    out, err = bytearray(), bytearray()
    overflow = threading.Event()

    def feed():
        try:
            for chunk in [stdin] if isinstance(stdin, bytes) else stdin:
                process.stdin.write(chunk)
                process.stdin.flush()
            process.stdin.close()
        except OSError:  # the run stopped reading
            pass

    def drain(stream, buffer, limit, keep_tail):
        while chunk := stream.read(1 << 16):
            buffer.extend(chunk)
            if len(buffer) > limit:
                if not keep_tail:
                    overflow.set()
                    return
                del buffer[:len(buffer) - limit]

    threads = [threading.Thread(target=feed, daemon=True),
               threading.Thread(target=drain, args=(process.stdout, out, cap, False), daemon=True),
               threading.Thread(target=drain, args=(process.stderr, err, 1 << 16, True), daemon=True)]
    for thread in threads:
        thread.start()
    killed = None
    root = psutil.Process(process.pid)
    counted = _cpu_seconds(groups) is not None
    while process.poll() is None:
        # With a cpuacct cgroup the limit counts the run's CPU time, so a run slowed by others is not cut
        # short; a run that waits rather than computes is stopped at twice the limit in wall time.
        wall = time.monotonic() - start
        if counted and (_cpu_seconds(groups) or 0.0) > limits.timeout:
            killed = "time"
        elif wall > limits.timeout * (2 if counted else 1):
            killed = "wall" if counted else "time"
        elif overflow.is_set():
            killed = "output"
        elif not groups and _tree_pss(root) > limits.memory_gb * 2**30:  # a cgroup caps it in the kernel
            killed = "memory"
        if killed:
            _kill_tree(process, root)
            break
        time.sleep(0.05)
    _kill_tree(process, root)  # the namespace is gone once its first process is; this catches the rest
    for thread in threads[1:]:
        thread.join(timeout=5)
    if killed is None and _cgroup_oom(groups):
        killed = "memory"
    return Completed(bytes(out), err.decode("utf-8", "replace"), process.returncode, killed,
                     time.monotonic() - start, _cpu_seconds(groups))


def _tree_pss(root) -> int:
    """Proportional set size of the process tree: shared pages (a fork's) are not counted twice."""
    total = 0
    try:
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in tree:
        try:
            total += p.memory_full_info().pss
        except psutil.Error:
            pass
    return total


def _kill_tree(process, root) -> None:
    try:
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        tree = []
    for p in tree:
        try:
            p.kill()
        except psutil.Error:
            pass
    try:
        os.killpg(process.pid, 9)
    except OSError:
        pass
    process.wait()
