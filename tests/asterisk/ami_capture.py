"""Record the raw AMI stream of the lab to a file, to make replay fixtures for tests/unit.

    .venv/bin/python -m tests.asterisk.ami_capture -o tests/fixtures/ami/NAME.ami -t 20

Logs in as the calltrack user (with its event filters), so a fixture holds exactly what the
bridge gets; everything up to the login response is left out.
"""

from __future__ import annotations

import argparse
import socket
import time


def capture(output: str, seconds: float, username: str, secret: str, port: int = 5038) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
        sock.sendall(f"Action: Login\r\nUsername: {username}\r\nSecret: {secret}\r\n\r\n".encode())
        data = b""
        while b"Message: Authentication accepted\r\n\r\n" not in data:
            data += sock.recv(4096)
        data = data.split(b"Message: Authentication accepted\r\n\r\n", 1)[1]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            data += chunk
    with open(output, "wb") as out:
        out.write(data)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("-t", "--seconds", type=float, default=20.0)
    parser.add_argument("-u", "--username", default="calltrack")
    parser.add_argument("-s", "--secret", default="calltrack-lab-secret")
    args = parser.parse_args()
    capture(args.output, args.seconds, args.username, args.secret)
