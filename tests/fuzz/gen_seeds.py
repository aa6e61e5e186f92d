#!/usr/bin/python3
"""Write the hand-made seed inputs (seed-NNN) of tests/fuzz/corpus/<name>/.

Run by hand when the formats change; the build never runs it, and the
generated files are what is committed. Inputs the fuzzers found are kept
next to the seeds under their libFuzzer names and are not touched here.

Usage: tests/fuzz/gen_seeds.py   (from the repository root)
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# raft/codec.h
VERSION = 1
CMD_KV, CMD_REAP, CMD_SERVER, CMD_RESTORE = 1, 2, 3, 4
MAX_NAME = 256
# kv/kv.h enum kv_verb
(SET, CAS, GET, GET_TREE, CHECK_INDEX, CHECK_NOT_EXISTS, DELETE, DELETE_TREE,
 DELETE_CAS) = range(1, 10)


def pad(b):
    return b + b"\0" * ((8 - len(b) % 8) % 8)


def blob(b):
    return struct.pack(">I", len(b)) + b


def op(verb, key, value=b"", flags=0, index=0):
    return (struct.pack(">B", verb) + blob(key + b"\0") + blob(value) +
            struct.pack(">QQ", flags, index))


def kv(*ops, n=None):
    body = b"".join(ops)
    return pad(struct.pack(">BBI", VERSION, CMD_KV,
                           len(ops) if n is None else n) + body)


def server(name, raft, http):
    return pad(struct.pack(">BB", VERSION, CMD_SERVER) + blob(name) +
               blob(raft) + blob(http))


def restore(image):
    return pad(struct.pack(">BB", VERSION, CMD_RESTORE) + blob(image))


def reap(before):
    return pad(struct.pack(">BBQ", VERSION, CMD_REAP, before))


CODEC = [
    # valid
    kv(op(SET, b"a", b"1")),
    kv(op(SET, b"foo/bar", b"hello world", flags=42)),
    kv(op(CAS, b"k", b"v2", index=7)),
    kv(op(DELETE, b"k")),
    kv(op(DELETE_TREE, b"")),
    kv(op(DELETE_TREE, b"app/")),
    kv(op(DELETE_CAS, b"k", index=9)),
    kv(op(GET, b"k"), op(GET_TREE, b"k/"), op(CHECK_INDEX, b"k", index=3),
       op(CHECK_NOT_EXISTS, b"z")),
    kv(op(SET, b"a", b"\0\1\2\3\xff"), op(SET, b"b", b""),
       op(SET, "caf\u00e9/\u2603".encode(), b"x" * 100,
          flags=2**64 - 1, index=2**64 - 1)),
    kv(*[op(SET, b"%d" % i, index=i) for i in range(128)]),
    reap(0),
    reap(12345),
    reap(2**64 - 1),
    # malformed
    b"",
    b"\x01",
    b"\x02\x01" + b"\0" * 6,                       # unknown version
    b"\x01\x03" + b"\0" * 6,                       # unknown type
    kv(op(SET, b"a", b"1"), n=0),                  # no ops
    kv(op(SET, b"a", b"1"), n=129),                # too many ops
    kv(op(SET, b"a", b"1"), n=2),                  # truncated
    kv(op(0, b"a", b"1")),                         # verb 0
    kv(op(10, b"a", b"1")),                        # verb past the end
    pad(struct.pack(">BBIB", 1, 1, 1, SET) + blob(b"a")),  # key without NUL
    pad(struct.pack(">BBIB", 1, 1, 1, SET) + blob(b"a\0b\0") + blob(b"") +
        b"\0" * 16),                               # NUL inside the key
    pad(struct.pack(">BBIB", 1, 1, 1, SET) + blob(b"a\0") +
        struct.pack(">I", 0xffffffff)),            # value longer than input
    kv(op(SET, b"a", b"1")) + b"\0" * 8,           # trailing padding
    kv(op(SET, b"a", b"1"))[:-1] + b"\1",          # non-zero padding
    reap(5)[:-1],                                  # short padding
    # CMD_SERVER
    server(b"s1", b"10.0.0.1:8300", b"10.0.0.1:8500"),
    server(b"", b"", b""),
    server(b"n" * (MAX_NAME - 1), b"r", b"h"),
    server(b"n" * MAX_NAME, b"r", b"h"),           # name too long
    server(b"s\0", b"r", b"h"),                    # NUL in a name
    server(b"s1", b"r", b"h")[:12],                # truncated
    # CMD_RESTORE
    restore(b""),
    restore(b"BCNSNAP\0" + bytes(range(64))),
    restore(b"x" * 40)[:30],                       # truncated
    # keys at and past KV_MAX_KEY_LEN
    kv(op(SET, b"k" * 1024, b"v")),
    kv(op(SET, b"k" * 1025, b"v")),
]

URI = [
    "/v1/kv/a%2Fb?recurse&index=5&wait=10s",
    "/v1/kv/?keys&separator=/",
    "/v1/txn",
    "/v1/kv/foo",
    "/v1/kv/foo?cas=0&flags=42",
    "/v1/kv/foo?acquire=abc&release=def",
    "/v1/kv/foo?raw",
    "/v1/kv/foo?dc=dc1&stale&consistent",
    "/v1/kv/app/config?index=18446744073709551615&wait=5m",
    "/v1/kv/sp%20ace+plus?name=a+b%20c&x=%2B",
    "/v1/kv/%E2%98%83?separator=%2F",
    "/v1/status/leader",
    "/v1/agent/self?pretty",
    "/v1/kv/a?a=1&a=2&&b=&c",
    "/v1/kv/nul%00byte?k%00ey=v%00al",
    "/?" + "&".join("p%d=%d" % (i, i) for i in range(64)),
    "/?" + "&".join("p%d" % i for i in range(65)),   # too many
    "/v1/kv/%zz",
    "/v1/kv/%",
    "/v1/kv/%4",
    "/v1/kv/a?index=%g0",
    "/v1/kv/a?x%=1",
    "",
    "?",
    "/v1/kv/a?=",
    "/v1/kv/a?==&=x=y",
]

KVKEY = [
    "a", "foo/bar", "foo/bar/", "app/config/db", "/leading", "a//b", "",
    "caf\u00e9", "\u2603/\U0001F600", "tab\there", "del\x7f",
    "x" * 1024, "x" * 1025,
    "10s", "300ms", "1.5h", "2h45m", "0", "00", "5", "+3s", "-1s",
    "1us", "1\u00b5s", "1\u03bcs", "1ns", ".5s", "1.s", "5m0.5s",
    "2562047h47m16.854775807s", "2562047h47m16.854775808s", "9999999999h",
    "18446744073709551615", "18446744073709551616", "0007", "12a",
    "aGVsbG8=", "aGVsbG8", "aGVsbA==", "aGVsbB==", "Zm9v", "Zg", "Zh==",
    "====", "a%2Fb", "%zz", "%4", "100%25",
    "true", "FALSE", "t",
]
KVKEY_BIN = [
    b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe0\x80\x80",
    b"\xf0\x9f\x98", b"\xff", b"ok\x00nul",
]

TXN = [
    '[{"KV":{"Verb":"set","Key":"a","Value":"aGVsbG8="}}]',
    '[{"KV":{"Verb":"set","Key":"a","Value":"MQ==","Flags":42}},'
    '{"KV":{"Verb":"get","Key":"a"}}]',
    '[{"KV":{"Verb":"cas","Key":"a","Index":0,"Value":"MQ=="}},'
    '{"KV":{"Verb":"check-index","Key":"a","Index":100}}]',
    '[{"KV":{"Verb":"cas","Key":"a","Index":100,"Value":"Mg=="}}]',
    '[{"KV":{"Verb":"set","Key":"d/1","Value":"eA=="}},'
    '{"KV":{"Verb":"set","Key":"d/2","Value":"eQ=="}},'
    '{"KV":{"Verb":"get-tree","Key":"d/"}},'
    '{"KV":{"Verb":"delete-tree","Key":"d/"}},'
    '{"KV":{"Verb":"check-not-exists","Key":"d/1"}}]',
    '[{"KV":{"Verb":"set","Key":"k"}},'
    '{"KV":{"Verb":"delete-cas","Key":"k","Index":100}}]',
    '[{"KV":{"Verb":"set","Key":"k","Value":null}},'
    '{"KV":{"Verb":"delete","Key":"k"}},{"KV":{"Verb":"delete","Key":"k"}}]',
    '[{"kv":{"verb":"set","key":"lower","value":"eA==","flags":1}}]',
    '[{"KV":{"Verb":"get","Key":"missing"}}]',
    '[{"KV":{"Verb":"check-not-exists","Key":"x"}},'
    '{"KV":{"Verb":"set","Key":"x","Value":"AA=="}},'
    '{"KV":{"Verb":"check-not-exists","Key":"x"}}]',
    '[{"KV":{"Verb":"get-tree","Key":""}}]',
    '[{"KV":{"Verb":"set","Key":"caf\\u00e9/\\u2603","Value":"/+8="}}]',
    '[' + ','.join('{"KV":{"Verb":"get-tree"}}' for _ in range(128)) + ']',
    # rejected by the parser
    '[]',
    '{"KV":{"Verb":"set","Key":"a"}}',
    '[{"Node":{"Verb":"set","Node":{"Node":"n1"}}}]',
    '[{"KV":{"Verb":"lock","Key":"a","Session":"s"}}]',
    '[{"KV":{"Verb":"set","Key":"/a"}}]',
    '[{"KV":{"Verb":"set","Key":"a//b"}}]',
    '[{"KV":{"Verb":"set","Key":"a","Value":"not base64"}}]',
    '[{"KV":{"Verb":"set","Key":"a","Value":5}}]',
    '[{"KV":{"Verb":"set","Key":"a","Flags":-1}}]',
    '[{"KV":{"Verb":"cas","Key":"a","Index":"5"}}]',
    '[{"KV":{"Verb":"set","Key":""}}]',
    '[' + ','.join('{}' for _ in range(129)) + ']',  # too many ops
    '[{"KV":',
    'null',
]


def write(name, inputs):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-"):
            os.remove(os.path.join(d, f))
    for i, data in enumerate(inputs, 1):
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, "seed-%03d" % i), "wb") as f:
            f.write(data)


write("codec", CODEC)
write("uri", URI)
write("kvkey", KVKEY + KVKEY_BIN)
write("txn", TXN)
