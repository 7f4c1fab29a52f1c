#!/usr/bin/env node
// A node-opcua client playing the SCADA against the controller's PackTags server
// (control/packtags/): find the PackML namespace and ours by URI, browse
// Objects/PackMLObjects/Sorter/... by browse path (docs/packtags.md), read the Status, Admin and
// state machine tags, optionally send a PackML command (CntrlCmd + CmdChangeRequest) and watch
// StateCurrent until it reaches a state. Prints one JSON report on stdout; the pytest module
// (tests/interop/test_packtags_node.py) judges it.
//
// Usage: node packtags_client_check.js URL PKI_DIR OPTIONS.json
//   OPTIONS: {"mode": "None"|"Sign"|"SignAndEncrypt", "policy": "None"|"Basic256Sha256"|
//             "Aes256_Sha256_RsaPss", "user", "password", "command": int, "wait_state": int,
//             "within_ms": int}
// A failure to connect or to open a session prints {"error": "..."} and exits 3.
"use strict";

const util = require("util");
for (const level of ["log", "info", "warn", "debug", "error"]) {
    console[level] = (...args) => process.stderr.write(util.format(...args) + "\n");
}
const fs = require("fs");
const path = require("path");
const {
    OPCUAClient,
    OPCUACertificateManager,
    AttributeIds,
    DataType,
    MessageSecurityMode,
    SecurityPolicy,
    UserTokenType,
    resolveNodeId,
} = require("node-opcua");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const HIERARCHICAL = resolveNodeId("HierarchicalReferences");
const PACKML_URI = "http://opcfoundation.org/UA/PackML/";
const OUR_URI = "urn:sortcentre:packtags";

// tag -> browse names after Objects/PackMLObjects/Sorter, each [name, "packml"|"ours"|"ua"]
const TAGS = {
    "Status.StateCurrent": [["Status", "packml"], ["StateCurrent", "ours"]],
    "Status.UnitModeCurrent": [["Status", "packml"], ["UnitModeCurrent", "packml"]],
    "Status.CurMachSpeed": [["Status", "packml"], ["CurMachSpeed", "packml"]],
    "Status.MachSpeed": [["Status", "packml"], ["MachSpeed", "packml"]],
    "Status.EquipmentBlocked": [["Status", "packml"], ["EquipmentBlocked", "packml"]],
    "Status.EquipmentStarved": [["Status", "packml"], ["EquipmentStarved", "packml"]],
    "Admin.ProdProcessedCount": [["Admin", "packml"], ["ProdProcessedCount", "packml"]],
    "Admin.StopReason": [["Admin", "packml"], ["StopReason", "packml"]],
    "Admin.StateCumulativeTime": [["Admin", "packml"], ["StateCumulativeTime", "packml"]],
    "Admin.AccTimeSinceReset": [["Admin", "packml"], ["AccTimeSinceReset", "packml"]],
    "BaseStateMachine.CurrentState": [["BaseStateMachine", "packml"], ["CurrentState", "ua"]],
    "Command.CntrlCmd": [["Command", "ours"], ["CntrlCmd", "ours"]],
    "Command.CmdChangeRequest": [["Command", "ours"], ["CmdChangeRequest", "ours"]],
};

function plain(value) {
    if (value === null || value === undefined) return null;
    if (ArrayBuffer.isView(value)) return Array.from(value);
    if (Array.isArray(value)) return value.map(plain);
    if (typeof value === "object" && value.constructor && value.constructor.name === "LocalizedText") return value.text;
    if (typeof value === "object" && typeof value.toJSON === "function") return value.toJSON();
    return value;
}

async function main() {
    const [url, pkiDir, optsPath] = process.argv.slice(2);
    const opts = JSON.parse(fs.readFileSync(optsPath, "utf8"));
    const report = { reads: {}, states_seen: [] };
    const mode = MessageSecurityMode[opts.mode || "None"];
    const policy = SecurityPolicy[opts.policy || "None"];
    const certificateManager = new OPCUACertificateManager({ rootFolder: path.join(pkiDir, "client"), automaticallyAcceptUnknownCertificate: true });
    await certificateManager.initialize();
    const client = OPCUAClient.create({
        applicationName: "sortcentre-interop-scada",
        applicationUri: "urn:sortcentre:interop:scada",
        endpointMustExist: false,
        connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
        securityMode: mode,
        securityPolicy: policy,
        requestedSessionTimeout: 60000,
        clientCertificateManager: certificateManager,
    });
    let session;
    try {
        await client.connect(url);
        const identity = opts.user
            ? { type: UserTokenType.UserName, userName: opts.user, password: opts.password }
            : { type: UserTokenType.Anonymous };
        session = await client.createSession(identity);
    } catch (err) {
        report.error = String(err && err.message ? err.message : err);
        report.client_certificate = path.join(pkiDir, "client", "own", "certs", "client_certificate.pem");
        process.stdout.write(JSON.stringify(report) + "\n");
        try { await client.disconnect(); } catch (e) { /* gone */ }
        process.exit(3);
    }
    try {
        const nsArray = (await session.read({ nodeId: "i=2255", attributeId: AttributeIds.Value })).value.value;
        const ns = { packml: nsArray.indexOf(PACKML_URI), ours: nsArray.indexOf(OUR_URI), ua: 0 };
        report.namespaces = ns;
        const keys = Object.keys(TAGS);
        const paths = keys.map((k) => ({
            startingNode: resolveNodeId("ObjectsFolder"),
            relativePath: {
                elements: [["PackMLObjects", "packml"], ["Sorter", "ours"], ...TAGS[k]].map(([name, where]) => ({
                    referenceTypeId: HIERARCHICAL, isInverse: false, includeSubtypes: true,
                    targetName: { namespaceIndex: ns[where], name },
                })),
            },
        }));
        const found = await session.translateBrowsePath(paths);
        const ids = {};
        keys.forEach((k, i) => {
            const r = found[i];
            ids[k] = r.statusCode.isGood() && r.targets.length ? r.targets[0].targetId.toString() : null;
        });
        report.node_ids = ids;
        const readable = keys.filter((k) => ids[k]);
        const dvs = await session.read(readable.map((k) => ({ nodeId: ids[k], attributeId: AttributeIds.Value })));
        readable.forEach((k, i) => {
            report.reads[k] = { status: dvs[i].statusCode.name, value: plain(dvs[i].value.value), type: DataType[dvs[i].value.dataType] };
        });
        if (opts.command !== undefined) {
            const results = await session.write([
                { nodeId: ids["Command.CntrlCmd"], attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Int32, value: opts.command } } },
            ]);
            const req = await session.write([
                { nodeId: ids["Command.CmdChangeRequest"], attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Boolean, value: true } } },
            ]);
            report.command_write = [results[0].name, req[0].name];
        }
        if (opts.wait_state !== undefined) {
            const deadline = Date.now() + (opts.within_ms || 20000);
            while (Date.now() < deadline) {
                const dv = await session.read({ nodeId: ids["Status.StateCurrent"], attributeId: AttributeIds.Value });
                const s = dv.value.value;
                if (report.states_seen[report.states_seen.length - 1] !== s) report.states_seen.push(s);
                if (s === opts.wait_state) break;
                await sleep(100);
            }
            const cs = await session.read({ nodeId: ids["BaseStateMachine.CurrentState"], attributeId: AttributeIds.Value });
            report.final_current_state = plain(cs.value.value);
        }
    } finally {
        await session.close();
        await client.disconnect();
    }
    process.stdout.write(JSON.stringify(report) + "\n");
}

main().catch((err) => {
    process.stdout.write(JSON.stringify({ error: String(err && err.stack ? err.stack : err) }) + "\n");
    process.exit(2);
});
