"""Rendering the demo: transcripts and the side-by-side table as terminal
text (optionally ANSI-coloured), Markdown or a standalone HTML page."""

from __future__ import annotations

import html

from mailsrv.demo.scenarios import Result
from mailsrv.demo.wire import ANSI, render_transcript

INTRO = ("POP3 versus IMAP, measured: every figure below was counted at the client's "
         "sockets (bytes sent and received, round trips = times the client waited for an answer) "
         "during real sessions with a mailsrv server.")


def _table_rows(results: list[Result]) -> list[list[str]]:
    rows = []
    for r in results:
        for i, row in enumerate(r.rows):
            rows.append([r.name if i == 0 else "", row.metric, row.pop3, row.imap])
        for e in r.errors:
            proto, _, msg = e.partition(": ")
            msg = msg if len(msg) <= 60 else msg[:57] + "..."
            rows.append(["", "error", msg if proto == "POP3" else "", msg if proto != "POP3" else ""])
    return rows


HEADER = ["scenario", "what", "POP3", "IMAP"]


def text_table(results: list[Result], color: bool = False) -> list[str]:
    rows = _table_rows(results)
    widths = [max(len(HEADER[i]), *(len(r[i]) for r in rows)) if rows else len(HEADER[i]) for i in range(4)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()

    head = fmt(HEADER)
    out = [f"{ANSI['#']}{head}{ANSI['off']}" if color else head, "  ".join("-" * w for w in widths)]
    for r in rows:
        line = fmt(r)
        if color and r[1] == "error":
            line = f"{ANSI['err']}{line}{ANSI['off']}"
        out.append(line)
    return out


def text_report(results: list[Result], color: bool, quiet: bool) -> str:
    out: list[str] = []
    if not quiet:
        for r in results:
            title = f"== {r.name}: {r.title} =="
            out.append(f"\n{ANSI['#']}{title}{ANSI['off']}" if color else f"\n{title}")
            out.extend(render_transcript(r.transcript, color))
        out.append("")
    out.extend(text_table(results, color))
    return "\n".join(out) + "\n"


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|") or " "


def markdown_report(results: list[Result], quiet: bool) -> str:
    out = ["# POP3 versus IMAP: mailsrv demo", "", INTRO, "", "## Summary", "",
           "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in _table_rows(results):
        out.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
    if not quiet:
        for r in results:
            out += ["", f"## {r.name}: {r.title}", "", "```"]
            out.extend(render_transcript(r.transcript, color=False))
            out.append("```")
    return "\n".join(out) + "\n"


def html_report(results: list[Result], quiet: bool) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>POP3 versus IMAP: mailsrv demo</title>",
           "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
           "table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3em .6em;text-align:left}"
           "pre{background:#f4f4f4;padding:1em;overflow-x:auto;font-size:85%}</style></head><body>",
           "<h1>POP3 versus IMAP: mailsrv demo</h1>", f"<p>{e(INTRO)}</p>", "<h2>Summary</h2>", "<table>",
           "<tr>" + "".join(f"<th>{e(h)}</th>" for h in HEADER) + "</tr>"]
    for row in _table_rows(results):
        out.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
    out.append("</table>")
    if not quiet:
        for r in results:
            out.append(f"<h2>{e(r.name)}: {e(r.title)}</h2>")
            out.append("<pre>" + e("\n".join(render_transcript(r.transcript, color=False))) + "</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
