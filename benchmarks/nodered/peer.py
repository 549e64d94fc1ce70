"""Node-RED as the peer: install it from npm, run the equivalent flow, stop it.

`install()` puts the pinned node-red and node-red-contrib-influxdb (package.json,
package-lock.json) into benchmarks/nodered/node_modules, or into a cache directory, with `npm ci`
(once; a stamp of the lock file makes it a no-op until the lock changes).  `NodeRedPeer` writes
settings.js, flows.json and flows_cred.json into a temporary user directory, starts
`node node_modules/node-red/red.js --userDir DIR --port PORT` on a free loopback port, and is
ready when the flow's MQTT node has logged "Connected to broker".  `.stop()` is SIGTERM (Node-RED
closes its flows and MQTT session) and SIGKILL only if it hangs.

    .venv/bin/python -m benchmarks.nodered.peer --smoke   # Mosquitto + VictoriaMetrics + the peer

The smoke run (benchmarks/nodered/smoke.py) publishes telemetry from three gateways with QoS 1
and checks that every reading is in VictoriaMetrics once, with its tags, value, quality and time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from benchmarks.nodered.flow import HERE, FlowSettings, build_flow, credentials
from cloud.registry import Registry
from tests.servers import free_port, stop_process

START_TIMEOUT = 60.0  # Node-RED starts in 2-5 s; a loaded 2-core box gets slack
CONNECTED = "Connected to broker"  # logged by the mqtt-broker config node (info level)
LOG_TAIL_LINES = 40
STAMP = ".bosai-package-lock.sha256"


class PeerError(RuntimeError):
    """Node-RED could not be installed, started or stopped."""


def _lock_digest() -> str:
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        h.update((HERE / name).read_bytes())
    return h.hexdigest()


def red_js(install_dir: Path) -> Path:
    return install_dir / "node_modules" / "node-red" / "red.js"


def install(cache_dir: Path | None = None) -> Path:
    """The directory whose node_modules holds the pinned Node-RED and InfluxDB nodes (`cache_dir`,
    or benchmarks/nodered itself), running `npm ci` there unless this lock file is installed."""
    target = Path(cache_dir) if cache_dir is not None else HERE
    target.mkdir(parents=True, exist_ok=True)
    digest = _lock_digest()
    stamp = target / "node_modules" / STAMP
    if red_js(target).is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return target
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise PeerError("node and npm are needed for the Node-RED peer (Node.js 18.5 or newer)")
    if target.resolve() != HERE:
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(HERE / name, target / name)
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=target,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise PeerError(f"npm ci in {target} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    stamp.write_text(digest + "\n")
    return target


def settings_js(port: int, user_dir: Path) -> str:
    """Node-RED settings: loopback only, no editor extras, nothing fetched from the internet."""
    settings = {
        "uiHost": "127.0.0.1",
        "uiPort": port,
        "userDir": str(user_dir),
        "flowFile": "flows.json",
        "credentialSecret": False,  # flows_cred.json in plain text (it holds no secret here)
        "flowFilePretty": True,
        "logging": {"console": {"level": "info", "metrics": False, "audit": False}},
        "diagnostics": {"enabled": False, "ui": False},
        "telemetry": {"enabled": False},  # no update check against nodered.org
        "externalModules": {"autoInstall": False, "palette": {"allowInstall": False}},
        "functionExternalModules": False,
        "editorTheme": {"projects": {"enabled": False}, "tours": False},
    }
    return f"module.exports = {json.dumps(settings, indent=2)};\n"


class NodeRedPeer:
    """Node-RED running the peer flow; a context manager (start on enter, stop on exit).

    `workdir`: the user directory (settings, flows, log); a temporary one removed at stop if None.
    """

    def __init__(
        self,
        settings: FlowSettings,
        registry: Registry,
        *,
        install_dir: Path | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.install_dir = install_dir if install_dir is not None else HERE
        self._own_workdir = workdir is None
        self.workdir = (
            Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="bosai-nodered-"))
        )
        self.port = free_port()
        self.log_path = self.workdir / "node-red.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise PeerError("Node-RED is not running")
        return self._proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_files(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "settings.js").write_text(settings_js(self.port, self.workdir), encoding="utf-8")
        flow = build_flow(self.settings, self.registry)
        (self.workdir / "flows.json").write_text(
            json.dumps(flow, indent=2, ensure_ascii=False), encoding="utf-8"
        )
        (self.workdir / "flows_cred.json").write_text(json.dumps(credentials()), encoding="utf-8")

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start Node-RED and wait until its MQTT node is connected (subscribed right after)."""
        if self.running:
            return
        node = shutil.which("node")
        script = red_js(self.install_dir)
        if node is None or not script.is_file():
            raise PeerError(f"Node-RED is not installed in {self.install_dir}: call install() first")
        self.write_files()
        argv = [node, str(script), "--userDir", str(self.workdir), "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            offset = log.tell()
            self._proc = subprocess.Popen(
                argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while CONNECTED not in self._log_since(offset):
            if self._proc.poll() is not None:
                code, self._proc = self._proc.returncode, None
                raise PeerError(f"Node-RED exited with code {code} while starting\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise PeerError(
                    f"Node-RED's MQTT node not connected after {timeout:.0f} s\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (Node-RED closes its flows), SIGKILL if it hangs; removes an own workdir."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_text(self) -> str:
        return self._log_since(0)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path}:\n{tail}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="run the smoke check (exit 0 if it passes)")
    parser.add_argument("--install-only", action="store_true", help="install Node-RED and exit")
    parser.add_argument(
        "--print-flow", action="store_true", help="print flows.json for the demo registry (to import or read)"
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="install into this directory")
    parser.add_argument("--api", choices=("v2", "v1"), default="v2", help="InfluxDB write API (default v2)")
    parser.add_argument("--messages", type=int, default=200, help="smoke: telemetry messages (default 200)")
    args = parser.parse_args(argv)
    if args.install_only:
        print(install(args.cache_dir))
        return 0
    if args.print_flow:
        from cloud.registry import load_registry

        demo = load_registry(HERE.parents[1] / "deploy" / "cloud" / "registry.demo.yaml")
        flow = build_flow(FlowSettings("127.0.0.1", 1883, "http://127.0.0.1:8428", api=args.api), demo)
        print(json.dumps(flow, indent=2, ensure_ascii=False))
        return 0
    if not args.smoke:
        parser.print_help()
        return 2
    from benchmarks.nodered.smoke import run_smoke

    return run_smoke(args.cache_dir, api=args.api, messages=args.messages)


if __name__ == "__main__":
    sys.exit(main())
