"""``mailsrv demo``: POP3 versus IMAP, shown with real sessions and real counts.

By default the demo starts its own server (``twistd -n mailsrv`` on
ephemeral loopback ports, a temporary data folder, a throwaway user) so it is
reproducible anywhere; ``--host`` and the port options point it at an
existing server instead.  Use a dedicated, empty account there: the demo
empties its INBOX and creates and deletes a folder named ``Invoices``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import Any, TextIO

from mailsrv.demo.scenarios import SCENARIOS, Result, Target, readable, reset_mailbox

DEMO_USER = "demo"
DEMO_PASSWORD = "demo-password"


class DemoError(Exception):
    """Reported as one ``mailsrv: demo: ...`` line."""


def register(subparsers: Any, common: argparse.ArgumentParser | None = None) -> None:
    """Add ``demo`` to the ``mailsrv`` command (``common``: parent parser with
    the global options, as mailsrv.cli passes it)."""
    parents = [common] if common is not None else []
    p = subparsers.add_parser(
        "demo", parents=parents, help="show POP3 versus IMAP with real sessions and counts",
        description=__doc__.split("\n\n")[1].replace("\n", " ").strip())
    p.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), metavar="NAME",
                   help="run only this scenario (repeatable): " + ", ".join(SCENARIOS))
    p.add_argument("--quiet", action="store_true", help="print only the final table")
    p.add_argument("--color", action="store_true", help="ANSI colours even when stdout is not a terminal")
    p.add_argument("--format", choices=("markdown", "html"), help="write a report in this format")
    p.add_argument("--output", metavar="FILE", help="file for --format (default: stdout)")
    p.add_argument("--host", help="use an existing server on this host instead of an embedded one")
    p.add_argument("--pop3-port", type=int, metavar="PORT")
    p.add_argument("--imap-port", type=int, metavar="PORT")
    p.add_argument("--lmtp-port", type=int, metavar="PORT", help="LMTP for deliveries (else IMAP APPEND)")
    p.add_argument("--user", default=DEMO_USER)
    p.add_argument("--password", default=DEMO_PASSWORD)
    p.add_argument("--rcpt-domain", default="localhost", help="domain for LMTP recipients (default localhost)")
    p.set_defaults(func=command)


def command(args: argparse.Namespace, config: Any) -> int:
    """Entry point, called by mailsrv.cli with (args, config); the demo
    needs no configuration: it starts its own server or is told where one is."""
    try:
        return run(args, sys.stdout)
    except DemoError as e:
        print(f"mailsrv: demo: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mailsrv: demo: interrupted", file=sys.stderr)
        return 130


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the scenarios, print the transcripts and the table (or write the
    report); 0 when every scenario ran without a protocol error."""
    from mailsrv.demo import report

    out = out or sys.stdout
    names: Sequence[str] = args.scenario or list(SCENARIOS)
    if args.output and not args.format:
        args.format = "html" if args.output.lower().endswith((".html", ".htm")) else "markdown"
    report_elsewhere = bool(args.format)  # the report is the output: stdout gets nothing else
    color = not report_elsewhere and (args.color or _isatty(out))
    progress = None if (args.quiet or report_elsewhere) else out
    results = run_scenarios(names, args, progress=progress, color=color)
    if args.format:
        render = report.markdown_report if args.format == "markdown" else report.html_report
        text = render(results, False)
        if args.output:
            try:
                with open(args.output, "w", encoding="utf-8") as f:
                    f.write(text)
            except OSError as e:
                raise DemoError(f"cannot write {args.output}: {e.strerror}") from None
            out.write(f"{args.format} report written to {os.path.abspath(args.output)}\n")
        else:
            out.write(text)
    else:
        out.write(("\n" if progress else "") + "\n".join(report.text_table(results, color)) + "\n")
    out.flush()
    return 0 if not any(r.errors for r in results) else 1


def _isatty(f: TextIO) -> bool:
    try:
        return f.isatty()
    except (AttributeError, ValueError):
        return False


def run_scenarios(names: Sequence[str], args: argparse.Namespace, progress: TextIO | None = None,
                  color: bool = False) -> list[Result]:
    """Run the named scenarios against the embedded or the given server.
    ``progress``: a stream to print each scenario's transcript to as it ends."""
    from mailsrv.demo.wire import ANSI, render_transcript

    external = bool(args.host or args.pop3_port or args.imap_port)
    tmp = None
    server = None
    try:
        if external:
            target = Target(args.host or "127.0.0.1", args.pop3_port, args.imap_port, args.lmtp_port,
                            args.user, args.password, None, args.rcpt_domain)
            if not (target.pop3_port or target.imap_port):
                raise DemoError("give --pop3-port and/or --imap-port with --host")
            _preflight(target)
        else:
            from mailsrv.embedded import EmbeddedServer, ServerError, add_user

            tmp = tempfile.mkdtemp(prefix="mailsrv-demo-")
            data = os.path.join(tmp, "data")
            add_user(data, args.user, args.password)
            server = EmbeddedServer(data, kinds=("pop3", "imap", "lmtp"))
            try:
                server.start()
            except ServerError as e:
                raise DemoError(str(e)) from None
            p = server.ports
            target = Target("127.0.0.1", p.get("pop3"), p.get("imap"), p.get("lmtp"), args.user, args.password, server)
        results = []
        for name in names:
            r = SCENARIOS[name](target)
            results.append(r)
            if progress is not None:
                title = f"== {r.name}: {r.title} =="
                progress.write(("\n" + ANSI["#"] + title + ANSI["off"] if color else "\n" + title) + "\n")
                progress.write("\n".join(render_transcript(r.transcript, color)) + "\n")
                progress.flush()
        if external:
            _cleanup(target)
        return results
    except OSError as e:
        raise DemoError(readable(e)) from None
    finally:
        if server is not None:
            server.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _preflight(target: Target) -> None:
    """Reach and log in to each service of an existing server once, so a
    wrong port or password is one clear line instead of a table of errors."""
    import imaplib
    import poplib
    import smtplib

    from mailsrv.demo.scenarios import Session
    from mailsrv.demo.wire import CountingLMTP, Transcript

    s = Session(target, Transcript())

    def imap() -> None:
        s.imap("check").logout()

    def pop3() -> None:
        s.pop3("check").quit()

    def lmtp() -> None:
        CountingLMTP(target.host, target.lmtp_port or 0, "check", None).quit()

    for name, port, check in (("IMAP", target.imap_port, imap), ("POP3", target.pop3_port, pop3),
                              ("LMTP", target.lmtp_port, lmtp)):
        if not port:
            continue
        where = f"{name} at {target.host}:{port}"
        try:
            check()
        except (imaplib.IMAP4.error, poplib.error_proto) as e:
            raise DemoError(f"{where}: login as {target.user} failed: {readable(e)}") from None
        except (OSError, EOFError, smtplib.SMTPException) as e:
            raise DemoError(f"cannot talk to {where}: {readable(e)}") from None


def _cleanup(target: Target) -> None:
    try:
        reset_mailbox(target)
    except Exception as e:  # leftovers in a demo account are harmless
        print(f"mailsrv: demo: cleanup failed: {e}", file=sys.stderr)
