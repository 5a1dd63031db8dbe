"""What ``sfsync demo`` and ``sfsync run`` add around the local stack: the endpoint and the data directory.

Order of events, so that bad input costs nothing and a stop loses nothing:

1. :func:`prepare` (before anything is printed or started): ``--data-dir`` is checked without writing
   (:meth:`DataDir.inspect`) and the ``--endpoint-port`` is taken; each refusal is one ``error:`` line
   and exit code 2.
2. :meth:`Serving.start` (the stack is deployed, no tick has run): the data directory is claimed and
   its tables restored, then the endpoint answers and the banner is printed.
3. :meth:`Serving.checkpoint` after every tick: the tables are saved when a cycle did work, or every
   :data:`SAVE_INTERVAL_SECONDS` while anything was written (served edits, the write-back) — never
   while a full-copy execution runs, whose progress lives in a workflow a restart cannot resume.
4. :meth:`Serving.stop`: the endpoint stops answering and delivers what is queued, then the final
   save, then the directory's lock is released.
"""

from __future__ import annotations

import argparse
import time
from typing import TextIO

from .datadir import DataDir
from .endpoint import LocalEndpoint, LocalEndpointError, endpoint_banner
from .runner import EXIT_USAGE, CliError, LocalEnvironment

__all__ = ["SAVE_INTERVAL_SECONDS", "Serving", "prepare"]

#: Between cycles, changes (served edits, write-back) are saved at most this often.
SAVE_INTERVAL_SECONDS = 10.0
#: The table the banner's command looks at.
LOOK_AT = "LeadTable"


class Serving:
    """The endpoint (optional) and the data directory (optional) of one command."""

    def __init__(self, endpoint: LocalEndpoint | None, data: DataDir | None, *, source: str) -> None:
        self.endpoint = endpoint
        self.data = data
        self.source = source
        self._last_save = time.monotonic()
        self._restored = False  # the saved tables are in the stack: saving now cannot lose them
        self._stopped = False

    def start(self, env: LocalEnvironment, out: TextIO, *, log: TextIO | None, org: str | None = None) -> None:
        """Claim and restore the data directory, then serve the endpoint and print the banner."""
        stack = env.stack
        if self.data is not None:
            self.data.claim(created_by=self.source)
            restored = self.data.load(stack, org=org, out=out)
            self._restored = True
            if self.data.saved_at:
                print(
                    f"local copy: {self.data.path} (restored {restored:,} items saved at {self.data.saved_at}; "
                    "the sync resumes from its watermarks)",
                    file=out,
                )
            else:
                print(f"local copy: {self.data.path} (new; saved after every cycle and at the stop)", file=out)
        if self.endpoint is not None:
            self.endpoint.set_log(log)
            self.endpoint.serve(stack.runtime)
            tables = {
                logical_id: str(stack.table_name(logical_id))
                for logical_id in stack.template.resources_of_type("AWS::DynamoDB::Table")
                if stack.template.resource_enabled(logical_id)
            }
            look_at = tables.get(LOOK_AT) or next(iter(tables.values()))
            print(endpoint_banner(self.endpoint.url, region=env.region, tables=tables, look_at=look_at), file=out)
        out.flush()

    def checkpoint(self, env: LocalEnvironment, *, cycle_did_work: bool) -> bool:
        """Save the tables when due (see the module docstring); True when saved."""
        if self.data is None or not self._restored or not self.data.changed_since_save():
            return False
        due = cycle_did_work or time.monotonic() - self._last_save >= SAVE_INTERVAL_SECONDS
        if not due or env._running_executions():
            return False
        self.data.save(env.stack)
        self._last_save = time.monotonic()
        return True

    def stop(self, env: LocalEnvironment | None, out: TextIO) -> None:
        """Stop serving, then the final save (when the saved tables were restored and no copy is half
        done), then release.  Also releases what :func:`prepare` took when the command failed earlier."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.endpoint is not None:
                self.endpoint.close()
            if self.data is not None and env is not None and self._restored:
                self._final_save(env, out)
        finally:
            if self.data is not None:
                self.data.release()

    def _final_save(self, env: LocalEnvironment, out: TextIO) -> None:
        assert self.data is not None
        if env._running_executions():
            print(
                f"local copy: NOT saved at the stop (a full copy is running; {self.data.path} keeps the save of "
                f"{self.data.saved_at or 'nothing yet'})",
                file=out,
            )
            return
        if self.data.changed_since_save() or self.data.saved_at is None:
            result = self.data.save(env.stack)
            print(f"local copy saved: {self.data.path} ({result.items:,} items)", file=out)
        else:
            print(f"local copy kept: {self.data.path} (unchanged since its save at {self.data.saved_at})", file=out)


def prepare(args: argparse.Namespace, *, source: str) -> Serving:
    """Check ``--data-dir`` and take ``--endpoint-port`` before anything starts (one error, exit 2)."""
    data_dir = getattr(args, "data_dir", None)
    data = DataDir.inspect(data_dir) if data_dir else None
    endpoint = None
    if not args.no_endpoint:
        try:
            endpoint = LocalEndpoint.bind(args.endpoint_port)
        except LocalEndpointError as exc:
            raise CliError(f"--endpoint-port: {exc}", exit_code=EXIT_USAGE) from None
    return Serving(endpoint, data, source=source)
