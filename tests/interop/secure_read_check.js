#!/usr/bin/env node
// A node-opcua client with OPC UA security on, against one of our asyncua servers (the
// PackTags server, control/packtags/, or the simulator's conveyor PLC, plc_sim/): connect with a
// security mode and policy and a user, read some variables by namespace URI + string NodeId,
// print one JSON report. It proves that an independent stack can get through our security set-up
// (control/plc/security.py) once its certificate is trusted, and that it is refused before.
// tests/interop/test_security_node.py judges the report.
//
// Usage: node secure_read_check.js, then one attempt per JSON line on stdin, one report line
// per attempt on stdout (loading node-opcua takes 2-4 s: one process serves a whole test module,
// and the test can trust a certificate between two attempts). Closing stdin ends it.
//   attempt: {"url", "pki": dir, "mode": "None"|"Sign"|"SignAndEncrypt",
//             "policy": "None"|"Basic256Sha256"|"Aes256_Sha256_RsaPss",
//             "user", "password", "namespace_uri", "nodes": [string NodeId, ...]}
//   pki: node-opcua's own PKI folder (created on first use: its application certificate is
//        <pki>/own/certs/client_certificate.pem); it accepts our server's certificate.
//   report: {"certificate": path, "security": {"mode", "policy"}, "namespace_index",
//            "reads": {node: {status, type, value}}}, or, when the connection or the session is
//            refused, {"certificate": path, "error": text}.
"use strict";

const util = require("util");
// stdout carries the report only: node-opcua's own log lines (console.*) go to stderr.
for (const level of ["log", "info", "warn", "debug", "error"]) {
    console[level] = (...args) => process.stderr.write(util.format(...args) + "\n");
}
const readline = require("readline");
const {
    OPCUAClient,
    OPCUACertificateManager,
    AttributeIds,
    DataType,
    MessageSecurityMode,
    SecurityPolicy,
    UserTokenType,
} = require("node-opcua");

const managers = new Map(); // one certificate manager per PKI folder

async function attempt(opts) {
    let certificateManager = managers.get(opts.pki);
    if (!certificateManager) {
        certificateManager = new OPCUACertificateManager({
            rootFolder: opts.pki,
            automaticallyAcceptUnknownCertificate: true, // these tests are about the server's trust list
        });
        await certificateManager.initialize();
        managers.set(opts.pki, certificateManager);
    }
    const client = OPCUAClient.create({
        applicationName: "sortcentre-interop-secure-client",
        applicationUri: "urn:sortcentre:interop:node-opcua-client",
        endpointMustExist: false,
        connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
        securityMode: MessageSecurityMode[opts.mode || "None"],
        securityPolicy: SecurityPolicy[opts.policy || "None"],
        requestedSessionTimeout: 30000,
        clientCertificateManager: certificateManager,
    });
    const report = { certificate: client.certificateFile, security: { mode: opts.mode, policy: opts.policy }, reads: {} };
    let session;
    try {
        await client.connect(opts.url);
        const identity = opts.user
            ? { type: UserTokenType.UserName, userName: opts.user, password: opts.password }
            : { type: UserTokenType.Anonymous };
        session = await client.createSession(identity);
    } catch (err) {
        report.error = String(err && err.message ? err.message : err);
        try { await client.disconnect(); } catch (e) { /* gone */ }
        return report;
    }
    try {
        const nsArray = (await session.read({ nodeId: "i=2255", attributeId: AttributeIds.Value })).value.value;
        const ns = nsArray.indexOf(opts.namespace_uri);
        report.namespace_index = ns;
        const nodes = opts.nodes || [];
        const dvs = await session.read(nodes.map((n) => ({ nodeId: `ns=${ns};s=${n}`, attributeId: AttributeIds.Value })));
        nodes.forEach((n, i) => {
            const v = dvs[i].value;
            report.reads[n] = { status: dvs[i].statusCode.name, type: DataType[v.dataType], value: v.value };
        });
    } finally {
        await session.close();
        await client.disconnect();
    }
    return report;
}

async function main() {
    const rl = readline.createInterface({ input: process.stdin, terminal: false });
    for await (const line of rl) {
        if (!line.trim()) continue;
        let report;
        try {
            report = await attempt(JSON.parse(line));
        } catch (err) {
            report = { error: String(err && err.stack ? err.stack : err) };
        }
        process.stdout.write(JSON.stringify(report) + "\n");
    }
    process.exit(0);
}

main().catch((err) => {
    process.stdout.write(JSON.stringify({ error: String(err && err.stack ? err.stack : err) }) + "\n");
    process.exit(2);
});
