"""deploy/: the systemd unit, its environment file and the nginx block.

- `systemd-analyze verify` on the unit. It checks that ExecStart's binary
  exists and is executable, and /usr/local/bin/footfall is not installed
  on a test machine, so it runs on a copy in a temporary folder whose
  ExecStart names the built binary (FOOTFALL_BIN) and which is otherwise
  byte for byte the file in deploy/. EnvironmentFile= is left as it is:
  verify does not open it (systemd reads it at each start), so a missing
  /etc/footfall/footfall.env does not fail it. verify exits 0 on an unknown
  or misspelled directive, or a value it cannot parse, and only prints
  `Unknown key ...` / `Failed to parse ...` with the file's path; so the
  test fails on any line of its output that names the unit, not on the
  exit code alone. `test_the_checks_catch_mistakes` keeps that honest: it
  feeds the same check broken copies and expects each to be caught.
- The hardening settings are all there (verify is content with a unit
  that has none of them).
- Every FOOTFALL_* variable that deploy/footfall.env names, set or in a
  commented example, is one `footfall serve --help` lists (`[env: ...=]`),
  and the env file, the unit and the nginx block agree on the address and
  the data folder.
- `nginx -t` on a minimal nginx.conf whose `http {}` includes
  deploy/nginx.conf, with the certificate paths pointed at a self-signed
  pair made here (nginx -t loads them).

scripts/test.sh installs systemd (systemd-analyze), nginx and openssl when
they are missing; here a missing tool fails its test rather than skipping it.
"""

import os
import re
import shutil
import subprocess

import pytest

from conftest import FOOTFALL

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DEPLOY = os.path.join(ROOT, "deploy")
UNIT = os.path.join(DEPLOY, "footfall.service")
ENV = os.path.join(DEPLOY, "footfall.env")
NGINX = os.path.join(DEPLOY, "nginx.conf")
EXEC_START = "ExecStart=/usr/local/bin/footfall serve"
CERT = "/etc/letsencrypt/live/stats.example.com/fullchain.pem"
KEY = "/etc/letsencrypt/live/stats.example.com/privkey.pem"


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def tool(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    assert path, f"{name} is not installed (scripts/test.sh installs it)"
    return path


def verify(tmp_path, unit_text):
    """Runs `systemd-analyze verify` on `unit_text` as footfall.service with
    ExecStart pointed at the built binary; returns the problems it printed
    about the unit (empty when it is fine)."""
    assert unit_text.count(EXEC_START) == 1, f"the unit runs `{EXEC_START}`"
    binary = os.path.abspath(FOOTFALL)
    assert os.access(binary, os.X_OK), f"FOOTFALL_BIN {binary} is built"
    copy = tmp_path / "footfall.service"
    copy.write_text(unit_text.replace(EXEC_START, f"ExecStart={binary} serve"), encoding="utf-8")
    p = subprocess.run([tool("systemd-analyze"), "verify", str(copy)],
                       capture_output=True, text=True, timeout=120)
    out = (p.stdout + p.stderr).splitlines()
    problems = [line for line in out if "footfall.service" in line]
    if p.returncode != 0:
        problems.append(f"exit code {p.returncode}: " + " | ".join(out))
    return problems


def test_unit_passes_systemd_analyze_verify(tmp_path):
    assert verify(tmp_path, read(UNIT)) == []


def directives(text):
    """(section, key) -> list of values, comments and blank lines skipped."""
    found, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault((section, key.strip()), []).append(value.strip())
    return found


HARDENING = {
    "DynamicUser": "yes", "StateDirectory": "footfall", "ProtectSystem": "strict",
    "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
    "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter": "@system-service", "MemoryDenyWriteExecute": "yes",
    "LockPersonality": "yes", "RestrictNamespaces": "yes", "RestrictRealtime": "yes",
    "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes", "ProtectClock": "yes", "ProtectHostname": "yes",
    "UMask": "0077", "LimitCORE": "0", "EnvironmentFile": "/etc/footfall/footfall.env",
    "ExecStart": "/usr/local/bin/footfall serve", "KillSignal": "SIGTERM",
    "TimeoutStopSec": "30s", "Restart": "on-failure",
}


def test_unit_has_every_hardening_setting():
    found = directives(read(UNIT))
    wrong = {k: found.get(("Service", k)) for k, v in HARDENING.items() if found.get(("Service", k)) != [v]}
    assert wrong == {}, "[Service] settings missing or not as in HARDENING"


def help_env_vars():
    out = subprocess.run([FOOTFALL, "serve", "--help"], check=True, capture_output=True, text=True).stdout
    names = set(re.findall(r"\[env: (FOOTFALL_[A-Z0-9_]+)=", out))
    assert "FOOTFALL_LISTEN" in names, out
    return names


def env_file_vars(text):
    """Every FOOTFALL_* name set in the file or in a commented `#NAME=` example."""
    return re.findall(r"^#?\s*(FOOTFALL_[A-Za-z0-9_]*)\s*=", text, re.M)


def test_env_file_names_only_real_variables():
    named = env_file_vars(read(ENV))
    assert {"FOOTFALL_LISTEN", "FOOTFALL_DATA_DIR", "FOOTFALL_SITE", "FOOTFALL_TRUSTED_PROXY"} <= set(named)
    unknown = sorted(set(named) - help_env_vars())
    assert unknown == [], "deploy/footfall.env names variables `footfall serve --help` does not list"


def test_env_unit_and_proxy_agree():
    env = dict(re.findall(r"^(FOOTFALL_[A-Z_]+)=(.*)$", read(ENV), re.M))
    assert env["FOOTFALL_LISTEN"] == "127.0.0.1:8080"
    state = directives(read(UNIT))[("Service", "StateDirectory")][0]
    assert env["FOOTFALL_DATA_DIR"] == f"/var/lib/{state}"
    nginx = read(NGINX)
    assert f"proxy_pass http://{env['FOOTFALL_LISTEN']};" in nginx
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in nginx
    assert "proxy_set_header Host $host;" in nginx
    # The shipped setup is behind that proxy: without trusting it, every
    # visitor would be 127.0.0.1.
    assert env["FOOTFALL_TRUSTED_PROXY"] == "127.0.0.1"


def nginx_t(tmp_path, site_text):
    """`nginx -t` on a minimal config whose http {} includes `site_text`
    with the certificate paths pointed at a fresh self-signed pair.
    Returns (exit code, output)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=stats.example.com", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    assert site_text.count(CERT) == 1 and site_text.count(KEY) == 1
    site = tmp_path / "site.conf"
    site.write_text(site_text.replace(CERT, str(cert)).replace(KEY, str(key)), encoding="utf-8")
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
                    f"events {{}}\nhttp {{\n    include {site};\n}}\n", encoding="utf-8")
    # -e: the log nginx opens before it has read the config's error_log.
    p = subprocess.run([tool("nginx"), "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
                        "-c", str(conf)], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def test_nginx_block_passes_nginx_t(tmp_path):
    code, out = nginx_t(tmp_path, read(NGINX))
    assert code == 0, out
    assert "test is successful" in out, out


MUTATIONS = [
    # (what is broken, old, new)
    ("a misspelled directive", "\nProtectHome=yes", "\nProtectHom=yes"),
    ("a value systemd cannot parse", "\nProtectSystem=strict", "\nProtectSystem=strickt"),
    ("an unknown system call group", "\nSystemCallFilter=@system-service", "\nSystemCallFilter=@sytem-service"),
    ("a misspelled section", "\n[Service]", "\n[Servce]"),
]


@pytest.mark.parametrize("what,old,new", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_the_checks_catch_mistakes(tmp_path, what, old, new):
    unit = read(UNIT)
    assert unit.count(old) == 1
    assert verify(tmp_path, unit.replace(old, new)) != [], f"systemd-analyze verify missed {what}"


def test_verify_catches_a_missing_binary(tmp_path):
    copy = tmp_path / "footfall.service"
    copy.write_text(read(UNIT), encoding="utf-8")  # /usr/local/bin/footfall: not on a test machine
    if os.path.exists("/usr/local/bin/footfall"):
        pytest.skip("footfall is installed in /usr/local/bin here")
    p = subprocess.run([tool("systemd-analyze"), "verify", str(copy)], capture_output=True, text=True)
    assert p.returncode != 0 and "not executable" in p.stdout + p.stderr


def test_the_env_check_catches_an_unknown_variable():
    named = env_file_vars(read(ENV) + "\n#FOOTFALL_LISTN=127.0.0.1:9090\n")
    assert "FOOTFALL_LISTN" in set(named) - help_env_vars()


def test_nginx_t_catches_a_broken_block(tmp_path):
    broken = read(NGINX).replace("proxy_pass http://127.0.0.1:8080;", "proxy_pass http://127.0.0.1:8080")
    code, out = nginx_t(tmp_path, broken)
    assert code != 0, out
