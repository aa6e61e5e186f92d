"""Faults for the fault run.  Each nemesis has start() (inject; False if
it cannot apply right now, e.g. there is no leader to cut off) and stop()
(heal what it did).  The harness heals everything again after each one
anyway (heal_all) and then waits for the cluster to recover.

  partition-leader     the leader alone on one side, the other two together
  partition-follower   a follower alone ("isolate a follower")
  partition-random     one random server alone ("split one/two")
  partition-bridge     two servers cut from each other, both still see the
                       third (majorities overlap)
  isolate-follower     a follower's link off the bridge: clients lose it too
  isolate-leader       the same for the leader
  kill-leader, kill-follower, kill-two, kill-all
                       kill -9, restarted (same data) when healed
  pause-leader, pause-follower
                       SIGSTOP for longer than the election timeout, SIGCONT
  wipe-follower, wipe-leader
                       kill -9, data directory emptied, restarted at once
                       with --join (README "Operating a cluster")
  membership           remove a follower through /v1/operator/raft/peer
                       under load, wipe it, add it again with --join
  disk-full            fill the file system of the server whose data
                       directory is a small loop-mounted ext4 (or tmpfs)

Partitions between servers leave every server reachable from the clients
(netns_util.Net.cut); "isolate" cuts a server from everyone.
"""

import os
import signal
import time

SINGLE = ["partition-leader", "partition-follower", "partition-random",
          "partition-bridge", "isolate-follower", "isolate-leader",
          "kill-leader", "kill-follower", "kill-two", "kill-all",
          "pause-leader", "pause-follower", "wipe-follower", "wipe-leader",
          "membership", "disk-full"]
# Nemeses that combine: the second one picks among the servers the first
# left alone.
MIXABLE = ["partition-leader", "partition-follower", "partition-random",
           "isolate-follower", "kill-leader", "kill-follower",
           "pause-leader", "pause-follower", "disk-full", "wipe-follower"]


class Nemesis:
    name = "?"

    def __init__(self, h, rng, avoid=()):
        self.h, self.rng, self.avoid = h, rng, set(avoid)
        self.targets = []            # server indexes
        self.detail = ""

    def candidates(self, role):
        """Indexes of servers in `role` (leader, follower, any) that are
        not avoided; [] if the role cannot be told (no leader)."""
        n = len(self.h.cluster.servers)
        free = [i for i in range(n) if i not in self.avoid]
        if role == "any":
            return free
        ld = self.h.leader_index()
        if ld is None:
            return []
        if role == "leader":
            return [ld] if ld in free else []
        return [i for i in free if i != ld]

    def start(self):
        raise NotImplementedError

    def stop(self):
        pass

    def names(self):
        return [self.h.cluster.servers[i].name for i in self.targets]


class Partition(Nemesis):
    def __init__(self, h, rng, avoid, kind):
        super().__init__(h, rng, avoid)
        self.kind = kind
        self.name = "partition-" + kind
        self.cuts = []

    def start(self):
        n = len(self.h.cluster.servers)
        if self.kind == "bridge":
            mids = self.candidates("any")
            if not mids:
                return False
            mid = self.rng.choice(mids)
            a, b = [i for i in range(n) if i != mid]
            self.h.net.cut(a, b)
            self.cuts = [(a, b)]
            self.targets = [a, b]
            self.detail = "%s and %s cut, both see %s" % (
                self.h.cluster.servers[a].name,
                self.h.cluster.servers[b].name,
                self.h.cluster.servers[mid].name)
            return True
        role = {"leader": "leader", "follower": "follower",
                "random": "any"}[self.kind]
        cands = self.candidates(role)
        if not cands:
            return False
        i = self.rng.choice(cands)
        self.targets = [i]
        for j in range(n):
            if j != i:
                self.h.net.cut(i, j)
                self.cuts.append((i, j))
        self.detail = "%s alone" % self.h.cluster.servers[i].name
        return True

    def stop(self):
        for i, j in self.cuts:
            self.h.net.uncut(i, j)


class Isolate(Nemesis):
    def __init__(self, h, rng, avoid, role):
        super().__init__(h, rng, avoid)
        self.role = role
        self.name = "isolate-" + role

    def start(self):
        cands = self.candidates(self.role)
        if not cands:
            return False
        i = self.rng.choice(cands)
        self.targets = [i]
        self.h.net.isolate(i)
        return True

    def stop(self):
        for i in self.targets:
            if i in self.h.net.isolated:
                self.h.net.heal(i)


class Kill(Nemesis):
    def __init__(self, h, rng, avoid, which):
        super().__init__(h, rng, avoid)
        self.which = which
        self.name = "kill-" + which

    def start(self):
        if self.which in ("leader", "follower"):
            cands = self.candidates(self.which)
            if not cands:
                return False
            self.targets = [self.rng.choice(cands)]
        elif self.which == "two":
            cands = self.candidates("any")
            if len(cands) < 2:
                return False
            self.targets = self.rng.sample(cands, 2)
        else:
            self.targets = self.candidates("any")
        for i in self.targets:
            self.h.kill(self.h.cluster.servers[i])
        return True

    def stop(self):
        for i in self.targets:
            srv = self.h.cluster.servers[i]
            if not srv.running():
                self.h.start(srv)


class Pause(Nemesis):
    def __init__(self, h, rng, avoid, role):
        super().__init__(h, rng, avoid)
        self.role = role
        self.name = "pause-" + role

    def start(self):
        cands = [i for i in self.candidates(self.role)
                 if self.h.cluster.servers[i].running()]
        if not cands:
            return False
        i = self.rng.choice(cands)
        self.targets = [i]
        self.h.pause(self.h.cluster.servers[i])
        return True

    def stop(self):
        for i in self.targets:
            self.h.resume(self.h.cluster.servers[i])


class Wipe(Nemesis):
    def __init__(self, h, rng, avoid, role):
        super().__init__(h, rng, avoid)
        self.role = role
        self.name = "wipe-" + role

    def start(self):
        cands = self.candidates(self.role)
        if not cands:
            return False
        i = self.rng.choice(cands)
        self.targets = [i]
        self.h.wipe_and_rejoin(self.h.cluster.servers[i])
        return True


class Membership(Nemesis):
    name = "membership"

    def start(self):
        cands = self.candidates("follower")
        if not cands:
            return False
        i = self.rng.choice(cands)
        self.targets = [i]
        srv = self.h.cluster.servers[i]
        removed = self.h.remove_peer(srv)
        self.detail = "%s %s" % (srv.name, "removed" if removed else
                                 "could not be removed: %s" %
                                 self.h.removal[-3:])
        self.h.wipe_and_rejoin(srv)
        return True


class DiskFull(Nemesis):
    name = "disk-full"

    def start(self):
        d = self.h.disk
        if d is None or d.index in self.avoid:
            return False
        self.targets = [d.index]
        self.detail = d.fill()
        self.h.disk_full.add(self.h.cluster.servers[d.index].name)
        return True

    def stop(self):
        self.h.disk.free()


class Mixed(Nemesis):
    def __init__(self, parts):
        self.parts = parts
        self.name = "+".join(p.name for p in parts)
        self.targets = []
        self.detail = ""

    def start(self):
        started = []
        for p in self.parts:
            p.avoid |= set(self.targets)
            if p.start():
                started.append(p)
                self.targets += p.targets
        self.parts = started
        self.name = "+".join(p.name for p in started)
        self.detail = "; ".join(p.detail for p in started if p.detail)
        return bool(started)

    def stop(self):
        for p in reversed(self.parts):
            p.stop()

    def names(self):
        return [n for p in self.parts for n in p.names()]


def make(name, h, rng, avoid=()):
    if "+" in name:
        parts, used = [], set(avoid)
        for n in name.split("+"):
            parts.append(make(n, h, rng, used))
        return Mixed(parts)
    kind, _, arg = name.partition("-")
    if kind == "partition":
        return Partition(h, rng, avoid, arg)
    if kind == "isolate":
        return Isolate(h, rng, avoid, arg)
    if kind == "kill":
        return Kill(h, rng, avoid, arg)
    if kind == "pause":
        return Pause(h, rng, avoid, arg)
    if kind == "wipe":
        return Wipe(h, rng, avoid, arg)
    if name == "membership":
        return Membership(h, rng, avoid)
    if name == "disk-full":
        return DiskFull(h, rng, avoid)
    raise ValueError("unknown nemesis %r (known: %s)" % (
        name, ", ".join(SINGLE)))


def signal_process(pid, sig):
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


# ---- a small file system for one server's data directory --------------------


class SmallDisk:
    """A loop-mounted ext4 image (tmpfs with size= if loop devices do not
    work here) used as server `index`'s data directory; fill() takes all
    its free space with a file, free() deletes it."""

    def __init__(self, index, mountpoint, image, size_mb):
        self.index = index
        self.mnt = str(mountpoint)
        self.image = str(image)
        self.size_mb = size_mb
        self.kind = None
        self.filler = os.path.join(self.mnt, ".filler")

    def setup(self):
        import subprocess
        os.makedirs(self.mnt, exist_ok=True)
        try:
            with open(self.image, "wb") as f:
                f.truncate(self.size_mb << 20)
            subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", self.image],
                           check=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
            subprocess.run(["mount", "-o", "loop", self.image, self.mnt],
                           check=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
            self.kind = "ext4 on a loop device"
        except (OSError, subprocess.SubprocessError):
            if os.path.exists(self.image):
                os.unlink(self.image)
            subprocess.run(["mount", "-t", "tmpfs", "-o",
                            "size=%dm" % self.size_mb, "tmpfs", self.mnt],
                           check=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
            self.kind = "tmpfs"
        lf = os.path.join(self.mnt, "lost+found")
        if os.path.isdir(lf):
            os.rmdir(lf)
        return self

    def free_bytes(self):
        st = os.statvfs(self.mnt)
        return st.f_bavail * st.f_frsize

    def fill(self):
        before = self.free_bytes()
        with open(self.filler, "ab", buffering=0) as f:
            try:
                if before > (1 << 20):
                    os.posix_fallocate(f.fileno(), 0, before - (256 << 10))
            except OSError:
                pass
            for size in (65536, 4096, 512):      # then the last blocks
                try:
                    for _ in range(1 << 16):         # bounded: 4 GiB
                        f.seek(0, os.SEEK_END)
                        f.write(b"\0" * size)
                except OSError:
                    pass
        return "%s: %d MiB free -> %d KiB" % (self.kind, before >> 20,
                                                self.free_bytes() >> 10)

    def free(self):
        try:
            os.unlink(self.filler)
        except FileNotFoundError:
            pass

    def teardown(self):
        import subprocess
        self.free()
        errors = []
        for attempt in range(50):
            p = subprocess.run(["umount", self.mnt], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=60)
            if p.returncode == 0:
                break
            if b"not mounted" in p.stderr:
                break
            time.sleep(0.2)
        else:
            p = subprocess.run(["umount", "-l", self.mnt],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=60)
            if p.returncode != 0:
                errors.append("umount %s: %s" % (self.mnt,
                                                 p.stderr.decode()))
        if os.path.exists(self.image):
            os.unlink(self.image)
        assert not errors, errors


def pause(pid):
    return signal_process(pid, signal.SIGSTOP)


def resume(pid):
    return signal_process(pid, signal.SIGCONT)
