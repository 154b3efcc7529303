"""Lesson 05's exercise: take the shortcut one way only.

The client's messages go straight to the server's socket (redirected); the server's replies go
the normal way, through TCP/IP. The sk_msg program has to tell the two sockets apart, by the
server's port, which user space writes into the program's `config` array.
"""
from __future__ import annotations

from ..core.errors import BpfkitError
from ..host.sockets import addresses, join_sockets
from .checker import Checker, exercise

_COUNTED = ("messages", "bytes", "redirected")


def _per_socket(program, pair, map_name: str) -> dict[str, dict[str, int]]:
    frame = join_sockets(addresses(program[map_name].frame()), pair.sockets)
    out = {}
    for _, row in frame.iterrows():
        if row["socket"] is not None:
            out[row["socket"]] = {c: int(row[c]) for c in _COUNTED if c in frame.columns}
    return out


@exercise("Shortcut one way only",
          "The client's messages skip TCP/IP; the server's replies take the normal path, "
          "and every byte still arrives both ways.")
def check_one_way(c: Checker, program, pair, n: int = 20, size: int = 500,
                  map_name: str = "msg_stats") -> None:
    """Sends `n` messages of `size` bytes each way over `pair` (made inside the exercise's
    cgroup after the learner's programs were attached) and looks at what the program counted."""
    before = _per_socket(program, pair, map_name)
    missing = [col for col in _COUNTED if col not in
               program[map_name].frame().columns]
    c.require(not missing, f"{map_name!r} has no field(s) {missing}: keep the lesson's "
              "struct msg_stats_t { u64 messages; u64 bytes; u64 redirected; }.")
    try:
        pair.exchange(n, size)
    except BpfkitError as e:  # the hint says what to change, so this problem keeps it
        c.require(False, f"{e.what} {e.hint}")
    after = _per_socket(program, pair, map_name)

    def delta(who: str, col: str) -> int:
        return after.get(who, {}).get(col, 0) - before.get(who, {}).get(col, 0)

    c.require(after, "Your program counted nothing for this pair's sockets. Attach "
              "msg_redirect to the sockhash and sockops_record to the exercise's cgroup "
              "*before* making the pair inside the cgroup, and key msg_stats by the sending "
              "socket's 4-tuple as in the lesson.")
    for who in ("client", "server"):
        c.expect(delta(who, "messages") == n and delta(who, "bytes") == n * size,
                 f"The {who} sent {n} messages of {size} bytes, but msg_stats counted "
                 f"{delta(who, 'messages')} messages and {delta(who, 'bytes')} bytes for it: "
                 "count every message, redirected or not.")
    c.expect(delta("client", "redirected") == n,
             f"The client's messages should all take the shortcut: {delta('client', 'redirected')} "
             f"of {n} were redirected. Redirect when the socket's remote port is the server's.")
    server = delta("server", "redirected")
    port_hint = ""
    if "config" in program.map_names():
        try:
            if program["config"][0] == 0:
                port_hint = (" config[0] is still 0: write the server's port into it from Python: "
                             "prog['config'][0] = pair.server_port.")
        except BpfkitError:
            pass
    c.expect(server == 0,
             f"The server's replies still take the shortcut ({server} of {n} redirected). Call "
             "msg_redirect_hash only when me.remote_port equals the server's port, which the "
             "program reads from config[0]." + port_hint)
