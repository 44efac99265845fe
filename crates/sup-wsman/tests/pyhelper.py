"""pyspnego/pypsrp side of the interop tests, driven over stdin/stdout.

Usage:
  pyhelper.py server <ntlm|negotiate> [cbt_hex]     (credentials from NTLM_USER_FILE)
  pyhelper.py kerberos-server                       (a Heimdal KDC of its own; first prints
                                                     "REALM <realm> <kdc port> <user> <password>
                                                     <service principal>")
  pyhelper.py kerberos-winrm                        (the same KDC, and a WinRM listener on
                                                     127.0.0.1 accepting Kerberos and sealing
                                                     with pypsrp; prints "WINRM <port>" after the
                                                     realm line and answers every Get with an
                                                     SMS_Site instance naming the request's
                                                     selector)
  pyhelper.py client <user> <password> <ntlm|negotiate|negotiate-kerberos-first>

One command per line, base64 arguments, "-" for "no token":
  STEP <token|->        -> OK <token|-> <complete 0|1>
  WRAP <plain>          -> OK <multipart body>   (pypsrp WinRMEncryption.wrap_message)
  UNWRAP <body>         -> OK <plain>            (pypsrp WinRMEncryption.unwrap_message)
  INFO                  -> OK <client principal|-> <negotiated protocol>
Errors answer "ERR <exception>".
"""
import atexit
import base64
import os
import random
import socket
import sys

import spnego
from spnego.channel_bindings import GssChannelBindings
from pypsrp.encryption import WinRMEncryption


def enc(data):
    return "-" if data is None else base64.b64encode(data).decode()


def dec(text):
    return b"" if text == "-" else base64.b64decode(text)


class FakeKerberos:
    """Stands in for a Kerberos context, so that pyspnego's own SPNEGO client lists
    Kerberos first with an optimistic token, as a domain-joined client would; the
    acceptor must then pick NTLM (the initiator's second choice)."""

    complete = False
    _requires_mech_list_mic = False

    def step(self, in_token=None, channel_bindings=None):
        # Not a real AP-REQ: the acceptor must not look inside it.
        return b"\x60\x0b\x06\x09\x2a\x86\x48\x86\xf7\x12\x01\x02\x02"

    def new_context(self):
        return FakeKerberos()


SERVICE = "HTTP/server.example"
REALM = "LAB.TEST"
USER = "alice"
HEIMDAL = "/usr/lib/heimdal-servers/kdc"


def free_port():
    for _ in range(100):
        port = random.randrange(20000, 60000)
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


def start_realm():
    """A Heimdal KDC of its own on a loopback port, an account that must pre-authenticate (as
    every Active Directory account does), and the WinRM service's key in the keytab that the
    acceptor, MIT's GSSAPI, reads (KRB5_KTNAME). Heimdal rather than MIT's KDC because MIT
    seals an AS-REP's encrypted part as an EncTGSRepPart (RFC 4120 5.4.2 allows it), which
    sspi refuses; Active Directory, like Heimdal, sends an EncASRepPart."""
    import shutil
    import subprocess
    import tempfile
    import time

    workdir = tempfile.mkdtemp(prefix="sup-kdc-")
    atexit.register(shutil.rmtree, workdir, True)
    port = free_port()
    conf = os.path.join(workdir, "krb5.conf")
    keytab = os.path.join(workdir, "keytab")
    with open(conf, "w") as f:
        f.write(
            f"""[libdefaults]
    default_realm = {REALM}
    dns_lookup_kdc = false
    dns_lookup_realm = false
[realms]
    {REALM} = {{
        kdc = 127.0.0.1:{port}
    }}
[kdc]
    database = {{
        dbname = {workdir}/heimdal
        realm = {REALM}
        mkey_file = {workdir}/m-key
        log_file = {workdir}/kdc.log
    }}
    require-preauth = true
[logging]
    kdc = FILE:{workdir}/kdc.log
"""
        )
    env = dict(os.environ, KRB5_CONFIG=conf)
    password = "Pw-" + os.urandom(6).hex()

    def kadmin(*args):
        subprocess.run(["kadmin.heimdal", "-l", "-c", conf, *args], env=env, check=True,
                       stdout=subprocess.DEVNULL)

    subprocess.run(["kstash", "--random-key", f"--key-file={workdir}/m-key"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kadmin("init", "--realm-max-ticket-life=1d", "--realm-max-renewable-life=1d", REALM)
    kadmin("add", f"--password={password}", "--use-defaults", USER)
    kadmin("add", "--random-key", "--use-defaults", SERVICE)
    kadmin("ext_keytab", "-k", keytab, SERVICE)
    kdc = subprocess.Popen([HEIMDAL, f"--config-file={conf}", f"--ports={port}",
                            "--addresses=127.0.0.1"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    atexit.register(kdc.wait)
    atexit.register(kdc.terminate)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if kdc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the KDC did not start")
            time.sleep(0.05)
    os.environ.update(KRB5_CONFIG=conf, KRB5_KTNAME=keytab)
    print(f"REALM {REALM} {port} {USER}@{REALM} {password} {SERVICE}", flush=True)


def serve_winrm():
    """A WinRM listener with only what a client's Kerberos needs: the `Kerberos` scheme, the
    AP-REP in the 200, and Kerberos-sealed bodies both ways (pypsrp's framing)."""
    import http.server
    import re

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        ctx = None
        winrm = None

        def log_message(self, *args):
            pass

        def reply(self, status, body=b"", headers=()):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            auth = self.headers.get("Authorization", "")
            if auth.lower().startswith("kerberos "):
                ctx = spnego.server(protocol="kerberos")
                try:
                    out = ctx.step(base64.b64decode(auth.split(" ", 1)[1]))
                except Exception:
                    return self.reply(401, headers=[("WWW-Authenticate", "Kerberos")])
                Handler.ctx = ctx
                Handler.winrm = WinRMEncryption(ctx, WinRMEncryption.KERBEROS)
                return self.reply(200, headers=[("WWW-Authenticate", "Kerberos " + enc(out))])
            if Handler.winrm is None or "multipart/encrypted" not in self.headers.get("Content-Type", ""):
                return self.reply(401, headers=[("WWW-Authenticate", "Kerberos")])
            soap = Handler.winrm.unwrap_message(body, "Encrypted Boundary").decode()
            message_id = re.search(r"MessageID[^>]*>([^<]+)<", soap).group(1)
            site = re.search(r'Selector Name="SiteCode"[^>]*>([^<]+)<', soap).group(1)
            uri = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/site_%s/SMS_Site" % site
            answer = (
                '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
                'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"><s:Header>'
                "<a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/GetResponse</a:Action>"
                "<a:MessageID>uuid:00000000-0000-0000-0000-000000000001</a:MessageID>"
                f"<a:RelatesTo>{message_id}</a:RelatesTo></s:Header><s:Body>"
                f'<p:SMS_Site xmlns:p="{uri}"><p:SiteCode>{site}</p:SiteCode>'
                f"<p:ServerName>{Handler.ctx.client_principal}</p:ServerName></p:SMS_Site>"
                "</s:Body></s:Envelope>"
            ).encode()
            content_type, sealed = Handler.winrm.wrap_message(answer)
            self.reply(200, sealed, headers=[(
                "Content-Type",
                f'{content_type};protocol="{WinRMEncryption.KERBEROS}";boundary="Encrypted Boundary"',
            )])

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    print(f"WINRM {server.server_address[1]}", flush=True)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    # Serves until stdin closes.
    sys.stdin.read()


def main():
    role = sys.argv[1]
    if role == "kerberos-winrm":
        start_realm()
        serve_winrm()
        return
    protocol = WinRMEncryption.SPNEGO
    if role == "kerberos-server":
        start_realm()
        ctx = spnego.server(protocol="kerberos")
        protocol = WinRMEncryption.KERBEROS
    elif role == "server":
        cbt = None
        if len(sys.argv) > 3:
            cbt = GssChannelBindings(application_data=bytes.fromhex(sys.argv[3]))
        ctx = spnego.server(protocol=sys.argv[2], channel_bindings=cbt)
    elif sys.argv[4] == "negotiate-kerberos-first":
        from spnego._context import GSSMech
        from spnego._negotiate import NegotiateProxy

        ntlm = spnego.client(sys.argv[2], sys.argv[3], hostname="server.example", service="HTTP", protocol="ntlm")
        ntlm._is_wrapped = True
        ctx = NegotiateProxy(
            hostname="server.example",
            service="HTTP",
            _negotiate_contexts={GSSMech.kerberos: FakeKerberos(), GSSMech.ntlm: ntlm},
        )
    else:
        ctx = spnego.client(
            sys.argv[2],
            sys.argv[3],
            hostname="server.example",
            service="HTTP",
            protocol=sys.argv[4],
            options=spnego.NegotiateOptions.wrapping_winrm,
        )
    winrm = WinRMEncryption(ctx, protocol)

    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        try:
            cmd = parts[0]
            if cmd == "STEP":
                out = ctx.step(dec(parts[1]) or None)
                reply = f"OK {enc(out)} {int(ctx.complete)}"
            elif cmd == "WRAP":
                content_type, body = winrm.wrap_message(dec(parts[1]))
                assert content_type == "multipart/encrypted", content_type
                reply = f"OK {enc(body)}"
            elif cmd == "UNWRAP":
                reply = f"OK {enc(winrm.unwrap_message(dec(parts[1]), 'Encrypted Boundary'))}"
            elif cmd == "INFO":
                principal = ctx.client_principal if role.endswith("server") else None
                reply = f"OK {principal or '-'} {ctx.negotiated_protocol}"
            else:
                reply = f"ERR unknown command {cmd}"
        except Exception as e:  # report every failure to the Rust side
            reply = "ERR " + f"{type(e).__name__}: {e}".replace("\n", " ")
        print(reply, flush=True)


if __name__ == "__main__":
    main()
