// Compiles the chain backends' contracts with the pinned solc from npm and
// writes one JSON artifact per contract (abi, bytecode, deployedBytecode, the
// compiler version, the settings and the sha256 of every source).
//
//   npm ci && node build.mjs                 -> ../artifacts/*.json
//   node build.mjs --out /some/dir           -> /some/dir/*.json
//
// The artifacts are committed, so running the Python backends needs no
// compiler; tests/test_chain_artifact.py checks that they match the sources.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));

const PINNED = JSON.parse(readFileSync(join(here, "package.json"), "utf8")).dependencies.solc;
const SOURCES = ["TempoStreamChannel.sol", "TestToken.sol", "TIP20ChannelEscrow.sol"];
const CONTRACTS = {
  "TempoStreamChannel.sol": "TempoStreamChannel",
  "TestToken.sol": "TestToken",
  "TIP20ChannelEscrow.sol": "TIP20ChannelEscrow",
};
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "shanghai",
  metadata: { bytecodeHash: "ipfs" },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

function parseArgs(argv) {
  let out = resolve(here, "..", "artifacts");
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--out") out = resolve(argv[++i]);
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return { out };
}

function main() {
  const { out } = parseArgs(process.argv.slice(2));
  const solc = require("solc");
  const version = solc.version();
  if (!version.startsWith(`${PINNED}+`)) {
    throw new Error(`solc ${version} is installed but package.json pins ${PINNED}; run npm ci`);
  }

  const sources = {};
  const hashes = {};
  for (const file of SOURCES) {
    const text = readFileSync(join(here, file), "utf8");
    sources[file] = { content: text };
    hashes[file] = createHash("sha256").update(readFileSync(join(here, file))).digest("hex");
  }

  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const e of output.errors || []) console.error(e.formattedMessage);
  if (errors.length) process.exit(1);

  mkdirSync(out, { recursive: true });
  for (const file of SOURCES) {
    const name = CONTRACTS[file];
    const c = output.contracts[file][name];
    const artifact = {
      contractName: name,
      sourceName: file,
      compiler: { name: "solc", npmPackage: `solc@${PINNED}`, version },
      settings: { optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion, metadata: SETTINGS.metadata },
      sources: Object.fromEntries(SOURCES.map((f) => [f, { sha256: hashes[f] }])),
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
      deployedBytecode: "0x" + c.evm.deployedBytecode.object,
    };
    const path = join(out, `${name}.json`);
    writeFileSync(path, JSON.stringify(artifact, null, 2) + "\n");
    console.log(`wrote ${path} (${c.evm.deployedBytecode.object.length / 2} bytes deployed)`);
  }
}

main();
