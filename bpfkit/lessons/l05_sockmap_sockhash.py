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
    c.require(not missing,
              f"`{map_name}` has no field(s) {missing}; the check expected `messages`, `bytes` and "
              "`redirected`, the fields of the lesson's `struct msg_stats_t`. Did the struct change? "
              "The cell 'The program' says what each field counts.",
              hint="Keep the starter's `struct msg_stats_t` with its three `u64` fields.",
              fix="struct msg_stats_t { u64 messages; u64 bytes; u64 redirected; };")
    try:
        pair.exchange(n, size)
    except BpfkitError as e:  # its hint says what to change: shown from the second try
        c.require(False, f"{e.what} The check expected every message to arrive. Which verdict does "
                  "your program return, and to which key and queue does it redirect? The cell 'The "
                  "program' says what `SK_PASS`, `SK_DROP` and `BPF_F_INGRESS` do.",
                  hint=e.hint[:1].upper() + e.hint[1:] if e.hint else None,
                  fix="End msg_redirect with return SK_PASS; and redirect with "
                      "sock_hash.msg_redirect_hash(msg, &peer, BPF_F_INGRESS).")
    after = _per_socket(program, pair, map_name)

    def delta(who: str, col: str) -> int:
        return after.get(who, {}).get(col, 0) - before.get(who, {}).get(col, 0)

    c.require(after,
              f"`{map_name}` has no row for this pair's sockets; the check expected one per sending "
              "socket. Were your programs attached before the pair was made inside the exercise's "
              "cgroup, and is the map keyed by the sending socket's 4-tuple? The cells 'Attach the "
              "sk_msg program to the map' and 'Two sockets inside the cgroup' say why the order matters.",
              hint="Run the program cell, then the check cell as it is: it attaches both programs "
                   f"before it makes the pair. Keep `me` as the key of `{map_name}`.",
              fix="Attach msg_redirect to the sockhash and sockops_record to the exercise's cgroup "
                  "*before* making the pair inside the cgroup, and key msg_stats by the sending "
                  "socket's 4-tuple as in the lesson.")
    for who in ("client", "server"):
        c.expect(delta(who, "messages") == n and delta(who, "bytes") == n * size,
                 f"The {who} sent {n} messages of {size} bytes; `{map_name}` counted "
                 f"{delta(who, 'messages')} messages and {delta(who, 'bytes')} bytes for it. Does the "
                 "program count a message it does not redirect? Step 3 of the exercise asks what "
                 f"`{map_name}` should show.",
                 hint="Count every message, whatever the program decides about redirecting it; only "
                      "`redirected` depends on that decision.",
                 fix="Keep the starter's lookup_or_try_init and its three __sync_fetch_and_add lines "
                     "outside the if that guards msg_redirect_hash.")
    _check_paths(c, program, delta, n)


def _check_paths(c: Checker, program, delta, n: int) -> None:
    """Were the client's messages redirected, and the server's replies not?"""
    c.expect(delta("client", "redirected") == n,
             f"{delta('client', 'redirected')} of the client's {n} messages were redirected; the check "
             f"expected all {n}. Which value in `me` marks the client's socket, and where does the "
             "program find the server's port? Steps 1 and 2 of the exercise ask it.",
             hint="The client's socket has the server's port as `me.remote_port`; `config[0]` "
                  "holds that port.",
             fix="Redirect when me.remote_port equals the port read from config[0].")
    server = delta("server", "redirected")
    port_zero = False
    if "config" in program.map_names():
        try:
            port_zero = program["config"][0] == 0
        except BpfkitError:
            pass
    c.expect(server == 0,
             f"{server} of the server's {n} replies took the shortcut; the check expected 0. What in "
             "`me` tells the server's socket from the client's, and where does the program learn the "
             "server's port? Steps 1 and 2 of the exercise ask it."
             + (" `config[0]` still holds 0; the check expected the server's port there."
                if port_zero else ""),
             hint="Look up `config[0]` (a NULL pointer or 0: redirect nothing), and call "
                  "`msg_redirect_hash` only when `me.remote_port` equals it."
                  + (" Write the port from Python after making the pair." if port_zero else ""),
             fix="u32 index = 0; u32 *server_port = config.lookup(&index); long redirected = 0; "
                 "if (server_port && me.remote_port == *server_port) redirected = "
                 "sock_hash.msg_redirect_hash(msg, &peer, BPF_F_INGRESS) == SK_PASS;"
                 + (" And from Python: prog['config'][0] = pair.server_port." if port_zero else ""))
