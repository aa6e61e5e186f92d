"""Network namespaces for partition tests (tests/cluster/test_partition.py
and the fault-injection suite in tests/fault/).

`Net(n)` makes a bridge `bcnbr<tag>` in the root namespace holding
10.213.<x>.254/24, and n namespaces `bcn<tag>-<i>`, each with `lo` and one
end of a veth pair (10.213.<x>.<i>/24) whose other end is on the bridge.
Clients in the root namespace reach every server through the bridge.

Two ways to cut:
- isolate(i) / heal(i): take server i's veth off the bridge: it reaches
  nobody and nobody (clients included) reaches it.
- cut(i, j) / uncut(i, j), partition(groups): drop the traffic between two
  servers only, both ways, silently (as a real partition does: TCP sees
  timeouts, not errors), while clients still reach both.  Done with a
  permanent neighbour entry pointing each one's address at a MAC address
  nobody has (this kernel has neither iptables nor the prio qdisc, and a
  blackhole route fails new connections at once instead of dropping).

Only 10.213.<x>.* and 127.0.0.0/8 are ever used.  teardown() removes
everything this Net created and checks that nothing is left.
"""

import os
import random
import shutil
import subprocess
import time

_rand = random.SystemRandom()
NOWHERE_MAC = "02:00:00:00:be:ac"      # locally administered, unused


def ip(*args, check=True):
    p = subprocess.run(["ip"] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20)
    if check and p.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args),
                                          p.stderr.decode().strip()))
    return p


def can_use_namespaces():
    """None if this process can create namespaces, else why not."""
    if os.geteuid() != 0:
        return "not root (network namespaces need CAP_NET_ADMIN)"
    for tool in ("ip", "curl"):
        if shutil.which(tool) is None:
            return "%s is not installed" % tool
    return None


class Net:
    """A bridge in the root namespace and one namespace per server."""

    def __init__(self, n):
        self.n = n
        self.tag = self._free_tag()
        self.bridge = "bcnbr" + self.tag
        self.subnet = self._free_subnet()
        self.ns = ["bcn%s-%d" % (self.tag, i + 1) for i in range(n)]
        self.host_veth = ["bcn%sh%d" % (self.tag, i + 1) for i in range(n)]
        self.ns_veth = ["bcn%sn%d" % (self.tag, i + 1) for i in range(n)]
        self.made_ns = []
        self.made_links = []
        self.isolated = set()        # i: off the bridge
        self.cuts = set()            # (i, j), i != j: i's packets to j drop

    @staticmethod
    def _free_tag():
        """4 random hex digits no namespace or link of ours uses yet."""
        used = ip("netns", "list").stdout.decode() + \
            ip("-o", "link").stdout.decode()
        for _ in range(100):
            tag = "%04x" % _rand.randrange(0x10000)
            if "bcn" + tag not in used and "bcnbr" + tag not in used:
                return tag
        raise RuntimeError("no free name for the namespaces")

    @staticmethod
    def _free_subnet():
        used = ip("-o", "addr").stdout.decode() + \
            ip("route").stdout.decode()
        for _ in range(200):
            x = _rand.randint(1, 250)
            if "10.213.%d." % x not in used:
                return x
        raise RuntimeError("no free 10.213.x.0/24")

    def addr(self, i):
        return "10.213.%d.%d" % (self.subnet, i + 1)

    def setup(self):
        ip("link", "add", self.bridge, "type", "bridge")
        self.made_links.append(self.bridge)
        ip("addr", "add", "10.213.%d.254/24" % self.subnet, "dev",
           self.bridge)
        ip("link", "set", self.bridge, "up")
        for i in range(self.n):
            ns, vh, vn = self.ns[i], self.host_veth[i], self.ns_veth[i]
            ip("netns", "add", ns)
            self.made_ns.append(ns)
            ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
            ip("link", "add", vh, "type", "veth", "peer", "name", vn,
               "netns", ns)
            self.made_links.append(vh)
            ip("link", "set", vh, "master", self.bridge)
            ip("link", "set", vh, "up")
            ip("netns", "exec", ns, "ip", "addr", "add",
               "%s/24" % self.addr(i), "dev", vn)
            ip("netns", "exec", ns, "ip", "link", "set", vn, "up")

    # ---- whole-server isolation (clients cut off too) -----------------------

    def isolate(self, i):
        ip("link", "set", self.host_veth[i], "nomaster")
        self.isolated.add(i)

    def heal(self, i):
        ip("link", "set", self.host_veth[i], "master", self.bridge)
        self.isolated.discard(i)

    # ---- server-to-server cuts (clients still reach everyone) ---------------

    def _drop(self, i, j):
        ip("-n", self.ns[i], "neigh", "replace", self.addr(j), "lladdr",
           NOWHERE_MAC, "nud", "permanent", "dev", self.ns_veth[i])
        self.cuts.add((i, j))

    def _undrop(self, i, j):
        p = ip("-n", self.ns[i], "neigh", "del", self.addr(j), "dev",
               self.ns_veth[i], check=False)
        err = p.stderr.decode()
        if p.returncode != 0 and "No such file" not in err and \
                "Cannot find" not in err:
            raise RuntimeError("neigh del: %s" % err.strip())
        self.cuts.discard((i, j))

    def cut(self, i, j):
        """Drop every packet between servers i and j, both ways."""
        self._drop(i, j)
        self._drop(j, i)

    def uncut(self, i, j):
        self._undrop(i, j)
        self._undrop(j, i)

    def partition(self, groups):
        """Cut every pair of servers in different groups (lists of
        indexes); servers in no group are cut from everyone."""
        where = {}
        for g, members in enumerate(groups):
            for i in members:
                where[i] = g
        for i in range(self.n):
            for j in range(i + 1, self.n):
                if where.get(i, -1 - i) != where.get(j, -1 - j):
                    self.cut(i, j)

    def heal_all(self):
        """Undo every cut and isolation made through this Net."""
        errors = []
        for i, j in sorted(self.cuts):
            try:
                self._undrop(i, j)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                errors.append(str(e))
        for i in sorted(self.isolated):
            try:
                self.heal(i)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                errors.append(str(e))
        if errors:
            raise RuntimeError("; ".join(errors))

    # ---- teardown -----------------------------------------------------------

    def teardown(self):
        """Remove everything this Net created (veths first: deleting one end
        deletes the pair; then the namespaces, then the bridge) and check
        that nothing is left; report what could not be removed."""
        errors = []
        links = [x for x in self.made_links if x != self.bridge]
        if self.bridge in self.made_links:
            links.append(self.bridge)
        for link in links[:-1] if self.bridge in links else links:
            self._del_link(link, errors)
        for ns in self.made_ns:
            p = ip("netns", "del", ns, check=False)
            if p.returncode != 0:
                errors.append("netns del %s: %s" % (ns, p.stderr.decode()))
        if self.bridge in links:
            self._del_link(self.bridge, errors)
        self.cuts.clear()
        self.isolated.clear()

        def leftovers():
            names = ip("netns", "list").stdout.decode() + \
                ip("-o", "link").stdout.decode()
            return [x for x in self.made_ns + self.made_links
                    if x + " " in names or x + ":" in names or
                    x + "@" in names]
        deadline = time.monotonic() + 10
        while leftovers() and time.monotonic() < deadline:
            time.sleep(0.05)
        if leftovers():
            errors.append("left behind: %s" % leftovers())
        assert not errors, errors

    @staticmethod
    def _del_link(link, errors):
        p = ip("link", "del", link, check=False)
        err = p.stderr.decode()
        if p.returncode != 0 and "Cannot find device" not in err:
            errors.append("link del %s: %s" % (link, err))
