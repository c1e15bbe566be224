"""Run code we do not trust: its own namespaces and uid, a bare filesystem, limits it cannot lift.

What a sandboxed process sees: the Python installation and its packages and
the `traindeep` package, read-only; its own empty work folder, `/tmp` and
`/dev/shm`, each a small RAM disk that vanishes with it; its own `/proc`, in
which no process outside the run exists; no network. It gets its input on
stdin and gives its result on stdout, so nothing it writes lands on the host.

Two modes, by who runs the grader:

* **root**: bubblewrap unshares the PID, IPC, network, UTS and cgroup
  namespaces, then `setpriv` switches to a uid of the run's own (no account
  has it), clears every capability and sets no_new_privs. A cgroup of the run's
  own caps its memory (RAM disks included) and its process count.
* **any other user**: `bwrap --unshare-all` (a user namespace) with the
  caller's uid and no capabilities. Memory is watched from outside (the process
  tree's resident size) and the RAM disks are size-capped; without a cgroup the
  process count is capped only by the user's own limits.

In both modes the run cannot outlive its namespace: when its first process
ends or is killed, the kernel kills everything else in it.
"""

from __future__ import annotations

import fcntl
import functools
import os
import pwd
import shutil
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
UID_POOL = range(61000, 62000)  # root mode: one uid per concurrent run, skipping any that has an account
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


@dataclass
class Completed:
    stdout: bytes
    stderr: str  # the last 64 KB
    returncode: int | None
    killed: str | None  # "time", "memory", "output" or None
    seconds: float


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


def _filesystem(limits: Limits) -> list[str]:
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
    try:
        probe = _command(["/usr/bin/true"], Limits(), wanted, uid=next(_free_uids()) if wanted == "root" else None)
        ok = subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired, RuntimeError):
        ok = False
    return wanted if ok else None


def describe() -> str:
    """One paragraph on what isolation this machine gives a run (for the grader's output)."""
    which = mode()
    if which is None:
        return ("NO SANDBOX: bwrap (bubblewrap) is missing or cannot create namespaces here. Student code would "
                "run as you, see your files, reach the network and other students' runs.")
    cgroup = "a cgroup caps memory and processes" if which == "root" and _cgroup_roots() else \
        "memory is watched from outside; no cgroup caps the process count"
    who = "a uid of its own with no capabilities" if which == "root" else "your uid inside a user namespace"
    return f"sandbox: bubblewrap namespaces, {who}, read-only Python and package, private RAM disks; {cgroup}."


def _command(argv, limits: Limits, which: str, uid: int | None, env: dict | None = None) -> list[str]:
    namespaces = (["--unshare-pid", "--unshare-ipc", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
                  if which == "root" else ["--unshare-all", "--cap-drop", "ALL"])
    command = ["bwrap", *namespaces, "--new-session", "--die-with-parent", *_filesystem(limits), *_environment(env)]
    rlimits = [f"--fsize={limits.file_mb << 20}", "--core=0", "--nofile=1024"]
    if which == "root":
        rlimits.append(f"--nproc={limits.processes}")  # counted per uid, and the uid is the run's own
        command += ["--", "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    return command + ["--", "prlimit", *rlimits, "--", *argv]


# -- cgroups (root mode) ------------------------------------------------------------------------------

@functools.cache
def _cgroup_roots() -> dict[str, Path]:
    """{'memory': folder, 'pids': folder} under which a run's cgroups can be made (cgroup v1), or {}."""
    if os.geteuid() != 0:
        return {}
    roots = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in ("memory", "pids"):
            folder = Path("/sys/fs/cgroup", name) / path.lstrip("/")
            if name in controllers.split(",") and (folder / "cgroup.procs").exists():
                roots[name] = folder
    try:  # usable only if we can make a child here
        for folder in roots.values():
            probe = folder / f"traindeep-probe-{os.getpid()}"
            probe.mkdir(exist_ok=True)
            probe.rmdir()
    except OSError:
        return {}
    return roots if set(roots) == {"memory", "pids"} else {}


def _make_cgroups(name: str, limits: Limits) -> list[Path]:
    roots = _cgroup_roots()
    if not roots:
        return []
    memory, pids = roots["memory"] / name, roots["pids"] / name
    try:
        memory.mkdir()
        pids.mkdir()
        (memory / "memory.limit_in_bytes").write_text(str(int(limits.memory_gb * 2**30)))
        if (memory / "memory.memsw.limit_in_bytes").exists():
            (memory / "memory.memsw.limit_in_bytes").write_text(str(int(limits.memory_gb * 2**30)))
        (pids / "pids.max").write_text(str(limits.processes))
    except OSError:
        _remove_cgroups([memory, pids])
        return []
    return [memory, pids]


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

UID_LOCKS = Path("/run/lock/traindeep-sandbox")  # one lock file per uid, shared by every grader on the machine


class _UidLease:
    """A uid of the pool that no other run holds, in this process or any other (two graders, two test
    workers): an exclusive flock on the uid's lock file, released by the kernel if the holder dies."""

    def __init__(self):
        UID_LOCKS.mkdir(mode=0o700, parents=True, exist_ok=True)
        for uid in _free_uids():
            handle = os.open(UID_LOCKS / str(uid), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(handle)
                continue
            self.uid, self._handle = uid, handle
            return
        raise RuntimeError(f"no free uid in {UID_POOL.start}-{UID_POOL.stop - 1}")

    def release(self):
        os.close(self._handle)  # closing drops the flock


def leased(uid: int) -> bool:
    """Whether a run (of any process on this machine) holds `uid` now."""
    try:
        handle = os.open(UID_LOCKS / str(uid), os.O_RDONLY)
    except FileNotFoundError:
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

def run(argv: list[str], stdin, limits: Limits, sandbox: bool = True, env: dict | None = None) -> Completed:
    """Run `argv` (inside the sandbox unless `sandbox` is False), feed it `stdin`, watch its limits.

    `stdin` is bytes, or an iterable of bytes that may block between chunks (the judge gets its
    helper cells at once and its tasks when the student's run has ended).
    """
    which = mode() if sandbox else None
    if sandbox and which is None:
        raise SandboxUnavailable(describe())
    uid, lease, groups = None, None, []
    if which == "root":
        lease = _UidLease()
        uid = lease.uid
        _sweep_uid(uid)
        groups = _make_cgroups(f"traindeep-{uid}-{os.getpid()}", limits)
    try:
        if which:
            command = _command(argv, limits, which, uid, env)
            if groups:  # join the run's cgroups before bwrap starts, so every process it makes is inside
                join = " && ".join(f"echo $$ > {g / 'cgroup.procs'}" for g in groups)
                command = ["/bin/sh", "-c", join + ' && exec "$@"', "sh", *command]
        else:
            command = list(argv)
        return _watch(command, stdin, limits, groups, env if not which else None)
    finally:
        if groups:
            _remove_cgroups(groups)
        if lease is not None:
            _sweep_uid(uid)
            lease.release()


def _watch(command, stdin: bytes, limits: Limits, groups, plain_env) -> Completed:
    env = None if plain_env is None else {**os.environ, **plain_env}
    start = time.monotonic()
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, start_new_session=True)
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
    while process.poll() is None:
        if time.monotonic() - start > limits.timeout:
            killed = "time"
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
                     time.monotonic() - start)


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
