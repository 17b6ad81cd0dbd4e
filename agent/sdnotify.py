"""The systemd notify protocol, without dependencies: datagrams to $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import threading


class Notifier:
    def __init__(self, env: dict[str, str] | None = None):
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_interval_s = int(usec) / 2 / 1e6 if usec.isdigit() and int(usec) > 0 else 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, message: str) -> None:
        if not self.address:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(message.encode(), self.address)
            except OSError:
                pass  # systemd gone: nothing to tell

    def ready(self, status: str = "") -> None:
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def start_watchdog(self, healthy=lambda: True) -> None:
        """Ping WATCHDOG=1 at half of WATCHDOG_USEC while `healthy()` holds."""
        if not self.address or not self.watchdog_interval_s:
            return

        def run():
            while not self._stop.wait(self.watchdog_interval_s):
                if healthy():
                    self.send("WATCHDOG=1")

        self._thread = threading.Thread(target=run, name="sd-watchdog", daemon=True)
        self._thread.start()

    def stop_watchdog(self) -> None:
        self._stop.set()
