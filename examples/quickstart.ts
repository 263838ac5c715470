// The SDK quickstart: create a space, join it, propose a delta, read telemetry.
// Run against `npm start`: RESONANCE_API_KEY=dev-key npm run example:sdk
import { ResonanceClient } from "@resonance/sdk";

const rs = new ResonanceClient({ apiKey: process.env.RESONANCE_API_KEY!, baseUrl: process.env.RESONANCE_URL ?? "http://127.0.0.1:8080" });

// 1) Create a space
const space = await rs.spaces.create({
  name: "team-room",
  basis: { primes: [2,3,5,7,11,13], cutoff: 1024 },
  phases: { golden: true, silver: true },
  operators: { resonanceTarget: 0.85 },
  entropy: { lambda: 0.03, collapseThreshold: 0.96 }
});

// 2) Open a realtime session (WebSocket under the hood)
const session = await rs.sessions.open(space.id, { role: "writer", displayName: "seb" });

// Subscribe to telemetry & deltas
session.on("telemetry", (m) => console.log("telemetry", m));
session.on("delta", (d) => console.log("delta v", d.toVersion));

// 3) Propose a delta (shift a phase bucket)
await session.proposeDelta({
  fromVersion: session.version,
  toVersion: session.version + 1,
  cv: [session.version],
  ops: [
    { op: "shift_phase", path: "/state/phases/3", value: 0.0123 }
  ]
});

// Not in the seed: let a few telemetry frames arrive, then leave so the script ends.
await new Promise((resolve) => setTimeout(resolve, 500));
session.close();
