"""FTPS checks with Python's ftplib and ssl, for the Wharf test suite.

Usage: ftps_client.py MODE HOST PORT CAFILE [USER PASSWORD]

With FTPS_TLS12=1 in the environment, TLS 1.2 at most.

Modes:
  reuse      FTP_TLS with PROT P whose data connections resume the control session (the usual
             subclass); RETR a.txt, STOR up.bin (100000 bytes), NLST. Prints one line per step.
  plain      stock FTP_TLS with PROT P: its data connections start fresh TLS sessions; prints the
             server's reply to the listing.
  pipelined  sends "AUTH TLS\\r\\nUSER pipelined\\r\\n" in one segment, does the handshake, then
             PWD: prints the first reply read over TLS.
  cut        uploads cut.bin and closes the data connection without TLS close_notify; prints
             the server's reply.
  protc      logs in over TLS, sends PROT P before PBSZ, then PBSZ 0 and PROT C, then lists
             with a clear data connection.
  hold       logs in (reuse), prints "ready", waits for a line on stdin, then prints the subject
             CN of a new connection's certificate and the old session's NLST.
  sibling    two control connections as USER (as rclone with --transfers): the second one's
             data connections resume the first one's TLS session; then a third connection as
             OTHER OTHERPASS (argv 7, 8) whose data connection resumes the first one's session.
             Prints "SIBLING <reply>" and "FOREIGN <reply>".
  early      the data connection's TLS handshake before the transfer command is sent (as aioftp
             does): PASV, connect, handshake, then RETR a.txt. Prints "EARLY <150> <226> <data>".
  clearlate  PROT P, PASV, then PROT C and a listing over that passive port in clear. Prints
             "CLEARLATE <150> <226> <names>".
  many       one control connection, FTPS_COUNT (default 200) RETR a.txt in a row, each data
             connection resuming the control session. Prints "MANY <ok> of <count>", and the
             first failure's reply.
"""

import ftplib
import io
import os
import socket
import ssl
import sys


class ReusingFTP_TLS(ftplib.FTP_TLS):
    """ftplib.FTP_TLS whose data connections resume the control connection's TLS session."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session
            )
        return conn, size


class SessionOfFTP_TLS(ftplib.FTP_TLS):
    """ftplib.FTP_TLS whose data connections resume a given TLS session (another control
    connection's, as clients that share one session cache between connections do)."""

    session = None

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.session
            )
        return conn, size


def reply_of(f, fn):
    """What the server answered: the completion reply, or the error it sent."""
    try:
        return fn()
    except (ssl.SSLError, OSError, EOFError) as e:
        try:
            return "%s; reply %s" % (type(e).__name__, f.getresp())
        except ftplib.all_errors as e2:
            return "reply %s" % e2
    except ftplib.all_errors as e:
        return "reply %s" % e


def login(cls, host, port, ctx, user, password):
    f = cls(context=ctx, timeout=20)
    f.connect(host, port)
    f.auth()
    f.login(user, password)
    f.prot_p()
    return f


def subject_cn(host, port, ctx):
    with socket.create_connection((host, port), timeout=20) as s:
        s.recv(4096)
        s.sendall(b"AUTH TLS\r\n")
        s.recv(4096)
        with ctx.wrap_socket(s, server_hostname=host) as t:
            for rdn in t.getpeercert()["subject"]:
                for key, value in rdn:
                    if key == "commonName":
                        return value
    return "?"


def main():
    mode, host, port, cafile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    user = sys.argv[5] if len(sys.argv) > 5 else "anonymous"
    password = sys.argv[6] if len(sys.argv) > 6 else "anonymous@"
    ctx = ssl.create_default_context(cafile=cafile)
    if os.environ.get("FTPS_TLS12"):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if mode == "reuse":
        f = login(ReusingFTP_TLS, host, port, ctx, user, password)
        out = io.BytesIO()
        print("RETR", f.retrbinary("RETR a.txt", out.write), out.getvalue().decode())
        data = bytes(i % 251 for i in range(100000))
        print("STOR", f.storbinary("STOR up.bin", io.BytesIO(data)))
        print("NLST", " ".join(sorted(f.nlst())))
        print("VERSION", f.sock.version())
        print("QUIT", f.quit())
    elif mode == "plain":
        f = login(ftplib.FTP_TLS, host, port, ctx, user, password)
        try:
            f.nlst()
            print("NLST worked")
        except (ssl.SSLError, OSError, EOFError) as e:
            # The server refused the data connection's TLS session: its reply follows.
            print("data error", type(e).__name__)
            try:
                print("reply", f.getresp())
            except ftplib.all_errors as e:
                print("reply", e)
        except ftplib.all_errors as e:
            print("reply", e)
    elif mode == "pipelined":
        s = socket.create_connection((host, port), timeout=20)
        f = s.makefile("rb")
        print("banner", f.readline().decode().strip())
        s.sendall(b"AUTH TLS\r\nUSER pipelined\r\n")
        print("auth", f.readline().decode().strip())
        t = ctx.wrap_socket(s, server_hostname=host)
        t.sendall(b"PWD\r\n")
        print("first", t.makefile("rb").readline().decode().strip())
    elif mode == "cut":
        f = login(ReusingFTP_TLS, host, port, ctx, user, password)
        f.voidcmd("TYPE I")
        conn, _ = f.ntransfercmd("STOR cut.bin")
        conn.sendall(b"x" * 50000)
        # A bare TCP close: no close_notify, as if the connection had been cut.
        raw = socket.socket(fileno=conn.detach())
        raw.shutdown(socket.SHUT_WR)
        try:
            print("reply", f.getresp())
        except ftplib.all_errors as e:
            print("reply", e)
        raw.close()
    elif mode == "protc":
        f = ftplib.FTP_TLS(context=ctx, timeout=20)
        f.connect(host, port)
        f.auth()
        f.login(user, password)
        try:
            print("PROT before PBSZ", f.voidcmd("PROT P"))
        except ftplib.error_perm as e:
            print("PROT before PBSZ", e)
        f.voidcmd("PBSZ 0")
        try:
            print("PROT C", f.voidcmd("PROT C"))
        except ftplib.error_perm as e:
            print("PROT C", e)
        try:
            print("NLST", " ".join(sorted(f.nlst())))
        except ftplib.all_errors as e:
            print("NLST", e)
    elif mode == "hold":
        f = login(ReusingFTP_TLS, host, port, ctx, user, password)
        print("before", subject_cn(host, port, ctx), flush=True)
        print("ready", flush=True)
        sys.stdin.readline()
        print("after", subject_cn(host, port, ctx))
        print("old session", " ".join(sorted(f.nlst())))
        f.quit()
    elif mode == "sibling":
        other, other_pw = sys.argv[7], sys.argv[8]
        first = login(ReusingFTP_TLS, host, port, ctx, user, password)
        first.nlst()  # its own data connection: the session is in use
        second = login(SessionOfFTP_TLS, host, port, ctx, user, password)
        second.session = first.sock.session
        out = io.BytesIO()
        print("SIBLING", reply_of(second, lambda: second.retrbinary("RETR a.txt", out.write)),
              out.getvalue().decode())
        third = login(SessionOfFTP_TLS, host, port, ctx, other, other_pw)
        third.session = first.sock.session
        print("FOREIGN", reply_of(third, lambda: third.retrbinary("RETR a.txt", io.BytesIO().write)))
    elif mode == "many":
        count = int(os.environ.get("FTPS_COUNT", "200"))
        f = login(ReusingFTP_TLS, host, port, ctx, user, password)
        ok = 0
        for _ in range(count):
            out = io.BytesIO()
            r = reply_of(f, lambda: f.retrbinary("RETR a.txt", out.write))
            if not (r.startswith("226") and out.getvalue()):
                print("FAILED", r)
                break
            ok += 1
        print("MANY %d of %d" % (ok, count))
    elif mode == "early":
        f = login(ReusingFTP_TLS, host, port, ctx, user, password)
        f.voidcmd("TYPE I")
        h, p = ftplib.parse227(f.sendcmd("PASV"))
        raw = socket.create_connection((h, p), timeout=20)
        conn = ctx.wrap_socket(raw, server_hostname=host, session=f.sock.session)
        f.putcmd("RETR a.txt")
        first = f.getresp()
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        conn.close()
        print("EARLY", first, f.voidresp(), data.decode())
    elif mode == "clearlate":
        f = login(ReusingFTP_TLS, host, port, ctx, user, password)
        h, p = ftplib.parse227(f.sendcmd("PASV"))
        f.voidcmd("PROT C")
        raw = socket.create_connection((h, p), timeout=20)
        f.putcmd("NLST")
        first = f.getresp()
        data = b""
        while True:
            chunk = raw.recv(65536)
            if not chunk:
                break
            data += chunk
        raw.close()
        print("CLEARLATE", first, f.voidresp(), data.decode().split())
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
