"""Copies a tree up and back down with aioftp (PyPI), passive only (aioftp has no active mode).

    aioftp_tree.py HOST PORT USER PASSWORD SRC REMOTE BACK [--tls CAFILE]

--tls: explicit FTPS (AUTH TLS, PBSZ 0, PROT P). aioftp opens each data connection with TLS at
once, before it sends RETR/STOR/LIST, resuming the control connection's session.
Prints "aioftp OK" at the end; any failure is an exception and a non-zero exit.
"""

import asyncio
import pathlib
import ssl
import sys

import aioftp


async def main():
    host, port, user, password, src, remote, back = sys.argv[1:8]
    rest = sys.argv[8:]
    tls = rest[rest.index("--tls") + 1] if "--tls" in rest else None
    client = aioftp.Client(socket_timeout=30, connection_timeout=30)
    await client.connect(host, int(port))
    if tls:
        await client.upgrade_to_tls(ssl.create_default_context(cafile=tls))
    await client.login(user, password)
    src = pathlib.Path(src)
    await client.make_directory(remote)
    for path in sorted(src.rglob("*")):
        target = remote + "/" + path.relative_to(src).as_posix()
        if path.is_dir():
            await client.make_directory(target)
        else:
            await client.upload(path, target, write_into=True)
    back = pathlib.Path(back)
    back.mkdir(parents=True, exist_ok=True)
    for path, info in await client.list(remote, recursive=True):
        local = back / pathlib.PurePosixPath(path).relative_to(remote)
        if info["type"] == "dir":
            local.mkdir(parents=True, exist_ok=True)
        else:
            local.parent.mkdir(parents=True, exist_ok=True)
            await client.download(path, local, write_into=True)
    await client.quit()
    print("aioftp OK")


asyncio.run(main())
