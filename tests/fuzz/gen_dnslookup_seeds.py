#!/usr/bin/python3
"""Write the seed inputs (seed-NNN) of tests/fuzz/corpus/dnslookup/: DNS
queries for every name form and type that fuzz_dnslookup.c's catalog
answers, with and without EDNS0 (and a client subnet), over each transport
and configuration (the low byte of the ID chooses them), a few that make it
change the catalog first (rcode bits 0xf), and a few malformed ones.

Run by hand when the name forms change; the build never runs it, and the
generated files are what is committed. Inputs the fuzzer found are kept
next to the seeds under their libFuzzer names and are not touched here.

Usage: tests/fuzz/gen_dnslookup_seeds.py   (from the repository root)
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "dnslookup")

A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, OPT, AXFR, ANY = (
    1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 252, 255)


def name(text):
    if text in ("", "."):
        return b"\0"
    return b"".join(bytes([len(x)]) + x.encode("latin-1")
                    for x in text.rstrip(".").split(".")) + b"\0"


def query(qname, qtype, sel=0, edns=None, ecs=False, flags=0x0100,
          counts=None):
    ar = 1 if edns is not None else 0
    qd, an, ns, ar = counts or (1, 0, 0, ar)
    msg = struct.pack(">HHHHHH", 0x1200 | sel, flags, qd, an, ns, ar)
    msg += name(qname) + struct.pack(">HH", qtype, 1)
    if edns is not None:
        opt = b""
        if ecs:
            opt = struct.pack(">HHHBB", 8, 7, 1, 24, 0) + bytes([192, 0, 2])
        msg += b"\0" + struct.pack(">HHIH", OPT, edns, 0, len(opt)) + opt
    return msg


NAMES = [
    ("web.service.consul", SRV), ("web.service.consul", A),
    ("web.service.consul", AAAA), ("web.service.consul", ANY),
    ("web.service.consul", TXT), ("WEB.Service.CONSUL", SRV),
    ("primary.web.service.consul", SRV), ("v1.2.web.service.dc1.consul", A),
    ("_web._tcp.service.consul", SRV), ("_web._primary.service.consul", SRV),
    ("_web._tcp.consul", SRV), ("_web._tcp.dc1.consul", SRV),
    ("web.service.dc1.dc.consul", SRV), ("web.service.dc2.consul", SRV),
    ("web.service.alt.test", SRV), ("many.service.consul", SRV),
    ("many.service.consul", A), ("api.service.consul", A),
    ("ext.service.consul", SRV), ("dot.service.consul", SRV),
    ("odd.service.consul", SRV), ("db.service.consul", A),
    ("nope.service.consul", A), ("service.consul", A),
    ("n1.node.consul", A), ("n1.node.consul", TXT), ("n1.node.consul", ANY),
    ("n3.node.dc1.consul", AAAA), ("web.a.node.consul", A),
    ("ext.node.consul", A), ("nope.node.consul", A),
    ("0a000021.addr.dc1.consul", A),
    ("fd000000000000000000000000000003.addr.consul", AAAA),
    ("0a00002g.addr.consul", A), ("consul", SOA), ("consul", NS),
    ("consul", ANY), ("alt.test", SOA), ("dc1.consul", A),
    ("x.query.consul", SRV), ("1.0.0.10.in-addr.arpa", PTR),
    ("9.9.9.9.in-addr.arpa", PTR),
    (".".join(reversed("fd000000000000000000000000000003")) + ".ip6.arpa",
     PTR),
    ("example.com", A), ("consul", AXFR), ("web.service.consul", MX),
]


def seeds():
    out = []
    for i, (n, t) in enumerate(NAMES):
        out.append(query(n, t, sel=i % 8))
        out.append(query(n, t, sel=(i + 3) % 8, edns=1232))
    out.append(query("many.service.consul", SRV, sel=0, edns=4096))
    out.append(query("many.service.consul", SRV, sel=4, edns=4096))
    out.append(query("web.service.consul", A, sel=1, edns=1232, ecs=True))
    out.append(query("web.service.consul", A, edns=512, flags=0x7900))
    out.append(query("web.service.consul", A, flags=0x8100))
    out.append(query("web.service.consul", A, counts=(2, 0, 0, 0)))
    out.append(query("web.service.consul", A)[:20])
    # Rcode bits 0xf: the fuzzer changes the catalog first.
    out.append(query("web.service.consul", SRV, flags=0x010f))
    out.append(query("web.service.consul", SRV, sel=2, flags=0x011f))
    out.append(query("n2.node.consul", ANY, sel=5, flags=0x011f))
    hdr = struct.pack(">HHHHHH", 0x1201, 0x0100, 1, 0, 0, 0)
    out.append(hdr + b"\xc0\x0c\x00\x01\x00\x01")
    out.append(hdr + b"\x03web\xc0\x0c\x00\x01\x00\x01")
    out.append(hdr + b"\x40abc\x00\x00\x01\x00\x01")
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    for i, s in enumerate(seeds(), 1):
        with open(os.path.join(OUT, "seed-%03d" % i), "wb") as f:
            f.write(s)


if __name__ == "__main__":
    main()
