#!/usr/bin/python3
"""Read the responses that tests/unit/dns/test_wire.c encodes with dnspython.

The Check tests decode the encoder's output with a decoder of their own;
this is a second opinion from an implementation we did not write. It runs
the test binary with DNS_WIRE_DUMP set, so that the round-trip tests write
each response (<name>.bin) and what it must say (<name>.txt, one line per
header field and per record, in dnspython's text form), then parses every
.bin strictly (trailing bytes are an error) and compares.

Usage (from the repository root, after `make build/san/tests/unit/dns/test_wire`):
    tests/unit/dns/check_wire.py [path/to/test_wire]
Needs python3-dnspython (Debian). Exits non-zero on any difference.
"""
import os
import subprocess
import sys
import tempfile

# The repository's dns/ directory would shadow dnspython's package.
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != REPO]

import dns.edns  # noqa: E402
import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdataclass  # noqa: E402
import dns.rdatatype  # noqa: E402

EXPECTED_DUMPS = {"all_types", "srv_compressed", "truncated", "badvers",
                  "formerr"}


def describe(wire):
    """The lines test_wire.c writes, computed from dnspython's reading."""
    m = dns.message.from_wire(wire)  # raises on trailing bytes
    flags = dns.flags.to_text(m.flags).lower().split()
    lines = ["id %d" % m.id, "flags " + " ".join(flags),
             "rcode " + dns.rcode.to_text(m.rcode())]
    for q in m.question:
        lines.append("question %s %s %s" % (
            q.name, dns.rdataclass.to_text(q.rdclass),
            dns.rdatatype.to_text(q.rdtype)))
    if m.edns >= 0:
        do = 1 if m.ednsflags & dns.flags.DO else 0
        lines.append("edns %d payload %d do %d" % (m.edns, m.payload, do))
        for o in m.options:
            if isinstance(o, dns.edns.ECSOption):
                lines.append("ecs %s/%d/%d" % (o.address, o.srclen,
                                               o.scopelen))
            else:
                lines.append("option %s" % o.otype)
    for sec, rrsets in (("answer", m.answer), ("authority", m.authority),
                        ("additional", m.additional)):
        for rrset in rrsets:
            for rd in rrset:
                lines.append("%s %s %d %s %s %s" % (
                    sec, rrset.name, rrset.ttl,
                    dns.rdataclass.to_text(rrset.rdclass),
                    dns.rdatatype.to_text(rrset.rdtype), rd.to_text()))
    return lines


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        REPO, "build/san/tests/unit/dns/test_wire")
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, DNS_WIRE_DUMP=tmp, CK_VERBOSITY="silent")
        subprocess.run([binary], env=env, check=True)
        names = sorted(f[:-4] for f in os.listdir(tmp) if f.endswith(".bin"))
        missing = EXPECTED_DUMPS - set(names)
        if missing:
            print("check_wire: no dump for %s" % ", ".join(sorted(missing)))
            failed += 1
        for name in names:
            with open(os.path.join(tmp, name + ".bin"), "rb") as f:
                wire = f.read()
            with open(os.path.join(tmp, name + ".txt")) as f:
                want = f.read().splitlines()
            try:
                got = describe(wire)
            except Exception as e:  # any parse error is a failure
                print("check_wire: %s: dnspython: %r" % (name, e))
                failed += 1
                continue
            # DNS names compare without case; dnspython groups records
            # into RRsets, so order within the message is not compared.
            g = sorted(x.lower() for x in got)
            w = sorted(x.lower() for x in want)
            if g != w:
                failed += 1
                print("check_wire: %s differs" % name)
                for x in sorted(set(w) - set(g)):
                    print("  expected: " + x)
                for x in sorted(set(g) - set(w)):
                    print("  dnspython: " + x)
            else:
                print("check_wire: %s: %d bytes, %d lines agree" % (
                    name, len(wire), len(got)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
