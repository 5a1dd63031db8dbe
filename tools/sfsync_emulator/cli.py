"""``sfsync-emulator serve ...``: run an emulated Salesforce org until SIGINT/SIGTERM.

Prints one JSON line (``Emulator.info()``: instance_url, token_url, ca_bundle, client_id,
client_secret, username, password, api_version) on stdout once the server is listening.
``--print-refresh-token`` adds ``refresh_token`` (ready for ``grant_type=refresh_token`` with
the printed client id and secret at the token URL), ``authorize_url`` and ``revoke_url``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .clock import Clock
from .emulator import Emulator
from .schema import parse_datetime_ms


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sfsync-emulator", description="A local Salesforce org emulator.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve an emulated org over HTTPS (or --http) on loopback")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8443, help="port (default 8443; 0 = any free port)")
    serve.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    serve.add_argument("--records", type=int, default=10000, help="records to generate (default 10000)")
    serve.add_argument("--http", action="store_true", help="serve plain HTTP instead of HTTPS")
    serve.add_argument("--state-dir", default=None, help="directory for the CA and server certificate")
    serve.add_argument("--clock-start", default=None, help="virtual clock start, ISO 8601 with offset")
    serve.add_argument("--frozen", action="store_true", help="hold the clock still (advance via /__admin)")
    serve.add_argument(
        "--print-refresh-token",
        action="store_true",
        help="also print a refresh token (with the client id/secret and token URL) for refresh-token logins",
    )
    serve.add_argument(
        "--callback-url",
        action="append",
        default=None,
        metavar="URL",
        help="a redirect URI the web server (authorization code) flow accepts (repeatable; replaces the defaults)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    start_ms = None
    if args.clock_start:
        try:
            start_ms = parse_datetime_ms(args.clock_start)
        except ValueError as exc:
            print(f"sfsync-emulator: --clock-start: {exc}", file=sys.stderr)
            return 2
    clock = Clock(start_ms, running=not args.frozen)
    auth_options = {"callback_urls": tuple(args.callback_url)} if args.callback_url else None
    try:
        emu = Emulator.start(
            seed=args.seed,
            records=args.records,
            port=args.port,
            tls=not args.http,
            clock=clock,
            state_dir=args.state_dir,
            host=args.host,
            auth_options=auth_options,
            background=False,
        )
    except (ValueError, OSError) as exc:  # a bad --records, a port in use, an unwritable --state-dir
        print(f"sfsync-emulator: cannot serve: {exc}", file=sys.stderr)
        return 2

    def _stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so call it off the serving thread
        threading.Thread(target=emu.stop, daemon=True).start()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    info = emu.info()
    if args.print_refresh_token:
        info.update(
            {
                "refresh_token": emu.issue_refresh_token(),
                "authorize_url": emu.authorize_url,
                "revoke_url": emu.revoke_url,
            }
        )
    print(json.dumps(info), flush=True)
    emu.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
