#!/usr/bin/env python3
"""Drives an SMS Provider over WinRM with pypsrp, a WS-Management client written elsewhere.

Usage: pypsrp_provider.py PORT USER PASSWORD SITE SUP_SERVER [--ssl CA_FILE]

Enumerates the site's SUP components with WQL (Enumerate + Pull), opens a site control file
session, creates the SUP's "SMS Software Update Point" row, reads it back with Get, makes it the
active SUP with a Put of SMS_WSUS_CONFIGURATION_MANAGER, commits and releases; prints one JSON
object of what it saw. With a wrong password it prints {"refused": "..."}.
"""
import json
import sys
import xml.etree.ElementTree as ET

from pypsrp.exceptions import AuthenticationError, WSManFaultError, WinRMTransportError
from pypsrp.wsman import NAMESPACES, OptionSet, SelectorSet, WSMan

WMI = "http://schemas.microsoft.com/wbem/wsman/1/wmi/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
WSEN = NAMESPACES["wsen"]
WSMAN = NAMESPACES["wsman"]


def uri(site, cls):
    return f"{WMI}root/sms/site_{site}/{cls}"


def text(el, name):
    for child in el:
        if child.tag.endswith("}" + name):
            return child.text or ""
    return None


def query(w, site, wql):
    ruri = uri(site, "*")
    body = ET.Element(f"{{{WSEN}}}Enumerate")
    ET.SubElement(body, f"{{{WSMAN}}}OptimizeEnumeration")
    ET.SubElement(body, f"{{{WSMAN}}}MaxElements").text = "1"
    ET.SubElement(body, f"{{{WSMAN}}}Filter", Dialect="http://schemas.microsoft.com/wbem/wsman/1/WQL").text = wql
    resp = w.enumerate(ruri, body)
    out = []
    ctx = resp.find("wsen:EnumerateResponse/wsen:EnumerationContext", NAMESPACES)
    items = resp.find("wsen:EnumerateResponse/wsman:Items", NAMESPACES)
    end = resp.find("wsen:EnumerateResponse/wsman:EndOfSequence", NAMESPACES)
    pulls = 0
    while True:
        if items is not None:
            out.extend(list(items))
        if end is not None or ctx is None:
            return out, pulls
        pull = ET.Element(f"{{{WSEN}}}Pull")
        ET.SubElement(pull, f"{{{WSEN}}}EnumerationContext").text = ctx.text
        ET.SubElement(pull, f"{{{WSEN}}}MaxElements").text = "1"
        resp = w.pull(ruri, pull)
        pulls += 1
        ctx = resp.find("wsen:PullResponse/wsen:EnumerationContext", NAMESPACES)
        items = resp.find("wsen:PullResponse/wsen:Items", NAMESPACES)
        end = resp.find("wsen:PullResponse/wsen:EndOfSequence", NAMESPACES)


def scf(w, site, method, params, handle=None):
    ruri = uri(site, "SMS_SiteControlFile")
    body = ET.Element(f"{{{ruri}}}{method}_INPUT")
    for k, v in params.items():
        ET.SubElement(body, f"{{{ruri}}}{k}").text = v
    opts = None
    if handle:
        opts = OptionSet()
        opts.add_option("wmi:SessionHandle", handle)
    resp = w.invoke(f"{ruri}/{method}", ruri, body, option_set=opts)
    return resp.find(f"s:Body/{{{ruri}}}{method}_OUTPUT", NAMESPACES)


def embedded(parent, tag, site, name, value="0", value1="", value2=""):
    q = uri(site, "SMS_EmbeddedProperty")
    el = ET.SubElement(parent, tag, {f"{{{XSI}}}type": "SMS_EmbeddedProperty_Type"})
    ET.SubElement(el, f"{{{q}}}PropertyName").text = name
    ET.SubElement(el, f"{{{q}}}Value").text = value
    ET.SubElement(el, f"{{{q}}}Value1").text = value1
    ET.SubElement(el, f"{{{q}}}Value2").text = value2


def main():
    port, user, password, site, sup = sys.argv[1:6]
    ssl = "--ssl" in sys.argv
    ca = sys.argv[sys.argv.index("--ssl") + 1] if ssl else False
    w = WSMan("localhost" if ssl else "127.0.0.1", port=int(port), ssl=ssl, auth="ntlm", username=user, password=password,
              encryption="auto", cert_validation=ca, operation_timeout=20)
    seen = {}
    try:
        comps, pulls = query(w, site, f"SELECT * FROM SMS_SCI_Component WHERE SiteCode = '{site}' AND FileType = 2")
    except (AuthenticationError, WinRMTransportError) as e:
        print(json.dumps({"refused": str(e)}))
        return
    seen["components"] = sorted(text(c, "ComponentName") for c in comps)
    seen["pulls"] = pulls
    handle = text(scf(w, site, "GetSessionHandle", {}), "SessionHandle")
    seen["handle"] = handle
    scf(w, site, "RefreshSCF", {"SiteCode": site}, handle)
    opts = OptionSet()
    opts.add_option("wmi:SessionHandle", handle)

    nal = f'["Display=\\\\{sup}\\"]MSWNET:["SMS_SITE={site}"]\\\\{sup}\\'
    row_uri = uri(site, "SMS_SCI_SysResUse")
    row = ET.Element(f"{{{row_uri}}}SMS_SCI_SysResUse")
    ET.SubElement(row, f"{{{row_uri}}}NALPath").text = nal
    ET.SubElement(row, f"{{{row_uri}}}NALType").text = "Windows NT Server"
    embedded(row, f"{{{row_uri}}}Props", site, "WSUSIISPort", "8530")
    embedded(row, f"{{{row_uri}}}Props", site, "WSUSIISSSLPort", "8531")
    embedded(row, f"{{{row_uri}}}Props", site, "SSLWSUS", "0")
    ET.SubElement(row, f"{{{row_uri}}}RoleName").text = "SMS Software Update Point"
    ET.SubElement(row, f"{{{row_uri}}}SiteCode").text = site
    w.create(row_uri, row, option_set=opts)

    keys = SelectorSet()
    for k, v in [("FileType", "2"), ("ItemName", f"{nal},SMS Software Update Point"),
                 ("ItemType", "System Resource Usage"), ("SiteCode", site)]:
        keys.add_option(k, v)
    got = w.get(row_uri, selector_set=keys, option_set=opts)
    inst = got[0]
    seen["row_props"] = sorted(text(p, "PropertyName") for p in inst if p.tag.endswith("}Props"))

    wcm = next(c for c in comps if text(c, "ComponentName") == "SMS_WSUS_CONFIGURATION_MANAGER")
    comp_uri = uri(site, "SMS_SCI_Component")
    props = [p for p in wcm if p.tag.endswith("}Props")]
    for p in props:
        wcm.remove(p)
    embedded(wcm, f"{{{comp_uri}}}Props", site, "DefaultWSUS", value2=sup)
    embedded(wcm, f"{{{comp_uri}}}Props", site, "DefaultWSUSIISPort", "8530")
    embedded(wcm, f"{{{comp_uri}}}Props", site, "DefaultUseParentWSUS", "0")
    embedded(wcm, f"{{{comp_uri}}}Props", site, "ClientReportingLevel", "1")
    ckeys = SelectorSet()
    for k, v in [("FileType", "2"), ("ItemName", text(wcm, "ItemName")), ("ItemType", "Component"), ("SiteCode", site)]:
        ckeys.add_option(k, v)
    w.put(comp_uri, wcm, option_set=opts, selector_set=ckeys)

    try:
        scf(w, site, "CommitSCF", {"SiteCode": "XYZ"}, handle)
        seen["wrong_site_commit"] = "accepted"
    except WSManFaultError as e:
        seen["wrong_site_commit"] = e.code
    seen["commit"] = text(scf(w, site, "CommitSCF", {"SiteCode": site}, handle), "ReturnValue")
    scf(w, site, "ReleaseSessionHandle", {"SessionHandle": handle})
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
