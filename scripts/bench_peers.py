#!/usr/bin/env python3
"""Runs `wharf bench` workloads against Wharf, vsftpd, ProFTPD, Pure-FTPd and pyftpdlib on
loopback, servers interleaved round by round, and writes docs/BENCHMARKS.md and
docs/benchmarks.svg. Started by scripts/bench-peers (which installs the peers); see there.
--baseline PATH adds an older wharf binary as the server `wharf-before`, started like `wharf` and
driven by the same new `wharf bench`, left out of the best-peer ratios and compared with `wharf`
in a section of its own."""

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

USER = "wharfbench"
PASSWORD = "bench"
# SHA-512 crypt (5000 rounds, crypt(3)'s default) of PASSWORD: every server checks this same hash.
HASH = "$6$benchsalt$0kQCiHldjG5kuj8v4yzRhjGa58r4Kq.bbzhE43OQbldhEO7AGV.3.DNU3G9BMAIW5y72HXigxRHEilIdGP80o0"
DATA = "/dev/shm/wharf-bench"
WORK = "/dev/shm/wharf-bench-etc"
GIB = 1 << 30
BASELINE = "wharf-before"
# The acceptance bar for the new build against the one before it (1.0 = as good).
BASELINE_BAR = 0.97

# name -> (label, unit, higher_is_better, target as (op, factor) or None)
METRICS = {
    "retr": ("RETR 1 GiB, one client", "MB/s", True, (">=", 1.0)),
    "stor": ("STOR 1 GiB, one client", "MB/s", True, (">=", 1.0)),
    "login": ("connect + login + quit, sequential", "sessions/s", True, (">=", 2.0)),
    "small500": ("500 clients at once, login + 10 x RETR 10 KiB", "s", False, ("<=", 0.5)),
    "small2000": ("2,000 clients at once, login + 10 x RETR 10 KiB", "s", False, None),
    "idle": ("memory per idle logged-in session (PSS)", "KiB", False, ("<=", 1.0)),
    "list": ("LIST of 10,000 files (median of 20)", "ms", False, ("<=", 1.0)),
    "cpu_retr": ("server CPU per GiB sent (RETR)", "CPU s/GiB", False, ("<=", 1.0)),
    "cpu_stor": ("server CPU per GiB received (STOR)", "CPU s/GiB", False, ("<=", 1.0)),
}
# Over explicit TLS (AUTH TLS, PROT P), `wharf bench` as the client; servers without TLS here
# (pyftpdlib: no pyOpenSSL) have no figure.
METRICS_TLS = {
    "retr_tls": ("RETR 1 GiB over TLS, one client", "MB/s", True, (">=", 1.5)),
    "stor_tls": ("STOR 1 GiB over TLS, one client", "MB/s", True, (">=", 1.5)),
}
# The same workloads driven by Python's ftplib (scripts/bench_ftplib.py).
METRICS_PY = {
    "retr_py": ("RETR 1 GiB, one client", "MB/s", True, (">=", 1.0)),
    "stor_py": ("STOR 1 GiB, one client", "MB/s", True, (">=", 1.0)),
    "login_py": ("connect + login + quit, sequential", "sessions/s", True, (">=", 1.5)),
    "small500_py": ("500 clients at once (threads), login + 10 x RETR 10 KiB", "s", False, None),
    "list_py": ("LIST of 10,000 files (median of 20)", "ms", False, ("<=", 1.0)),
    "retr_tls_py": ("RETR 1 GiB over TLS, one client", "MB/s", True, (">=", 1.5)),
    "stor_tls_py": ("STOR 1 GiB over TLS, one client", "MB/s", True, (">=", 1.5)),
    "cpu_stor_py": ("server CPU per GiB received (STOR)", "CPU s/GiB", False, ("<=", 1.0)),
}
ALL_METRICS = {**METRICS, **METRICS_TLS, **METRICS_PY}
# Headings of docs/BENCHMARKS.md's sections that other scripts write: kept when it is rewritten.
KEPT_SECTIONS = ("## Reading the 2026-12-02 run", "## Logins with users in a database")
ERROR_METRICS = {"small500", "small2000", "login", "idle", "login_py", "small500_py"}
# Servers whose TLS the bench sets up (the certificate in {WORK}/bench.crt).
TLS_SERVERS = {"wharf", BASELINE, "vsftpd", "proftpd", "pure-ftpd"}


def log(msg):
    print(f"bench-peers: {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


_next_port = [21210]


def free_port():
    """A free control port below the ephemeral range (which the load's own connections use)."""
    while True:
        port = _next_port[0]
        _next_port[0] += 1
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def prepare_data(quick):
    log(f"preparing data on tmpfs in {DATA}")
    os.makedirs(WORK, exist_ok=True)
    if os.path.isdir(DATA):
        shutil.rmtree(DATA)
    os.makedirs(f"{DATA}/up")
    os.makedirs(f"{DATA}/list")
    block = os.urandom(1 << 20)
    with open(f"{DATA}/big.bin", "wb") as f:
        for _ in range(64 if quick else 1024):
            f.write(block)
    with open(f"{DATA}/small.bin", "wb") as f:
        f.write(os.urandom(10 * 1024))
    for i in range(10_000):
        open(f"{DATA}/list/file-{i:05d}.dat", "wb").close()
    warm_memory()
    # The system user vsftpd and Pure-FTPd log in as (through /etc/shadow), with the same hash.
    try:
        subprocess.run(["id", USER], check=True, capture_output=True)
        run(["usermod", "-p", HASH, "-d", DATA, "-s", "/bin/bash", USER])
    except subprocess.CalledProcessError:
        run(["useradd", "-M", "-d", DATA, "-s", "/bin/bash", "-p", HASH, USER])
    run(["chown", "-R", f"{USER}:", DATA])
    # One self-signed RSA certificate for every server's TLS.
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
         "-subj", "/CN=127.0.0.1", "-keyout", f"{WORK}/bench.key", "-out", f"{WORK}/bench.crt"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(f"{WORK}/bench.key", 0o600)
    with open(f"{WORK}/bench.pem", "w") as f:
        f.write(open(f"{WORK}/bench.key").read() + open(f"{WORK}/bench.crt").read())
    os.chmod(f"{WORK}/bench.pem", 0o600)
    with open("/etc/pam.d/wharf-bench-vsftpd", "w") as f:
        f.write("auth required pam_unix.so\naccount required pam_unix.so\nsession required pam_permit.so\n")


def clear_uploads():
    for name in os.listdir(f"{DATA}/up"):
        os.unlink(f"{DATA}/up/{name}")


def warm_memory():
    """Writes and deletes a tmpfs file as large as most of the free memory. In a virtual machine
    whose memory the host backs on first touch, pages never used before cost a fault on the host
    each: whichever server was first to get them would upload slower for it."""
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) for line in f}
    mib = min(16 * 1024, max(0, info.get("MemAvailable", 0) // 1024 - 6 * 1024))
    if not mib:
        return
    log(f"touching {mib:,} MiB of free memory once")
    block = bytes(1 << 20)
    path = f"{DATA}/warm.bin"
    try:
        with open(path, "wb") as f:
            for _ in range(mib):
                f.write(block)
    finally:
        os.unlink(path)


def uid_gid():
    out = subprocess.run(["id", "-u", USER], check=True, capture_output=True, text=True).stdout
    gid = subprocess.run(["id", "-g", USER], check=True, capture_output=True, text=True).stdout
    return int(out), int(gid)


class Server:
    def __init__(self, name, version, cmd, port, env=None):
        self.name, self.version, self.cmd, self.port, self.env = name, version, cmd, port, env
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            self.cmd, stdout=subprocess.DEVNULL, stderr=open(f"{WORK}/{self.name}.log", "ab"),
            env=self.env, start_new_session=True)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up; see {WORK}/{self.name}.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.settimeout(5)
                    if s.recv(512).startswith(b"220"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer on port {self.port}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            # Our own process group only (start_new_session): the server and its session children.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def tree(self):
        """The server's PID and all its descendants."""
        children = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except OSError:
                continue
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def pss_kib(self):
        total = 0
        for pid in self.tree():
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss_Anon:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    def cpu_seconds(self):
        """CPU of the server, its live descendants and its reaped ones."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for i, pid in enumerate(self.tree()):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime stime, plus (for the root: the whole tree below lands there) cutime cstime.
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        return total / tick


def wharf_server(name, binary, port):
    """A Wharf server run from `binary`, its configuration in {WORK}/{name}.toml."""
    with open(f"{WORK}/{name}.toml", "w") as f:
        f.write(f"""root = "{DATA}"
listen = ["127.0.0.1:{port}"]
[limits]
max_sessions = 20000
max_sessions_per_ip = 20000
[tls]
mode = "optional"
cert = "{WORK}/bench.crt"
key = "{WORK}/bench.key"
[[user]]
name = "{USER}"
password_hash = "{HASH}"
permissions = ["all"]
""")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    command = [binary, "serve", "--config", f"{WORK}/{name}.toml", "--log-level", "warn"]
    # Builds that give up root when started as root: the bench data is root's, so stay root
    # (older builds have no such flag).
    serve_help = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True).stdout
    if os.geteuid() == 0 and "--allow-root" in serve_help:
        command.append("--allow-root")
    return Server(name, version or name, command, port)


def servers(args):
    uid, gid = uid_gid()
    peers = args.peers
    made = []
    # Wharf
    made.append(wharf_server("wharf", args.wharf, free_port()))
    # The build before the change, if given: the same configuration on its own port. The client
    # stays the new build's `wharf bench` (bench() always runs args.wharf).
    if args.baseline:
        made.append(wharf_server(BASELINE, args.baseline, free_port()))
    # vsftpd 3.0.3: its defaults, plus a jail for the user as every other server has.
    port = free_port()
    with open(f"{WORK}/vsftpd.conf", "w") as f:
        f.write(f"""listen=YES
listen_address=127.0.0.1
listen_port={port}
background=NO
seccomp_sandbox=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
chroot_local_user=YES
allow_writeable_chroot=YES
pam_service_name=wharf-bench-vsftpd
max_clients=20000
max_per_ip=0
xferlog_enable=NO
secure_chroot_dir=/var/run/vsftpd/empty
ssl_enable=YES
rsa_cert_file={WORK}/bench.crt
rsa_private_key_file={WORK}/bench.key
force_local_logins_ssl=NO
force_local_data_ssl=NO
ssl_ciphers=HIGH
""")
    made.append(Server("vsftpd", "vsftpd 3.0.3",
                       [f"{peers}/vsftpd/usr/sbin/vsftpd", f"{WORK}/vsftpd.conf"], port))
    # ProFTPD 1.3.8: its own user file with the same hash.
    port = free_port()
    with open(f"{WORK}/proftpd.passwd", "w") as f:
        f.write(f"{USER}:{HASH}:{uid}:{gid}::{DATA}:/bin/bash\n")
    with open(f"{WORK}/proftpd.group", "w") as f:
        f.write(f"{USER}:x:{gid}:\n")
    os.chmod(f"{WORK}/proftpd.passwd", 0o600)
    os.chmod(f"{WORK}/proftpd.group", 0o600)
    with open(f"{WORK}/proftpd.conf", "w") as f:
        f.write(f"""ServerType standalone
ServerName "bench"
DefaultServer on
Port {port}
DefaultAddress 127.0.0.1
SocketBindTight on
UseIPv6 off
User nobody
Group nogroup
PidFile {WORK}/proftpd.pid
ScoreboardFile {WORK}/proftpd.scoreboard
SystemLog {WORK}/proftpd.system.log
WtmpLog off
TransferLog none
UseReverseDNS off
<IfModule mod_ident.c>
  IdentLookups off
</IfModule>
<IfModule mod_delay.c>
  DelayTable {WORK}/proftpd.delay
</IfModule>
MaxInstances 20000
AuthOrder mod_auth_file.c
AuthUserFile {WORK}/proftpd.passwd
AuthGroupFile {WORK}/proftpd.group
RequireValidShell off
DefaultRoot ~
AllowOverwrite on
Umask 022
<IfModule mod_dso.c>
  ModulePath /usr/lib/proftpd
  LoadModule mod_tls.c
</IfModule>
<IfModule mod_tls.c>
  TLSEngine on
  TLSRequired off
  TLSProtocol TLSv1.2 TLSv1.3
  TLSRSACertificateFile {WORK}/bench.crt
  TLSRSACertificateKeyFile {WORK}/bench.key
  TLSLog {WORK}/proftpd.tls.log
</IfModule>
""")
    pv = subprocess.run(["proftpd", "-v"], capture_output=True, text=True).stdout.strip() or "ProFTPD"
    made.append(Server("proftpd", pv, ["proftpd", "-n", "-q", "-c", f"{WORK}/proftpd.conf"], port))
    # Pure-FTPd 1.0.50: system users, everyone jailed.
    port = free_port()
    made.append(Server("pure-ftpd", "Pure-FTPd 1.0.50",
                       [f"{peers}/pure-ftpd/usr/sbin/pure-ftpd", "-S", f"127.0.0.1,{port}",
                        "-A", "-E", "-H", "-c", "20000", "-C", "20000", "-l", "unix", "-u", "1",
                        "-Y", "1", "-2", f"{WORK}/bench.pem"], port))
    # pyftpdlib 2.0.1 with a crypt(3) authorizer.
    port = free_port()
    with open(f"{WORK}/pyftpd.py", "w") as f:
        f.write(f"""import crypt, hmac, logging, sys
import warnings
warnings.simplefilter("ignore")
from pyftpdlib.authorizers import DummyAuthorizer, AuthenticationFailed
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.log import config_logging
from pyftpdlib.servers import FTPServer

class CryptAuthorizer(DummyAuthorizer):
    def validate_authentication(self, username, password, handler):
        stored = self.user_table.get(username, {{}}).get("pwd", "$6$x$")
        if not hmac.compare_digest(crypt.crypt(password, stored), stored):
            raise AuthenticationFailed("Authentication failed.")

auth = CryptAuthorizer()
auth.add_user({USER!r}, {HASH!r}, {DATA!r}, perm="elradfmwMT")
FTPHandler.authorizer = auth
config_logging(level=logging.WARNING)
server = FTPServer(("127.0.0.1", {port}), FTPHandler)
server.max_cons = 0
server.max_cons_per_ip = 0
server.serve_forever()
""")
    env = dict(os.environ, PYTHONPATH=f"{peers}/python")
    pyv = subprocess.run([sys.executable, "-c", "import pyftpdlib; print(pyftpdlib.__ver__)"],
                         env=env, capture_output=True, text=True).stdout.strip()
    made.append(Server("pyftpdlib", f"pyftpdlib {pyv}", [sys.executable, f"{WORK}/pyftpd.py"], port, env))
    return made


def bench(args, server, workload, path, *extra, timeout=600, on_line=None, tls=False):
    scheme = "ftpes" if tls else "ftp"
    url = f"{scheme}://{USER}@127.0.0.1:{server.port if server else 1}/{path}"
    cmd = [args.wharf, "bench", "-w", workload, url, "--json", "--passive", *extra]
    if tls:
        cmd.append("--insecure")
    env = dict(os.environ, WHARF_PASSWORD=PASSWORD)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    measured = None
    if on_line:
        for line in proc.stderr:
            if "holding" in line:
                measured = on_line()
                break
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"errors": -1, "error_kinds": [{"error": "bench timed out", "count": 1}]}, measured
    try:
        return json.loads(out), measured
    except json.JSONDecodeError:
        return {"errors": -1, "error_kinds": [{"error": (err or out).strip()[:200], "count": 1}]}, measured


def bench_py(server, workload, path, *extra, timeout=600, tls=False):
    """The same workload driven by Python's ftplib (scripts/bench_ftplib.py)."""
    cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_ftplib.py"),
           workload, "--port", str(server.port), "--user", USER, "--password", PASSWORD,
           "--path", path, *extra]
    if tls:
        cmd.append("--tls")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"errors": -1, "error_kinds": [{"error": "ftplib bench timed out", "count": 1}]}
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"errors": -1, "error_kinds": [{"error": (proc.stderr or proc.stdout).strip()[-200:], "count": 1}]}


class Record:
    """One server's results: figures, error counts and why clients failed, by workload."""

    def __init__(self, r):
        self.r = r

    def add(self, key, value):
        self.r.setdefault(key, []).append(value)

    def errs(self, key, rep):
        self.r.setdefault(key + "_errors", []).append(rep.get("errors", -1))

    def why(self, key, rep):
        for e in rep.get("error_kinds", []):
            self.r.setdefault(key + "_why", set()).add(e["error"][:120])

    def rate(self, key, rep):
        """A throughput figure if the run went well, else why not."""
        if rep.get("ok"):
            self.add(key, rep["megabytes_per_sec"])
        else:
            self.why(key, rep)


def tls_round(args, srv, r, quick):
    """RETR and STOR over explicit TLS, with each client."""
    rec = Record(r)
    size = "64M" if quick else "1G"
    rep, _ = bench(args, srv, "retr", "big.bin", "-n", "2", tls=True)
    rec.rate("retr_tls", rep)
    clear_uploads()
    rep, _ = bench(args, srv, "stor", "up/stor.bin", "-n", "1", "--size", size, tls=True)
    rec.rate("stor_tls", rep)
    clear_uploads()
    rec.rate("retr_tls_py", bench_py(srv, "retr", "big.bin", "-n", "2", tls=True))
    rec.rate("stor_tls_py", bench_py(srv, "stor", "up/stor.bin", "--size",
                                     str(64 << 20 if quick else 1 << 30), tls=True))
    clear_uploads()


def ftplib_round(srv, r, quick):
    """The plain workloads again, Python's ftplib the client."""
    rec = Record(r)
    rec.rate("retr_py", bench_py(srv, "retr", "big.bin", "-n", "3"))
    c0, stored = srv.cpu_seconds(), 0
    for _ in range(2):
        clear_uploads()
        rep = bench_py(srv, "stor", "up/stor.bin", "--size", str(64 << 20 if quick else 1 << 30))
        if rep.get("ok"):
            rec.add("stor_py", rep["megabytes_per_sec"])
            stored += rep["bytes"]
        else:
            rec.why("stor_py", rep)
    time.sleep(0.3)
    if stored:
        rec.add("cpu_stor_py", (srv.cpu_seconds() - c0) / (stored / GIB))
    clear_uploads()
    rep = bench_py(srv, "login", "", "-n", "100" if quick else "300")
    if rep.get("ok"):
        rec.add("login_py", rep["ops_per_sec"])
    rec.errs("login_py", rep)
    rec.why("login_py", rep)
    rep = bench_py(srv, "list", "list/", "-n", "20")
    if rep.get("ok"):
        rec.add("list_py", rep["latency_ms"]["p50"])
    else:
        rec.why("list_py", rep)
    time.sleep(1)
    rep = bench_py(srv, "small", "small.bin", "-c", "50" if quick else "500", "-n", "10",
                   "--timeout", "30", timeout=300)
    if rep.get("errors", -1) >= 0 and "seconds" in rep:
        rec.add("small500_py", rep["seconds"])
    rec.errs("small500_py", rep)
    rec.why("small500_py", rep)


def one_round(args, srv, results, quick):
    r = results.setdefault(srv.name, {})
    rec = Record(r)
    add, errs = rec.add, rec.errs
    srv.start()
    try:
        time.sleep(0.5)
        n_idle = 100 if quick else 500
        base = srv.pss_kib()
        rep, during = bench(args, srv, "idle", "", "-c", str(n_idle), "--hold", "2",
                            on_line=srv.pss_kib)
        held = rep.get("held", 0)
        if during is not None and held:
            add("idle", (during - base) / held)
        errs("idle", rep)

        c0 = srv.cpu_seconds()
        rep, _ = bench(args, srv, "retr", "big.bin", "-n", "3")
        time.sleep(0.3)
        if rep.get("ok"):
            add("retr", rep["megabytes_per_sec"])
            add("cpu_retr", (srv.cpu_seconds() - c0) / (rep["bytes"] / GIB))
        errs("retr", rep)

        size = "64M" if quick else "1G"
        # Each upload creates its file: servers that replace a file by writing a new one beside
        # it (Wharf) and servers that truncate it in place do the same work.
        c0, stored, stor_errors = srv.cpu_seconds(), 0, 0
        for _ in range(2):
            clear_uploads()
            rep, _ = bench(args, srv, "stor", "up/stor.bin", "-n", "1", "--size", size)
            if rep.get("ok"):
                add("stor", rep["megabytes_per_sec"])
                stored += rep["bytes"]
            stor_errors += rep.get("errors", -1) if rep.get("errors", -1) >= 0 else 1
        time.sleep(0.3)
        if stored:
            add("cpu_stor", (srv.cpu_seconds() - c0) / (stored / GIB))
        r.setdefault("stor_errors", []).append(stor_errors)
        clear_uploads()

        rep, _ = bench(args, srv, "login", "", "-n", "100" if quick else "300")
        if rep.get("ok"):
            add("login", rep["ops_per_sec"])
        errs("login", rep)

        rep, _ = bench(args, srv, "list", "list/", "-n", "20")
        if rep.get("ok"):
            add("list", rep["latency_ms"]["p50"])
        errs("list", rep)

        for clients, key in ((500, "small500"), (2000, "small2000")):
            if quick:
                clients //= 10
            time.sleep(1)
            rep, _ = bench(args, srv, "small", "small.bin", "-c", str(clients), "-n", "10",
                           "--timeout", "30", "--duration", "120")
            if "seconds" in rep:
                add(key, rep["seconds"])
            errs(key, rep)
            rec.why(key, rep)

        if srv.name in TLS_SERVERS:
            tls_round(args, srv, r, quick)
        ftplib_round(srv, r, quick)
    finally:
        srv.stop()


def summarize(values):
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def many_idle(quick):
    """How many idle sessions the one-off memory measurement after the rounds holds."""
    return 1000 if quick else 10_000


def fmt(v, unit):
    if v is None:
        return "—"
    if unit in ("MB/s", "sessions/s"):
        return f"{v:,.0f}"
    if unit == "KiB":
        return f"{v:,.1f}"
    if unit == "ms":
        return f"{v:,.1f}"
    return f"{v:,.2f}"


def cell(results, name, key, unit):
    """A report cell: median (min–max) over the rounds, plus the errors where they matter."""
    s = summarize(results.get(name, {}).get(key, []))
    errors = results.get(name, {}).get(key + "_errors", [])
    bad = sum(e for e in errors if e > 0) + sum(1 for e in errors if e < 0)
    text = "—" if s is None else f"{fmt(s[0], unit)} ({fmt(s[1], unit)}–{fmt(s[2], unit)})"
    if key in ERROR_METRICS and errors:
        text += f", {bad} err" if bad else ", 0 err"
    return text


def against_baseline(results, quick):
    """Wharf against the build before the change, per workload: (key, label, unit, ratio), the
    ratio of the medians oriented as in the chart (throughput: new ÷ before; times, memory and
    CPU: before ÷ new), so above 1.0 the new build is better."""
    rows = [(key, label + (" (ftplib)" if key.endswith("_py") else ""), unit, higher)
            for key, (label, unit, higher, _) in ALL_METRICS.items()]
    rows.append(("idle_many", f"memory per idle session, {many_idle(quick):,} at once (PSS)", "KiB", False))
    out = []
    for key, label, unit, higher in rows:
        w = summarize(results.get("wharf", {}).get(key, []))
        b = summarize(results.get(BASELINE, {}).get(key, []))
        ratio = None
        if w and b and w[0] > 0 and b[0] > 0:
            ratio = w[0] / b[0] if higher else b[0] / w[0]
        out.append((key, label, unit, ratio))
    return out


def table(md, names, results, metrics, ratios):
    """One table of `metrics`: each server's cells, the best peer, Wharf's ratio to it and
    the target; the ratios go into `ratios`."""
    md.append("| workload | unit | " + " | ".join(names) + " | best peer | Wharf ÷ best peer | target |")
    md.append("|" + "---|" * (len(names) + 5))
    for key, (label, unit, higher, target) in metrics.items():
        cells = [cell(results, n, key, unit) for n in names]
        # Peers are the other servers: not Wharf, nor Wharf's own build before the change.
        peer_medians = [(summarize(results.get(n, {}).get(key, []))[0], n) for n in names
                        if n not in ("wharf", BASELINE) and results.get(n, {}).get(key)]
        best = None
        if peer_medians:
            best = max(peer_medians) if higher else min(peer_medians)
        w = summarize(results.get("wharf", {}).get(key, []))
        ratio = None
        if best and w and best[0]:
            ratio = w[0] / best[0]
            ratios[key] = (ratio, best[1])
        tgt = "—"
        if target:
            op, factor = target
            met = ratio is not None and (ratio >= factor if op == ">=" else ratio <= factor)
            tgt = f"{op} {factor}× {'met' if met else 'MISSED'}"
        md.append(f"| {label} | {unit} | " + " | ".join(cells) +
                  f" | {best[1] if best else '—'} | {'—' if ratio is None else f'{ratio:.2f}×'} | {tgt} |")


def write_report(args, names, results, loopback, extra, started, rounds):
    md = []
    md.append("# Benchmarks\n")
    md.append(f"Written by `scripts/bench-peers` on {time.strftime('%Y-%m-%d', time.gmtime(started))}: "
              f"{rounds} round{'s' if rounds != 1 else ''}, the servers interleaved in each round (the order rotates), "
              f"two clients for every server — `wharf bench` and Python's ftplib — over "
              f"loopback (127.0.0.1), "
              f"data on tmpfs, the same user `{USER}` with the same SHA-512 crypt (`$6$`, 5000 "
              f"rounds) password hash everywhere. Machine: {os.cpu_count()} CPUs, "
              f"{platform.system()} {platform.release()}. Each cell is the median with min–max "
              f"over the rounds.\n")
    lb = summarize(loopback)
    if lb:
        md.append(f"**Loopback limit** (same client, same read loop, plain TCP from a sender "
                  f"writing from memory): **{lb[0]:,.0f} MB/s** (min–max {lb[1]:,.0f}–{lb[2]:,.0f}).\n")
    ratios = {}
    md.append("### `wharf bench` as the client\n")
    table(md, names, results, METRICS, ratios)
    md.append("\n### Over TLS, `wharf bench` as the client\n")
    md.append("Explicit TLS (AUTH TLS, PROT P; the data connections resume the control "
              "connection's session), the same self-signed RSA 2048 certificate for every "
              "server; pyftpdlib has no TLS here (no pyOpenSSL).\n")
    table(md, names, results, METRICS_TLS, ratios)
    md.append("\n### Python's ftplib as the client\n")
    md.append("The same workloads driven by `scripts/bench_ftplib.py` (Python's ftplib, passive "
              "mode, 1 MiB reads and writes; the 500 clients are threads), so that no figure "
              "depends on Wharf's own client; TLS rows as above.\n")
    table(md, names, results, METRICS_PY, ratios)
    if lb and results.get("wharf", {}).get("retr"):
        share = summarize(results["wharf"]["retr"])[0] / lb[0]
        md.append(f"\nWharf's RETR median is **{share:.0%}** of the loopback limit measured in the "
                  f"same run (target ≥ 90%).\n")
    for text in extra:
        md.append(text)
    if args.baseline and BASELINE in names:
        md.append("\n## Against the build before the change\n")
        md.append(f"`{BASELINE}` is `{args.baseline_version}` (`{args.baseline}`), started like "
                  f"`wharf` (the same configuration on its own port) and measured in the same "
                  f"rounds, interleaved with the other servers; the new build's `wharf bench` is "
                  f"the client for both. It is left out of the best-peer columns above. The ratio "
                  f"is of the medians, throughput new ÷ before and times, memory and CPU before ÷ "
                  f"new, so above 1.0 the new build is better; the acceptance bar is "
                  f"{BASELINE_BAR}.\n")
        md.append(f"| workload | unit | wharf | {BASELINE} | wharf ÷ {BASELINE} | ≥ {BASELINE_BAR} |")
        md.append("|---|---|---|---|---|---|")
        for key, label, unit, ratio in against_baseline(results, args.quick):
            bar = "—" if ratio is None else ("met" if ratio >= BASELINE_BAR else "MISSED")
            md.append(f"| {label} | {unit} | {cell(results, 'wharf', key, unit)} | "
                      f"{cell(results, BASELINE, key, unit)} | "
                      f"{'—' if ratio is None else f'{ratio:.3f}×'} | {bar} |")
    md.append("\nErrors per workload are summed over the rounds (`err`). Why clients failed, where "
              "they did:\n")
    for n in names:
        for key in ALL_METRICS:
            why = results.get(n, {}).get(key + "_why")
            if why:
                md.append(f"- {n}, {key}: " + "; ".join(sorted(why))[:400])
    md.append("\nVersions: " + ", ".join(f"{s}" for s in args.versions) + ".\n")
    md.append("![Each server relative to the best in each workload](benchmarks.svg)\n")
    md.append("How to read the chart: for each workload the best server is 1.0 and the others are "
              "scaled to it (throughput ÷ best throughput; for times, memory and CPU: best ÷ "
              "theirs), so longer is better everywhere.\n")
    md.append("Reproduce with `sudo scripts/bench-peers` (about 40 minutes; `--rounds N`, "
              "`--quick` for a smoke run, `--baseline PATH` to add an older `wharf` binary as "
              f"`{BASELINE}`). Ratios from one machine; loopback runs client and "
              "server on the same 2 cores, so every figure includes the client's cost.\n")
    os.makedirs("docs", exist_ok=True)
    # Sections other scripts wrote (scripts/bench-userdb's) stay, after this run's.
    kept = ""
    try:
        with open("docs/BENCHMARKS.md") as f:
            old = f.read()
        at = min((old.find(h) for h in KEPT_SECTIONS if h in old), default=-1)
        kept = old[at:] if at >= 0 else ""
    except OSError:
        pass
    with open("docs/BENCHMARKS.md", "w") as f:
        f.write("\n".join(md) + "\n")
        if kept:
            f.write("\n" + kept)
    write_svg(names, results)
    return ratios


def write_svg(names, results):
    colors = {"wharf": "#1f77b4", BASELINE: "#999999", "vsftpd": "#ff7f0e", "proftpd": "#2ca02c",
              "pure-ftpd": "#d62728", "pyftpdlib": "#9467bd"}
    rows = [(k, v) for k, v in METRICS.items()]
    bar_h, gap, left, width = 12, 14, 330, 420
    group_h = bar_h * len(names) + gap
    height = 40 + group_h * len(rows) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<text x="10" y="20" font-size="14">Relative to the best server per workload (1.0 = best; longer is better)</text>']
    y = 40
    for key, (label, unit, higher, _) in rows:
        meds = {n: summarize(results.get(n, {}).get(key, [])) for n in names}
        vals = [m[0] for m in meds.values() if m and m[0] > 0]
        if not vals:
            y += group_h
            continue
        best = max(vals) if higher else min(vals)
        out.append(f'<text x="10" y="{y + bar_h * len(names) / 2 + 4}">{label}</text>')
        for i, n in enumerate(names):
            m = meds[n]
            rel = 0 if not m or m[0] <= 0 else (m[0] / best if higher else best / m[0])
            by = y + i * bar_h
            out.append(f'<rect x="{left}" y="{by}" width="{rel * width:.1f}" height="{bar_h - 2}" '
                       f'fill="{colors.get(n, "#888")}"/>')
            out.append(f'<text x="{left + rel * width + 4:.1f}" y="{by + bar_h - 3}">{n} {rel:.2f}</text>')
        y += group_h
    out.append("</svg>")
    with open("docs/benchmarks.svg", "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--wharf", required=True)
    p.add_argument("--peers", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", help="comma-separated server names")
    p.add_argument("--baseline", metavar="PATH",
                   help=f"an older wharf binary, benchmarked as the server {BASELINE}")
    args = p.parse_args()
    if args.baseline:
        args.baseline = os.path.abspath(args.baseline)
        if not (os.path.isfile(args.baseline) and os.access(args.baseline, os.X_OK)):
            p.error(f"--baseline {args.baseline} is not an executable file")
    started = time.time()
    prepare_data(args.quick)
    all_servers = servers(args)
    if args.only:
        keep = args.only.split(",")
        all_servers = [s for s in all_servers if s.name in keep]
    args.versions = [f"{s.version} ({BASELINE})" if s.name == BASELINE else s.version
                     for s in all_servers]
    args.baseline_version = next((s.version for s in all_servers if s.name == BASELINE), None)
    names = [s.name for s in all_servers]
    results, loopback, extra = {}, [], []
    try:
        for rnd in range(args.rounds):
            order = all_servers[rnd % len(all_servers):] + all_servers[:rnd % len(all_servers)]
            rep, _ = bench(args, None, "loopback", "", "-n", "3", "--size", "256M" if args.quick else "1G")
            if rep.get("ok"):
                loopback.append(rep["megabytes_per_sec"])
            for srv in order:
                log(f"round {rnd + 1}/{args.rounds}: {srv.name}")
                one_round(args, srv, results, args.quick)
                shutil.rmtree(f"{DATA}/up", ignore_errors=True)
                os.makedirs(f"{DATA}/up", exist_ok=True)
                run(["chown", f"{USER}:", f"{DATA}/up"])
        for name, who in (("wharf", "Wharf"), (BASELINE, f"`{BASELINE}` (the build before the change)")):
            srv = next((s for s in all_servers if s.name == name), None)
            if not srv:
                continue
            n = many_idle(args.quick)
            log(f"{name}: {n} idle sessions")
            srv.start()
            try:
                time.sleep(0.5)
                base = srv.pss_kib()
                rep, during = bench(args, srv, "idle", "", "-c", str(n), "--hold", "3",
                                    "--timeout", "60", on_line=srv.pss_kib)
                held = rep.get("held", 0)
                per = (during - base) / held if during and held else float("nan")
                if during and held:
                    results.setdefault(name, {})["idle_many"] = [per]
                extra.append(f"\n**{n:,} idle sessions**: {who} held {held:,} logged-in sessions at "
                             f"once ({rep.get('errors', '?')} errors); its memory grew from "
                             f"{base / 1024:.1f} MiB to {(during or 0) / 1024:.1f} MiB PSS, "
                             f"{per:.1f} KiB per session.\n")
            finally:
                srv.stop()
    finally:
        for s in all_servers:
            s.stop()
    with open(f"{WORK}/results.json", "w") as f:
        json.dump({k: {m: (sorted(v) if isinstance(v, set) else v) for m, v in d.items()}
                   for k, d in results.items()}, f, indent=1)
    ratios = write_report(args, names, results, loopback, extra, started, args.rounds)
    for key, (ratio, best) in ratios.items():
        log(f"{key}: Wharf / {best} = {ratio:.2f}")
    if args.baseline and BASELINE in names:
        for key, _, _, ratio in against_baseline(results, args.quick):
            if ratio is not None:
                log(f"{key}: wharf against {BASELINE} = {ratio:.3f} "
                    f"({'met' if ratio >= BASELINE_BAR else 'MISSED'} ≥ {BASELINE_BAR})")
    log(f"wrote docs/BENCHMARKS.md and docs/benchmarks.svg in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
