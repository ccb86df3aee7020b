"""Identity verification cost per algorithm, next to raw joserfc decode + claims validation.

For each algorithm (HS256, RS256, ES256, EdDSA as Ed25519) the same set of distinct tokens is
verified by raw joserfc (``jwt.decode`` + ``JWTClaimsRegistry.validate``) and by
``IdentityVerifier`` with its cache off (every token a first-time verification), interleaved
in the same process; the median of several rounds is reported with the ratio (target: at most
1.20). Then the cost of a repeated token: the verifier's cache path, and a governed in-process
session presenting the same token on every call (one signature check in total).

Run:  python benchmarks/bench_identity.py [--tokens 2000] [--rounds 5] [--calls 1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, cast

import anyio
from joserfc import jwt
from joserfc.jwk import KeySet, KeySetSerialization, OctKey
from joserfc.jwt import JWTClaimsRegistry
from mcp.server.mcpserver import MCPServer

from mcpgov import Decision, GovContext, GovernedClient, Hooks, govern
from mcpgov.identity import IdentityMiddleware, IdentityVerifier
from mcpgov.testing import IdentityIssuer

ALGORITHMS = ("HS256", "RS256", "ES256", "Ed25519")
TARGET_RATIO = 1.20


def raw_verifier(issuer: IdentityIssuer) -> Any:
    """Raw joserfc: decode (signature) and validate the same claims mcpgov requires."""
    key: Any
    if issuer.secret is not None:
        key = OctKey.import_key(issuer.secret)
    else:
        key = KeySet.import_key_set(cast("KeySetSerialization", issuer.jwks()))
    claims = JWTClaimsRegistry(
        iss={"essential": True, "value": issuer.issuer},
        aud={"essential": True, "value": issuer.audience},
        sub={"essential": True},
        exp={"essential": True},
    )
    algorithms = [issuer.alg]

    def verify(token: str) -> None:
        decoded = jwt.decode(token, key, algorithms=algorithms)
        claims.validate(decoded.claims)

    return verify


async def per_algorithm(alg: str, tokens: int, rounds: int) -> tuple[float, float]:
    issuer = IdentityIssuer(alg=alg, ttl=3600)
    batch = [issuer.token(f"agent-{i}") for i in range(tokens)]
    raw = raw_verifier(issuer)
    ours = IdentityVerifier(issuer.config(), cache_size=0)
    for token in batch[:50]:  # warm-up
        raw(token)
        await ours.verify(token)
    raw_times: list[float] = []
    our_times: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        for token in batch:
            raw(token)
        raw_times.append((time.perf_counter() - start) / tokens)
        start = time.perf_counter()
        for token in batch:
            await ours.verify(token)
        our_times.append((time.perf_counter() - start) / tokens)
    return statistics.median(raw_times), statistics.median(our_times)


async def repeated_token(calls: int) -> tuple[float, float, int]:
    issuer = IdentityIssuer(alg="ES256", ttl=3600)
    verifier = IdentityVerifier(issuer.config())
    token = issuer.token()
    await verifier.verify(token)
    start = time.perf_counter()
    for _ in range(calls):
        await verifier.verify(token)
    cached = (time.perf_counter() - start) / calls
    first = verifier.signature_checks

    def make_server(with_identity: bool) -> MCPServer:
        server = MCPServer("bench")

        @server.tool()
        async def add(a: int, b: int) -> int:
            return a + b

        hooks = Hooks()

        @hooks.tool("add")
        def allow(ctx: GovContext) -> Decision:
            return Decision.allow("bench")

        chain: list[Any] = [IdentityMiddleware(verifier)] if with_identity else []
        govern(server, *chain, hooks, audit=lambda e: None)
        return server

    timings: dict[bool, list[float]] = {False: [], True: []}
    servers = {flag: make_server(flag) for flag in (False, True)}
    for _ in range(3):  # interleaved rounds: the machine's noise hits both alike
        for with_identity in (False, True):
            async with GovernedClient(
                servers[with_identity], identity=token if with_identity else None, mode="auto"
            ) as client:
                for _ in range(100):
                    await client.call_tool("add", {"a": 1, "b": 2})
                start = time.perf_counter()
                for _ in range(calls):
                    await client.call_tool("add", {"a": 1, "b": 2})
                timings[with_identity].append((time.perf_counter() - start) / calls)
    assert verifier.signature_checks == first, "a repeated token was signature-checked again"
    return cached, statistics.median(timings[True]) - statistics.median(timings[False]), verifier.signature_checks


async def main(tokens: int, rounds: int, calls: int) -> int:
    worst = 0.0
    print(f"verification of distinct tokens, median of {rounds} rounds x {tokens} tokens")
    for alg in ALGORITHMS:
        raw, ours = await per_algorithm(alg, tokens, rounds)
        ratio = ours / raw
        worst = max(worst, ratio)
        label = "EdDSA/Ed25519" if alg == "Ed25519" else alg
        print(
            f"{label:<14} raw joserfc={raw * 1e6:7.1f} us  mcpgov={ours * 1e6:7.1f} us  "
            f"ratio={ratio:.3f}  overhead={(ours - raw) * 1e6:5.1f} us"
        )
    cached, session_overhead, checks = await repeated_token(calls)
    print(f"repeated token (cache hit)       {cached * 1e6:7.1f} us/verify")
    print(f"identity on a session, same token {session_overhead * 1e6:7.1f} us/call over governed without identity")
    print(f"signature checks for {3 * (calls + 100) + 1} verifications of one token: {checks}")
    verdict = "met" if worst <= TARGET_RATIO else "NOT met"
    print(f"worst ratio {worst:.3f} (target {TARGET_RATIO:.2f}): {verdict}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    sys.exit(anyio.run(main, args.tokens, args.rounds, args.calls))
