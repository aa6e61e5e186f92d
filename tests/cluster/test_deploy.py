"""Deployment files: `make install`, the systemd units, the Docker and
Kubernetes YAML, and the Docker entrypoint driving real servers.

    BEACOND=build/san/beacond /usr/bin/python3 -m pytest -q \
        tests/cluster/test_deploy.py

- make install into a DESTDIR lays out the binary, the units (ExecStart
  following PREFIX), the backup script, the environment example (which
  names every BEACON_* variable of `beacond --help`) and a man page that
  renders;
- systemd-analyze verify accepts the installed units (skipped without it);
- every YAML file under deploy/ parses, and the Kubernetes and compose
  files hold what a cluster needs (names, addresses and probes that agree);
- deploy/docker/docker-entrypoint.sh, given only BEACON_* variables, starts
  three servers on 127.0.0.1 that form one cluster (a write on one is read
  with ?stale on all); a fourth, not in the initial cluster, joins through
  BEACON_AUTO_JOIN and restarts without joining again; a server whose data
  directory was wiped rejoins through it; a server with no data and
  nothing to join is refused; the health check mode and the backup script
  (date-stamped file, the newest N kept, accepted back by PUT /v1/snapshot)
  work against them; every server exits 0 on SIGTERM, sent to the PID the
  entrypoint exec'd into.

Docker and Kubernetes themselves cannot run here: the images and the
manifests are only checked statically.
"""

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

pytest.register_assert_rewrite("cluster_util")
from cluster_util import (  # noqa: E402
    BEACOND, LSAN_SUPP, SANITIZER_MARKERS, free_loopback_ports, kv_path,
    new_session, wait_until)

pytest_plugins = ["cluster_util"]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ENTRYPOINT = DEPLOY / "docker" / "docker-entrypoint.sh"
BACKUP = DEPLOY / "systemd" / "beacon-backup.sh"
PREFIX = "/usr/local"

HARDENING = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict",
    "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes", "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
}


def help_env_vars():
    out = subprocess.run([str(BEACOND), "--help"], check=True,
                         capture_output=True, text=True).stdout
    names = re.findall(r"env (BEACON_[A-Z0-9_]+)", out)
    assert len(names) >= 15, out
    return names


def unit_keys(path):
    """{key: [values]} of a systemd unit file (all sections)."""
    keys = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        k, _, v = line.partition("=")
        keys.setdefault(k.strip(), []).append(v.strip())
    return keys


def make_install(destdir, prefix=PREFIX):
    p = subprocess.run(
        ["make", "-C", str(REPO), "--no-print-directory", "install",
         "DESTDIR=%s" % destdir, "PREFIX=%s" % prefix],
        capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, "make install failed:\n%s\n%s" % (
        p.stdout[-3000:], p.stderr[-3000:])
    return Path(str(destdir) + prefix)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("destdir")
    return dest, make_install(dest)


# ---- (a) make install -------------------------------------------------------


def test_make_install_layout(installed, tmp_path):
    dest, root = installed
    binary = root / "bin" / "beacond"
    assert binary.is_file() and os.access(binary, os.X_OK)
    assert binary.stat().st_mode & 0o777 == 0o755
    p = subprocess.run([str(binary), "--help"], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 0 and "Usage: beacond" in p.stdout, p

    units = root / "lib" / "systemd" / "system"
    unit = unit_keys(units / "beacond.service")
    assert unit["ExecStart"] == [PREFIX + "/bin/beacond"]
    assert unit["User"] == ["beacon"]
    assert unit["Type"] == ["exec"]
    assert unit["EnvironmentFile"] == ["-/etc/default/beacond"]
    assert unit["StateDirectory"] == ["beacon"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["KillSignal"] == ["SIGTERM"]
    assert unit["TimeoutStopSec"] == ["30"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["LimitNOFILE"] == ["65536"]
    for k, v in HARDENING.items():
        assert unit.get(k) == [v], (k, unit.get(k))
    assert "/var/lib/beacon" in " ".join(unit["ReadWritePaths"])

    backup = unit_keys(units / "beacon-backup.service")
    script = Path(backup["ExecStart"][0])
    assert str(script) == PREFIX + "/libexec/beacon/beacon-backup"
    assert os.access(str(dest) + str(script), os.X_OK)
    assert backup["StateDirectory"] == ["beacon-backups"]
    timer = unit_keys(units / "beacon-backup.timer")
    assert timer["WantedBy"] == ["timers.target"] and timer["OnCalendar"]

    example = (root / "share" / "doc" / "beacon" /
               "beacond.env.example").read_text()
    missing = [v for v in help_env_vars()
               if not re.search(r"^#%s=" % v, example, re.M)]
    assert not missing, ("beacond.env.example lacks (commented) %s: "
                         "document new options there" % missing)
    assert not re.search(r"^BEACON_", example, re.M), \
        "the example must set nothing until edited"
    for v in ("BEACON_NODE=beacon1", "BEACON_DATA_DIR=/var/lib/beacon",
              "BEACON_RAFT_ADDR=10.0.0.11:8300",
              "BEACON_INITIAL_CLUSTER=beacon1=10.0.0.11:8300,"
              "beacon2=10.0.0.12:8300,beacon3=10.0.0.13:8300"):
        assert "#" + v + "\n" in example, v

    man = root / "share" / "man" / "man8" / "beacond.8"
    text = man.read_text()
    assert text.startswith(".TH BEACOND 8 ")
    for opt in ("raft\\-addr", "initial\\-cluster", "BEACON_RAFT_ADDR"):
        assert opt in text, opt
    if shutil.which("man"):
        p = subprocess.run(["man", "--warnings", "-l", str(man)],
                           capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, MANWIDTH="80",
                                    MANPAGER="cat", PAGER="cat"))
        assert p.returncode == 0, p.stderr
        assert p.stderr.strip() == "", p.stderr
        assert "BEACOND(8)" in p.stdout and "--raft-addr" in p.stdout

    # Another PREFIX: the units follow it.
    other = make_install(tmp_path, "/opt/beacon")
    unit = unit_keys(other / "lib/systemd/system/beacond.service")
    assert unit["ExecStart"] == ["/opt/beacon/bin/beacond"]
    backup = unit_keys(other / "lib/systemd/system/beacon-backup.service")
    assert backup["ExecStart"] == ["/opt/beacon/libexec/beacon/beacon-backup"]
    assert (other / "bin" / "beacond").is_file()


# ---- (b) systemd-analyze verify ---------------------------------------------


def test_systemd_analyze_verify(installed, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    dest, root = installed
    # verify insists that ExecStart exists: point it at the DESTDIR copies.
    names = ["beacond.service", "beacon-backup.service", "beacon-backup.timer"]
    for name in names:
        text = (root / "lib/systemd/system" / name).read_text()
        text = re.sub(r"^ExecStart=/", "ExecStart=%s/" % dest, text,
                      flags=re.M)
        (tmp_path / name).write_text(text)
    env = dict(os.environ, SYSTEMD_LOG_COLOR="0")
    cmd = [analyze, "verify"]
    if shutil.which("man"):
        env["MANPATH"] = str(root / "share" / "man")   # Documentation=man:
    else:
        cmd.append("--man=no")
    p = subprocess.run(cmd + ["./" + n for n in names], cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=60, env=env)
    # Complaints about the host's own units are not ours.
    ours = [line for line in (p.stdout + p.stderr).splitlines()
            if any(n in line for n in names)]
    assert p.returncode == 0 and not ours, (
        "systemd-analyze verify (status %d):\n%s\n%s"
        % (p.returncode, p.stdout, p.stderr))


# ---- (c) YAML -----------------------------------------------------------------


def load_yaml(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def all_yaml():
    files = sorted(p for p in DEPLOY.rglob("*")
                   if p.suffix in (".yaml", ".yml"))
    assert files
    return {p.relative_to(DEPLOY).as_posix(): load_yaml(p) for p in files}


def entries(initial):
    return dict(item.split("=", 1) for item in initial.split(","))


def test_yaml_parses():
    for name, docs in all_yaml().items():
        assert docs, "%s is empty" % name
        for d in docs:
            assert isinstance(d, dict), (name, d)


def test_kubernetes_manifests():
    docs = []
    for name, ds in all_yaml().items():
        if name.startswith("kubernetes/"):
            docs += [d for d in ds if d.get("kind") != "Kustomization"]
    kinds = {}
    for d in docs:
        assert d.get("apiVersion") and d.get("metadata", {}).get("name"), d
        kinds.setdefault(d["kind"], []).append(d)
    for k in ("StatefulSet", "Service", "PodDisruptionBudget"):
        assert k in kinds, (k, sorted(kinds))

    (sts,) = kinds["StatefulSet"]
    spec = sts["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    labels = spec["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v
               for k, v in spec["selector"]["matchLabels"].items())
    services = {s["metadata"]["name"]: s for s in kinds["Service"]}
    for s in services.values():
        assert all(labels.get(k) == v
                   for k, v in s["spec"]["selector"].items()), s
    peers = services[spec["serviceName"]]["spec"]
    assert peers["clusterIP"] == "None"
    assert peers["publishNotReadyAddresses"] is True
    client = [s for s in services.values()
              if s["spec"].get("clusterIP") != "None"]
    assert client and any(p["port"] == 8500
                          for p in client[0]["spec"]["ports"])

    pod = spec["template"]["spec"]
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (c,) = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["readinessProbe"]["httpGet"]["path"] == "/v1/status/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v1/status/live"
    assert c["resources"]["requests"] and c["resources"]["limits"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    (claim,) = spec["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]] == "/var/lib/beacon"

    env = {e["name"]: e for e in c["env"]}
    assert env["BEACON_NODE"]["value"] == "$(POD_NAME)"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.name"
    assert env["BEACON_DATA_DIR"]["value"] == "/var/lib/beacon"
    # beacond requires this node's entry in the initial cluster to equal
    # its raft address byte for byte: expand both as Kubernetes would.
    for i in range(3):
        pod_env = {"POD_NAME": "beacon-%d" % i, "POD_NAMESPACE": "ns1"}

        def expand(s):
            return re.sub(r"\$\((\w+)\)", lambda m: pod_env[m.group(1)], s)
        initial = entries(expand(env["BEACON_INITIAL_CLUSTER"]["value"]))
        assert sorted(initial) == ["beacon-0", "beacon-1", "beacon-2"]
        raft = expand(env["BEACON_RAFT_ADDR"]["value"])
        assert initial["beacon-%d" % i] == raft
        assert raft.startswith("beacon-%d.%s.ns1.svc." % (
            i, spec["serviceName"])) and raft.endswith(":8300")

    (pdb,) = kinds["PodDisruptionBudget"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert all(labels.get(k) == v for k, v in
               pdb["spec"]["selector"]["matchLabels"].items())


def test_compose_file():
    (compose,) = all_yaml()["docker/compose.yaml"]
    services = compose["services"]
    assert sorted(services) == ["beacon1", "beacon2", "beacon3"]
    initials = set()
    for i, (name, svc) in enumerate(sorted(services.items()), 1):
        env = svc["environment"]
        assert env["BEACON_NODE"] == name
        initials.add(env["BEACON_INITIAL_CLUSTER"])
        assert entries(env["BEACON_INITIAL_CLUSTER"])[name] == \
            env["BEACON_RAFT_ADDR"] == "%s:8300" % name
        assert svc["ports"] == ["127.0.0.1:%d:8500" % (8500 + i)]
        assert any(v.endswith(":/var/lib/beacon") for v in svc["volumes"])
        assert "/v1/status/" in " ".join(svc["healthcheck"]["test"])
        assert list(svc["networks"]) == ["beacon"]
    assert len(initials) == 1
    assert "beacon" in compose["networks"]


def test_dockerfile_static():
    # Docker cannot run here: check the Dockerfile's text for what matters.
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert "debian:bookworm-slim" in text
    assert len(re.findall(r"^FROM ", text, re.M)) == 2
    assert "deploy/install-deps.sh" in text and "make " in text
    for pkg in ("libraft0/bookworm-backports", "libuv1", "libsqlite3-0",
                "libjansson4", "libmicrohttpd12", "libcurl4", "libxxhash0",
                "libsodium23", "libgnutls30",
                "ca-certificates", "curl"):
        assert re.search(r"\s%s\s" % re.escape(pkg), text), pkg
    user = re.search(r"^USER (\S+)", text, re.M)
    assert user and not user.group(1).startswith(("root", "0"))
    assert re.search(r"^VOLUME /var/lib/beacon$", text, re.M)
    assert re.search(r"^EXPOSE 8500 8300 8600 8600/udp$", text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*/v1/status/live", text, re.M)
    assert 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' in text
    assert os.access(ENTRYPOINT, os.X_OK)


# ---- (d) the Docker entrypoint, for real --------------------------------------


class EntrypointServer:
    """beacond started by docker-entrypoint.sh from BEACON_* variables."""

    def __init__(self, root, name, env):
        self.name = name
        self.dir = Path(root) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "entrypoint.log"
        self.env = env
        self.proc = None

    @property
    def url(self):
        return "http://" + self.env["BEACON_HTTP_ADDR"]

    def start(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("BEACON")}
        env.update(self.env)
        env["BEACOND_BIN"] = str(BEACOND)
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        env.setdefault("LSAN_OPTIONS", "suppressions=%s:print_suppressions=0"
                       % os.path.abspath(LSAN_SUPP))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(ENTRYPOINT)], stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, env=env, cwd=str(self.dir),
                start_new_session=True)
        return self

    def log(self):
        return self.log_path.read_text(errors="replace")

    def exe(self):
        try:
            return os.path.realpath("/proc/%d/exe" % self.proc.pid)
        except OSError:
            return ""

    def stop(self):
        """SIGTERM to the PID; require exit status 0."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        assert proc.poll() is None, "%s exited early (%s):\n%s" % (
            self.name, proc.returncode, self.log()[-3000:])
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.wait(10)
        assert rc == 0, "%s: status %d after SIGTERM\n%s" % (
            self.name, rc, self.log()[-3000:])

    def kill_quietly(self):
        """SIGKILL to the process group this test created for it (so that
        a beacond the entrypoint failed to exec into dies too)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait(10)
        self.proc = None

    def check_sanitizers(self):
        text = self.log()
        for m in SANITIZER_MARKERS:
            assert m not in text, "%s: %s\n%s" % (self.name, m, text[-6000:])


def test_entrypoint_forms_cluster(tmp_path):
    assert BEACOND.is_file(), "build beacond first or set BEACOND"
    ports = free_loopback_ports(8)
    http = ["127.0.0.1:%d" % p for p in ports[:4]]
    raft = ["127.0.0.1:%d" % p for p in ports[4:]]
    initial = ",".join("n%d=%s" % (i + 1, raft[i]) for i in range(3))
    servers = []
    session = new_session()

    def server(i, **extra):
        name = "n%d" % (i + 1)
        env = {"BEACON_NODE": name,
               "BEACON_DATA_DIR": str(tmp_path / name / "data"),
               "BEACON_HTTP_ADDR": http[i],
               "BEACON_INITIAL_CLUSTER": initial,
               # No DNS: four servers would share 127.0.0.1:8600.
               "BEACON_DNS_ADDR": "",
               "BEACON_LOG_LEVEL": "debug"}
        env.update(extra)
        s = EntrypointServer(tmp_path, name, env)
        servers.append(s)
        return s.start()

    def get(s, path, **kw):
        return session.get(s.url + path, timeout=3, **kw)

    try:
        # n1 names its raft address; n2 and n3 leave it to the entrypoint,
        # which takes their entry of BEACON_INITIAL_CLUSTER.
        server(0, BEACON_RAFT_ADDR=raft[0])
        server(1)
        server(2)
        for s in servers:
            # The entrypoint exec'd: the PID we hold is beacond's.
            wait_until(lambda: s.exe() == str(BEACOND.resolve()), 10,
                       "%s to exec beacond" % s.name)
        for i in (1, 2):
            assert "raft %s, http %s" % (raft[i], http[i]) in servers[i].log()

        def one_leader():
            leaders = {get(s, "/v1/status/leader").json() for s in servers}
            return len(leaders) == 1 and leaders.pop() in raft[:3]
        wait_until(one_leader, 20, "one leader named by all three")
        wait_until(lambda: all(get(s, "/v1/status/ready").status_code == 200
                               for s in servers), 10, "all ready")
        peers = get(servers[0], "/v1/status/peers").json()
        assert sorted(peers) == sorted(raft[:3])

        # A write through any server, readable everywhere with ?stale.
        r = session.put(servers[1].url + kv_path("deploy/k"), data=b"v1",
                        timeout=10)
        assert r.status_code == 200 and r.json() is True, r.text

        def replicated(s):
            r = get(s, kv_path("deploy/k", "stale&raw"))
            return r.status_code == 200 and r.content == b"v1"
        for s in servers:
            wait_until(lambda: replicated(s), 10, "%s to read it" % s.name)

        # HEALTHCHECK: the entrypoint's curl mode.
        hc_env = {k: v for k, v in os.environ.items()
                  if not k.startswith("BEACON")}

        def healthcheck(addr, *path):
            return subprocess.run(
                [str(ENTRYPOINT), "healthcheck", *path],
                env=dict(hc_env, BEACON_HTTP_ADDR=addr),
                capture_output=True, timeout=10).returncode
        assert healthcheck(http[0]) == 0
        assert healthcheck(http[2], "/v1/status/ready") == 0
        assert healthcheck(http[3]) != 0          # nothing listens there

        # A fourth server, not in the initial cluster, joins by itself.
        server(3, BEACON_RAFT_ADDR=raft[3], BEACON_AUTO_JOIN=http[0])
        wait_until(lambda: replicated(servers[3]), 20, "n4 to join")
        wait_until(lambda: sorted(get(servers[0], "/v1/status/peers").json())
                   == sorted(raft), 10, "n4 among the peers")
        assert "joining through" in servers[3].log()

        # Restarted with its data, n4 comes back without joining again (it
        # is not in the initial cluster: the entrypoint leaves that out).
        n4 = servers[3]
        n4.stop()
        mark = len(n4.log())
        n4.start()
        wait_until(lambda: replicated(n4), 20, "n4 back after a restart")
        assert "joining through" not in n4.log()[mark:]

        # n3 loses its data (a Kubernetes pod with a new, empty volume): with
        # BEACON_AUTO_JOIN it joins again instead of bootstrapping alone.
        n3 = servers[2]
        n3.stop()
        shutil.rmtree(n3.env["BEACON_DATA_DIR"])
        n3.env["BEACON_AUTO_JOIN"] = http[0]
        mark = len(n3.log())
        n3.start()
        wait_until(lambda: replicated(n3), 20, "wiped n3 to join again")
        assert "joining through" in n3.log()[mark:]
        wait_until(lambda: get(n3, "/v1/status/ready").status_code == 200,
                   10, "n3 ready")

        # One with no data and nothing to join is refused by the entrypoint.
        lone = EntrypointServer(tmp_path, "n5", {
            "BEACON_NODE": "n5", "BEACON_DATA_DIR": str(tmp_path / "n5d"),
            "BEACON_HTTP_ADDR": "127.0.0.1:1", "BEACON_RAFT_ADDR":
            "127.0.0.1:1", "BEACON_INITIAL_CLUSTER": initial}).start()
        servers.append(lone)
        assert lone.proc.wait(10) == 1
        lone.proc = None             # stop() skips it
        assert "nothing to join" in lone.log()

        # The backup job: a date-stamped snapshot, the newest N kept, and
        # a file the server accepts back.
        bdir = tmp_path / "backups"
        bdir.mkdir()
        for old in ("beacon-20000101T000000Z.snap",
                    "beacon-20000102T000000Z.snap"):
            (bdir / old).write_bytes(b"old")
        p = subprocess.run(
            ["sh", str(BACKUP)], capture_output=True, text=True, timeout=60,
            env=dict(hc_env, BEACON_BACKUP_URL=servers[2].url,
                     BEACON_BACKUP_DIR=str(bdir), BEACON_BACKUP_KEEP="2"))
        assert p.returncode == 0, p.stderr
        files = sorted(f.name for f in bdir.iterdir())
        assert len(files) == 2 and files[0] == "beacon-20000102T000000Z.snap"
        assert re.fullmatch(r"beacon-\d{8}T\d{6}Z\.snap", files[1]), files
        snap = (bdir / files[1]).read_bytes()
        assert len(snap) > 100
        r = session.put(servers[0].url + "/v1/snapshot", data=snap,
                        timeout=30)
        assert r.status_code == 200, r.text

        for s in servers:
            s.stop()
        for s in servers:
            s.check_sanitizers()
    finally:
        for s in servers:
            s.kill_quietly()
        session.close()
