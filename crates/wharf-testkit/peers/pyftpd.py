"""pyftpdlib as a test peer: user demo/secret with all rights in --root, on an OS-assigned port.
Prints `LISTENING ADDR:PORT` once it listens. Options bend it the way the client tests need."""
import argparse
import logging
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer

p = argparse.ArgumentParser()
p.add_argument("--root", required=True)
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--without", action="append", default=[], help="remove a command (EPSV, EPRT, REST...)")
p.add_argument("--masquerade", help="address announced in PASV replies")
p.add_argument("--broken-passive", action="store_true", help="announce a port nobody listens on")
p.add_argument("--max-per-ip", type=int, default=0)
p.add_argument("--passive-port", type=int, help="the one passive port")
a = p.parse_args()

authorizer = DummyAuthorizer()
authorizer.add_user("demo", "secret", a.root, perm="elradfmwMT")


class Handler(FTPHandler):
    pass


Handler.authorizer = authorizer
Handler.banner = "pyftpdlib ready."
Handler.proto_cmds = {k: v for k, v in FTPHandler.proto_cmds.items() if k not in set(a.without)}
if a.masquerade:
    Handler.masquerade_address = a.masquerade
if a.passive_port:
    Handler.passive_ports = [a.passive_port]
if a.broken_passive:
    # Port 1 on loopback: nothing listens there, so the client's connection is refused.
    def ftp_PASV(self, line):
        self.respond("227 Entering Passive Mode (127,0,0,1,0,1).")

    def ftp_EPSV(self, line):
        self.respond("229 Entering Extended Passive Mode (|||1|)")

    Handler.ftp_PASV = ftp_PASV
    Handler.ftp_EPSV = ftp_EPSV

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
server = FTPServer((a.host, 0), Handler)
server.max_cons_per_ip = a.max_per_ip
host, port = server.address[:2]
shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
print(f"LISTENING {shown}", flush=True)
server.serve_forever()
