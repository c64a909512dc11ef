"""Drives `wharf serve` with Python's ftplib, passive and active, and checks what it sees.

Usage: ftplib_session.py HOST PORT ROOT   (ROOT: the served directory, to check bytes on disk)
Exits non-zero with a message on the first mismatch.
"""
import ftplib
import io
import os
import sys

host, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
payload = bytes(range(256)) * 4096 + b"\r\n\n\r tail"


def check(cond, msg):
    if not cond:
        print("FAIL:", msg)
        sys.exit(1)


for passive in (True, False):
    tag = "pasv" if passive else "active"
    ftp = ftplib.FTP()
    ftp.connect(host, port, timeout=20)
    check(ftp.getwelcome().startswith("220"), "welcome")
    ftp.login("anonymous", "ftplib@example.net")
    ftp.set_pasv(passive)
    name = f"ftplib-{tag}.bin"
    resp = ftp.storbinary(f"STOR {name}", io.BytesIO(payload))
    check(resp.startswith("226"), f"STOR reply {resp}")
    with open(os.path.join(root, name), "rb") as f:
        check(f.read() == payload, "bytes on disk after STOR")
    check(ftp.size(name) == len(payload), "SIZE")
    got = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", got.write)
    check(got.getvalue() == payload, "RETR bytes")
    got = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", got.write, rest=1000)
    check(got.getvalue() == payload[1000:], "RETR with REST")
    check(name in ftp.nlst(), "NLST lists the file")
    facts = dict(ftp.mlsd())
    check(facts[name]["type"] == "file" and int(facts[name]["size"]) == len(payload), f"MLSD {facts.get(name)}")
    lines = []
    ftp.retrlines("LIST", lines.append)
    check(any(l.endswith(" " + name) for l in lines), f"LIST {lines}")
    d = f"dir-{tag}"
    check(ftp.mkd(d) == "/" + d, "MKD path")
    ftp.cwd(d)
    check(ftp.pwd() == "/" + d, "PWD")
    ftp.cwd("..")
    ftp.rename(name, f"{d}/{name}")
    check(os.path.exists(os.path.join(root, d, name)), "rename on disk")
    ftp.delete(f"{d}/{name}")
    ftp.rmd(d)
    check(not os.path.exists(os.path.join(root, d)), "RMD on disk")
    text = b"line one\nline two\n"
    ftp.storlines(f"STOR text-{tag}.txt", io.BytesIO(text.replace(b"\n", b"\r\n")))
    with open(os.path.join(root, f"text-{tag}.txt"), "rb") as f:
        check(f.read() == text, "TYPE A upload stored with LF")
    try:
        ftp.sendcmd("RETR ../../etc/passwd")
        check(False, "escape not refused")
    except ftplib.error_perm as e:
        check(str(e).startswith("550") or str(e).startswith("425"), f"escape reply {e}")
    ftp.quit()

# ABOR as ftplib sends it (urgent data) during a large download.
big = os.path.join(root, "big.bin")
with open(big, "wb") as f:
    f.write(b"\0" * (32 << 20))
ftp = ftplib.FTP()
ftp.connect(host, port, timeout=20)
ftp.login()
conn = ftp.transfercmd("RETR big.bin")
conn.recv(65536)
resp = ftp.abort()
check(resp.startswith("426"), f"abort reply {resp}")
# ftplib returns the transfer's 426; the ABOR's own 226 follows.
check(ftp.getresp().startswith("226"), "226 after 426")
conn.close()
check(ftp.voidcmd("NOOP").startswith("200"), "session usable after ABOR")
ftp.quit()
print("ftplib OK")
