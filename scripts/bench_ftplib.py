#!/usr/bin/env python3
"""The second client of scripts/bench-peers: the same workloads as `wharf bench`, driven by
Python's ftplib, so that no figure in docs/BENCHMARKS.md depends on Wharf's own client alone.

    bench_ftplib.py WORKLOAD --port P --user U --password PW [--path PATH] [-n N] [-c C]
                    [--size BYTES] [--tls] [--timeout S]

WORKLOAD is retr, stor, login, list or small (as in `wharf bench`): retr downloads PATH n times,
stor uploads --size bytes from memory to PATH, login connects, logs in and quits n times in a
row, list lists PATH n times (the median time is reported), small runs C sessions at once
(threads), each logging in and downloading PATH n times. --tls is explicit TLS (AUTH TLS,
PROT P) without certificate checks, the data connections resuming the control connection's TLS
session as vsftpd and Wharf require by default. Passive mode (EPSV) throughout; 127.0.0.1 only.
Prints one JSON object: ok, bytes, seconds, megabytes_per_sec, ops_per_sec, latency_ms,
errors and error_kinds."""

import argparse
import ftplib
import json
import ssl
import statistics
import sys
import threading
import time

HOST = "127.0.0.1"
BLOCK = 1 << 20


class ReusingTLS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host,
                                            session=self.sock.session)
        return conn, size


def session(args):
    if args.tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ftp = ReusingTLS(context=ctx, timeout=args.timeout)
    else:
        ftp = ftplib.FTP(timeout=args.timeout)
    ftp.connect(HOST, args.port)
    ftp.login(args.user, args.password)
    if args.tls:
        ftp.prot_p()
    ftp.sendcmd("TYPE I")
    return ftp


def finish(conn, tls):
    """Ends a data connection as ftplib's own transfers do (TLS: close_notify first)."""
    if tls and isinstance(conn, ssl.SSLSocket):
        conn.unwrap()
    conn.close()


def retr(ftp, path, tls):
    """Downloads `path` into nothing; the bytes received."""
    got = 0
    conn = ftp.transfercmd(f"RETR {path}")
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    try:
        while True:
            n = conn.recv_into(view)
            if not n:
                break
            got += n
    finally:
        finish(conn, tls)
    ftp.voidresp()
    return got


def stor(ftp, path, size, tls):
    block = bytes(range(256)) * (BLOCK // 256)
    conn = ftp.transfercmd(f"STOR {path}")
    sent = 0
    try:
        while sent < size:
            chunk = block if size - sent >= BLOCK else block[: size - sent]
            conn.sendall(chunk)
            sent += len(chunk)
    finally:
        finish(conn, tls)
    ftp.voidresp()
    return sent


def listing(ftp, path, tls):
    conn = ftp.transfercmd(f"LIST {path}")
    got = 0
    try:
        while True:
            data = conn.recv(BLOCK)
            if not data:
                break
            got += len(data)
    finally:
        finish(conn, tls)
    ftp.voidresp()
    return got


def report(ok, bytes_=0, seconds=0.0, ops=0, latencies=(), errors=None):
    errors = errors or {}
    lat = sorted(latencies)
    out = {
        "client": "ftplib",
        "ok": ok,
        "bytes": bytes_,
        "seconds": round(seconds, 4),
        "megabytes_per_sec": (bytes_ / 1e6 / seconds) if seconds and bytes_ else 0.0,
        "ops_per_sec": (ops / seconds) if seconds else 0.0,
        "latency_ms": {"p50": round(statistics.median(lat) * 1000, 3)} if lat else {},
        "errors": sum(errors.values()),
        "error_kinds": [{"error": k, "count": v} for k, v in sorted(errors.items())],
    }
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("workload", choices=["retr", "stor", "login", "list", "small"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--path", default="")
    p.add_argument("-n", type=int, default=1)
    p.add_argument("-c", type=int, default=1)
    p.add_argument("--size", type=int, default=1 << 30)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()
    errors = {}

    def fail(e):
        key = f"{type(e).__name__}: {e}"[:160]
        errors[key] = errors.get(key, 0) + 1

    if args.workload in ("retr", "stor", "list"):
        try:
            ftp = session(args)
        except (OSError, ftplib.Error) as e:
            fail(e)
            return report(False, errors=errors)
        total, spent, times = 0, 0.0, []
        for _ in range(args.n):
            t0 = time.perf_counter()
            try:
                if args.workload == "retr":
                    total += retr(ftp, args.path, args.tls)
                elif args.workload == "stor":
                    total += stor(ftp, args.path, args.size, args.tls)
                else:
                    listing(ftp, args.path, args.tls)
            except (OSError, ftplib.Error, EOFError) as e:
                fail(e)
                break
            dt = time.perf_counter() - t0
            spent += dt
            times.append(dt)
        try:
            ftp.quit()
        except (OSError, ftplib.Error, EOFError):
            pass
        return report(not errors and bool(times), total, spent, len(times), times, errors)

    if args.workload == "login":
        times = []
        t0 = time.perf_counter()
        for _ in range(args.n):
            a = time.perf_counter()
            try:
                ftp = ftplib.FTP(timeout=args.timeout)
                ftp.connect(HOST, args.port)
                ftp.login(args.user, args.password)
                ftp.quit()
            except (OSError, ftplib.Error, EOFError) as e:
                fail(e)
                continue
            times.append(time.perf_counter() - a)
        spent = time.perf_counter() - t0
        return report(bool(times), 0, spent, len(times), times, errors)

    # small: C sessions at once, each logging in and downloading PATH n times.
    lock = threading.Lock()
    start = threading.Barrier(args.c + 1)
    done = []

    def client():
        try:
            start.wait()
        except threading.BrokenBarrierError:
            return
        try:
            ftp = session(args)
            got = 0
            for _ in range(args.n):
                got += retr(ftp, args.path, args.tls)
            ftp.quit()
            with lock:
                done.append(got)
        except (OSError, ftplib.Error, EOFError) as e:
            with lock:
                fail(e)

    threading.stack_size(256 * 1024)
    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.c)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join(args.timeout * (args.n + 2))
    spent = time.perf_counter() - t0
    stuck = sum(1 for t in threads if t.is_alive())
    if stuck:
        errors["still running at the deadline"] = stuck
    report(not errors, sum(done), spent, len(done) * args.n, (), errors)


if __name__ == "__main__":
    sys.exit(main())
