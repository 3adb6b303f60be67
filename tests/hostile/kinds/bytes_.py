"""Kind ``bytes``: seeded byte mutations of small valid models (flip, insert, delete,
truncate).  A mutated file may still be a valid model, so either answer is fine: refused with
an EmberError, or run and agreeing with onnxruntime on the mutated model."""

from __future__ import annotations

import random

from .. import models as M
from ..case import EITHER, Case

MUTATIONS = ("flip1", "flip1", "flip1", "flip4", "flip4", "insert", "insert", "delete", "delete",
             "truncate", "truncate", "zero8")


def mutate(data: bytes, how: str, r: random.Random) -> bytes:
    b = bytearray(data)
    n = len(b)
    if how.startswith("flip"):
        for _ in range(int(how[4:])):
            i = r.randrange(n)
            b[i] ^= 1 << r.randrange(8)
    elif how == "insert":
        i = r.randrange(n + 1)
        b[i:i] = bytes(r.randrange(256) for _ in range(r.choice((1, 2, 5))))
    elif how == "delete":
        i = r.randrange(n)
        del b[i:i + r.choice((1, 2, 5))]
    elif how == "truncate":
        del b[r.randrange(1, n):]
    elif how == "zero8":
        i = r.randrange(n)
        b[i:i + 8] = bytes(len(b[i:i + 8]))
    return bytes(b)


def _case(seed: str, k: int, how: str) -> Case:
    def setup(ctx):
        r = random.Random(f"{seed}-{k}-{how}")
        data = M.SEEDS[seed]().SerializeToString()
        return M.write_model(ctx, mutate(data, how, r))

    def act(ctx, path):
        return M.compile_and_run(path)

    return Case(f"bytes/{seed}-{how}-{k}", EITHER, act, setup, timeout=40,
                ort=lambda ctx, path: M.ort_run(path))


def cases():
    for seed in M.SEEDS:
        for k, how in enumerate(MUTATIONS):
            yield _case(seed, k, how)
