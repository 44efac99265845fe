"""pyspnego/pypsrp side of the interop tests, driven over stdin/stdout.

Usage:
  pyhelper.py server <ntlm|negotiate> [cbt_hex]     (credentials from NTLM_USER_FILE)
  pyhelper.py client <user> <password> <ntlm|negotiate|negotiate-kerberos-first>

One command per line, base64 arguments, "-" for "no token":
  STEP <token|->        -> OK <token|-> <complete 0|1>
  WRAP <plain>          -> OK <multipart body>   (pypsrp WinRMEncryption.wrap_message)
  UNWRAP <body>         -> OK <plain>            (pypsrp WinRMEncryption.unwrap_message)
  INFO                  -> OK <client principal|-> <negotiated protocol>
Errors answer "ERR <exception>".
"""
import base64
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


def main():
    role = sys.argv[1]
    if role == "server":
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
    winrm = WinRMEncryption(ctx, WinRMEncryption.SPNEGO)

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
                principal = ctx.client_principal if role == "server" else None
                reply = f"OK {principal or '-'} {ctx.negotiated_protocol}"
            else:
                reply = f"ERR unknown command {cmd}"
        except Exception as e:  # report every failure to the Rust side
            reply = "ERR " + f"{type(e).__name__}: {e}".replace("\n", " ")
        print(reply, flush=True)


if __name__ == "__main__":
    main()
