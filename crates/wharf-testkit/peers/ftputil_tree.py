"""Copies a tree up and back down with ftputil (PyPI), the way its users script it.

    ftputil_tree.py HOST PORT USER PASSWORD SRC REMOTE BACK [--active] [--tls CAFILE]

Uploads the local tree SRC to the remote directory REMOTE (makedirs + upload), then downloads
REMOTE into the local directory BACK (walk + download). --tls: explicit FTPS with PROT P; the
data connections resume the control connection's TLS session (ftplib does not by itself, so
the session factory's class passes it, as ftputil users do against vsftpd's require_ssl_reuse).
Prints "ftputil OK" at the end; any failure is an exception and a non-zero exit.
"""

import ftplib
import os
import ssl
import sys

import ftputil
import ftputil.session

# The session-resuming FTP_TLS of the FTPS test client beside this script.
from ftps_client import ReusingFTP_TLS


def main():
    host, port, user, password, src, remote, back = sys.argv[1:8]
    rest = sys.argv[8:]
    active = "--active" in rest
    tls = rest[rest.index("--tls") + 1] if "--tls" in rest else None
    if tls:
        context = ssl.create_default_context(cafile=tls)

        class Base(ReusingFTP_TLS):
            def __init__(self, *a, **k):
                super().__init__(*a, context=context, timeout=30, **k)

        factory = ftputil.session.session_factory(
            base_class=Base,
            port=int(port),
            use_passive_mode=not active,
            encrypt_data_channel=True,
            encoding="UTF-8",
        )
    else:

        class Base(ftplib.FTP):
            def __init__(self, *a, **k):
                super().__init__(*a, timeout=30, **k)

        factory = ftputil.session.session_factory(
            base_class=Base, port=int(port), use_passive_mode=not active, encoding="UTF-8"
        )
    with ftputil.FTPHost(host, user, password, session_factory=factory) as ftp:
        for dirpath, dirnames, filenames in os.walk(src):
            rel = os.path.relpath(dirpath, src)
            target = remote if rel == "." else ftp.path.join(remote, rel)
            ftp.makedirs(target, exist_ok=True)
            for name in filenames:
                ftp.upload(os.path.join(dirpath, name), ftp.path.join(target, name))
        for dirpath, dirnames, filenames in ftp.walk(remote):
            rel = os.path.relpath(dirpath, remote)
            local = back if rel == "." else os.path.join(back, rel)
            os.makedirs(local, exist_ok=True)
            for name in filenames:
                ftp.download(ftp.path.join(dirpath, name), os.path.join(local, name))
    print("ftputil OK")


main()
