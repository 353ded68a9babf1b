"""The command table: command name -> (handler, states it may run in).

Built once from the ``HANDLERS`` table of each command module.  The server
imports this module; command modules never import the server (they get a
:class:`~mailsrv.imap.context.Context`).  A new command is a handler in the
module of its state group (or a new module whose table is added to
:data:`TABLE`) and
a parse function in :data:`mailsrv.imap.grammar.COMMANDS`;
``tests/imap/test_dispatch.py`` checks that the two tables name the same
commands.
"""

from __future__ import annotations

from mailsrv.imap import commands_acl, commands_any, commands_auth, commands_quota, commands_selected, compress, notify
from mailsrv.imap.context import Handlers


def build_table(*tables: Handlers) -> Handlers:
    """Merge handler tables; a command claimed twice is a programming error."""
    merged: Handlers = {}
    for table in tables:
        for name, entry in table.items():
            if name in merged:
                raise ValueError(f"IMAP command {name} has two handlers")
            merged[name] = entry
    return merged


TABLE: Handlers = build_table(commands_any.HANDLERS, commands_auth.HANDLERS, commands_selected.HANDLERS,
                              commands_acl.HANDLERS, commands_quota.HANDLERS, compress.HANDLERS, notify.HANDLERS)
