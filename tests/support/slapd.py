"""Start a real OpenLDAP `slapd` (Debian's package) on free loopback ports for tests, and stop it after.

Each server gets a throwaway directory: a minimal slapd.conf, converted to a cn=config directory with
`slaptest` (the format Debian runs), an mdb database loaded with `slapadd`, and optionally TLS (ldaps://
and StartTLS) with certificates from `dockyard cert`. A missing slapd is a failure, never a skip.

The tree (base dc=example,dc=org):
    ou=people       alice, bob, carol, dave, erin (erin's DN has a comma and parentheses in it)
    ou=contractors  a second dave: a username that matches two entries
    ou=groups       developers (alice, bob), registry-admins (alice), qa (erin)   [groupOfNames]
    ou=services     cn=reader: the service account the registry binds as to search
Passwords are in USERS / READER_PASSWORD; userPassword is readable by nobody (anonymous may only bind).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.cli.cert import CertPaths, make_certificates
from tests.support.processes import stop_process
from tests.support.server import free_port, require_tool

BASE_DN = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "admin-secret"
PEOPLE_DN = f"ou=people,{BASE_DN}"
GROUPS_DN = f"ou=groups,{BASE_DN}"
READER_DN = f"cn=reader,ou=services,{BASE_DN}"
READER_PASSWORD = "reader-secret"
# A second loopback address that is NOT in the server certificate, to test hostname checking.
UNNAMED_LOOPBACK = "127.0.0.2"


@dataclass(frozen=True)
class DirectoryUser:
    uid: str
    password: str
    cn: str
    mail: str
    dn: str


def _person(uid: str, password: str, cn: str, rdn: str | None = None, ou: str = "people") -> DirectoryUser:
    return DirectoryUser(uid, password, cn, f"{uid}@example.org", f"{rdn or f'uid={uid}'},ou={ou},{BASE_DN}")


USERS = {
    "alice": _person("alice", "alice-pw-1", "Alice Liddell"),
    "bob": _person("bob", "bob-pw-2", "Bob Builder"),
    "carol": _person("carol", "carol-pw-3", "Carol Danvers"),
    "dave": _person("dave", "dave-pw-4", "Dave People"),
    "erin": _person("erin", "erin-pw-5", "Erin (QA) Smith, Jr", rdn=r"cn=Erin (QA) Smith\, Jr"),
}
DUPLICATE_DAVE = _person("dave", "dave-pw-4", "Dave Contractor", ou="contractors")
GROUPS = {
    "developers": ["alice", "bob"],
    "registry-admins": ["alice"],
    "qa": ["erin"],
}


@dataclass
class RunningSlapd:
    url: str  # ldap://127.0.0.1:PORT (StartTLS available when TLS is on)
    ldaps_url: str | None  # ldaps://127.0.0.1:PORT2 when TLS is on
    certs: CertPaths | None
    workdir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        stop_process(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def dockyard_ldap(self, **extra: Any) -> dict[str, Any]:
        """dockyard's `auth.ldap` settings for this directory: StartTLS, the reader service account,
        people and groups; `extra` adds or replaces keys."""
        assert self.certs is not None, "start it with tls=True"
        return {
            "url": self.url,
            "starttls": True,
            "ca_file": str(self.certs.ca_cert),
            "bind_dn": READER_DN,
            "bind_password": READER_PASSWORD,
            "user_base_dn": PEOPLE_DN,
            "group_base_dn": GROUPS_DN,
            **extra,
        }


def ssha(password: str) -> str:
    """An OpenLDAP {SSHA} userPassword value, so the tree stores hashes as real directories do."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def tree_ldif(organization: str = "Example") -> str:
    """The test tree as LDIF, for slapadd."""
    entries = [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: {organization}\n",
        *(
            f"dn: ou={ou},{BASE_DN}\nobjectClass: organizationalUnit\nou: {ou}\n"
            for ou in ("people", "contractors", "groups", "services")
        ),
        f"dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: reader\nuserPassword: {ssha(READER_PASSWORD)}\n",
    ]
    for user in [*USERS.values(), DUPLICATE_DAVE]:
        entries.append(
            f"dn: {user.dn}\nobjectClass: inetOrgPerson\nuid: {user.uid}\ncn: {user.cn}\n"
            f"sn: {user.cn.split()[-1]}\nmail: {user.mail}\nuserPassword: {ssha(user.password)}\n"
        )
    for group, members in GROUPS.items():
        member_lines = "".join(f"member: {USERS[uid].dn}\n" for uid in members)
        entries.append(f"dn: cn={group},{GROUPS_DN}\nobjectClass: groupOfNames\ncn: {group}\n{member_lines}")
    return "\n".join(entries)


def _slapd_conf(workdir: Path, certs: CertPaths | None) -> str:
    tls = (
        f"TLSCACertificateFile {certs.ca_cert}\n"
        f"TLSCertificateFile {certs.server_cert}\n"
        f"TLSCertificateKeyFile {certs.server_key}\n"
        if certs
        else ""
    )
    return f"""\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {workdir}/slapd.pid
argsfile {workdir}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
{tls}
# Like Active Directory, take a DN with an empty password as an anonymous bind: the trap to avoid.
allow bind_anon_dn

database mdb
maxsize 67108864
suffix "{BASE_DN}"
rootdn "{ADMIN_DN}"
rootpw {ssha(ADMIN_PASSWORD)}
directory {workdir}/db
index objectClass,uid,member eq
# Passwords: anyone may bind with one, nobody may read them.
access to attrs=userPassword
  by self auth
  by anonymous auth
  by * none
access to *
  by * read
"""


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{output}")


def start_slapd(workdir: Path, *, tls: bool = False, timeout: float = 20.0) -> RunningSlapd:
    """Configure, load and start a slapd in workdir; return when it answers a search. Stop it with .stop()."""
    slapd = require_tool("slapd")
    slaptest = require_tool("slaptest")
    slapadd = require_tool("slapadd")
    ldapsearch = require_tool("ldapsearch")

    workdir.mkdir(parents=True, exist_ok=True)
    certs = make_certificates("127.0.0.1", workdir / "certs") if tls else None
    config_dir, db_dir = workdir / "slapd.d", workdir / "db"
    config_dir.mkdir()
    db_dir.mkdir()
    conf = workdir / "slapd.conf"
    conf.write_text(_slapd_conf(workdir, certs))
    ldif = workdir / "tree.ldif"
    # A name of its own, so the start-up check knows it reached this slapd and not one another test started.
    organization = f"Example {secrets.token_hex(8)}"
    ldif.write_text(tree_ldif(organization))
    # Load first (slapadd creates the database), then convert the checked config to the cn=config
    # directory slapd runs from: slaptest opens the database and fails while it does not exist yet.
    _run([slapadd, "-f", str(conf), "-b", BASE_DN, "-l", str(ldif)])
    _run([slaptest, "-f", str(conf), "-F", str(config_dir)])

    # The port is only known free when picked; another process can take it before slapd binds. Retry.
    for _attempt in range(3):
        port = free_port()
        urls = [f"ldap://127.0.0.1:{port}/"]
        ldaps_url = None
        if tls:
            ldaps_port = free_port()
            ldaps_url = f"ldaps://127.0.0.1:{ldaps_port}"
            urls += [f"{ldaps_url}/", f"ldaps://{UNNAMED_LOOPBACK}:{ldaps_port}/"]
        log_path = workdir / f"slapd-{port}.log"
        with log_path.open("wb") as log:
            # -d keeps slapd in the foreground (so we own the process); "stats" logs each operation.
            process = subprocess.Popen(
                [slapd, "-F", str(config_dir), "-h", " ".join(urls), "-d", "stats"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        running = RunningSlapd(f"ldap://127.0.0.1:{port}", ldaps_url, certs, workdir, process, log_path)
        if _wait_until_answering(running, ldapsearch, organization, timeout):
            return running
        running.stop()
        if "Address already in use" not in running.log():
            raise RuntimeError(f"slapd did not start within {timeout}s:\n{running.log()}")
    raise RuntimeError(f"slapd could not bind a free port:\n{running.log()}")


def _wait_until_answering(running: RunningSlapd, ldapsearch: str, organization: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            return False
        if _port_open(running.port):
            # Listening is not enough: ask for the base entry, as a client would.
            result = subprocess.run(
                [ldapsearch, "-x", "-LLL", "-H", running.url, "-b", BASE_DN, "-s", "base", "o"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if result.returncode == 0 and f"o: {organization}" in result.stdout:
                return True
        time.sleep(0.05)
    return False


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
