"""The program that sets up a run inside its namespaces (mounts, rlimits, uid drop), then starts
the untrusted code. It runs as ``python -I -S -c INIT_SCRIPT cfg``: stdlib only, no
site-packages, so it is kept as text."""

__all__ = ["INIT_SCRIPT"]

INIT_SCRIPT = r"""
import ctypes, json, os, resource, shutil, sys

cfg = json.loads(sys.argv[1])
status = cfg["status_fd"]

def say(**obj):
    os.write(status, (json.dumps(obj) + "\n").encode())

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_char_p]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE = 1024, 2048, 4096, 16384, 1 << 18
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24
OPT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
             "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}

def mount(src, target, fstype, flags, data):
    enc = lambda s: None if s is None else s.encode()
    if libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)

def unescape(path):
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and path[i + 1:i + 4].isdigit():
            out.append(chr(int(path[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)

def setup_mounts(work):
    applied = []
    # Pin the host working directory: it may be hidden once /tmp is covered.
    os.chdir(cfg["host_workdir"])
    mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    ours = {"/tmp"}
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
          "mode=1777,size=%dm,nr_inodes=65536" % cfg["tmpfs_mb"])
    if os.path.isdir("/dev/shm") and not os.path.islink("/dev/shm"):
        mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m")
        ours.add("/dev/shm")
    applied.append("tmpfs")
    os.makedirs(work, mode=0o700)
    shutil.copytree(".", work, dirs_exist_ok=True)  # "." is the pinned host directory
    # Cover home directories / credential files with empty read-only mounts. Nothing below
    # may import lazily: this interpreter's own stdlib may live under a hidden home.
    hidden = []
    for path in cfg["hide"]:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                      "size=4k,mode=755")
            elif os.path.isfile(path) and not os.path.islink(path):
                mount("/dev/null", path, None, MS_BIND, None)
                mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
            else:
                continue
        except OSError:
            say(warning="could not hide " + path)
            continue
        ours.add(path)
        hidden.append(path)
    if hidden:
        applied.append("hidden-home")
    # Every other writable mount becomes read-only (in this namespace only).
    failed = []
    with open("/proc/self/mountinfo") as fh:
        entries = [line.split() for line in fh]
    for fields in entries:
        point, opts = unescape(fields[4]), fields[5].split(",")
        if point in ours or point == "/proc" or point.startswith("/proc/") or "ro" in opts:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for opt in opts:
            flags |= OPT_FLAGS.get(opt, 0)
        if not flags & (MS_NOATIME | MS_RELATIME):
            flags |= MS_STRICTATIME
        try:
            mount(None, point, None, flags, None)
        except OSError:
            if point == "/":
                raise
            failed.append(point)
    applied.append("readonly-root")
    if failed:
        say(warning="could not make read-only: " + ", ".join(failed))
    return applied

work = cfg["workdir"]
try:
    applied = setup_mounts(work) if cfg["mounts"] else []
    if cfg["uid"] is not None:
        for root, dirs, files in os.walk(work):
            for name in [root] + [os.path.join(root, n) for n in dirs + files]:
                os.lchown(name, cfg["uid"], cfg["gid"])
        os.chmod(work, 0o700)
except Exception as exc:
    say(error="sandbox setup failed: %s: %s" % (type(exc).__name__, exc))
    os._exit(125)
say(applied=applied)

pid = os.fork()
if pid == 0:
    try:
        done = []
        for name, (soft, hard) in cfg["rlimits"].items():
            resource.setrlimit(getattr(resource, name), (soft, hard))
        done.append("rlimits")
        last_cap = 40
        try:
            with open("/proc/sys/kernel/cap_last_cap") as fh:
                last_cap = int(fh.read())
        except (OSError, ValueError):
            pass
        dropped = all(libc.prctl(24, cap, 0, 0, 0) == 0 for cap in range(last_cap + 1))
        libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
        if cfg["uid"] is not None:
            os.setgroups([])
            os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
            os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
            done.append("uid")
        if dropped:
            done.append("caps-dropped")
        if libc.prctl(38, 1, 0, 0, 0) == 0:  # PR_SET_NO_NEW_PRIVS
            done.append("no-new-privs")
        os.chdir(work)
        say(child=done)
        os.close(status)
        os.execve(cfg["argv"][0], cfg["argv"], cfg["env"])
    except BaseException as exc:
        try:
            os.write(2, ("sandbox: cannot start the child: %s: %s\n"
                         % (type(exc).__name__, exc)).encode())
        finally:
            os._exit(126)
while True:
    try:
        _, st = os.waitpid(pid, 0)
        break
    except ChildProcessError:
        st = None
        break
if st is None:
    say(error="lost the child")
elif os.WIFSIGNALED(st):
    say(signal=os.WTERMSIG(st))
else:
    say(exit=os.WEXITSTATUS(st))
os._exit(0)
"""
