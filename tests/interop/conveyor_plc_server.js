#!/usr/bin/env node
// A conveyor PLC built on node-opcua instead of asyncua: the nodes of config/tagmap.yaml's
// `conveyor` section, as docs/plc-interface.md describes them, served by an independent OPC UA
// stack. tests/interop/test_opcua_node.py runs the controller's asyncua client driver
// (control/plc/opcua.py) against it, to catch a client that only works with asyncua's server.
//
// Like a real PLC, and unlike the simulator:
//  - other namespaces come first, so ours is not ns=2 (Siemens S7-1500 puts its PLC tags at
//    ns=3, B&R at ns=6): a client must look the index up by URI;
//  - node-opcua obeys the browse result mask, refuses a write of the wrong variant type,
//    and refuses writes to read-only variables;
//  - with the "refuse_timestamps" switch on, a write whose DataValue carries a SourceTimestamp
//    or ServerTimestamp is refused with BadWriteNotSupported, as the S7-1200/1500 and Kepware
//    servers do (OPC UA Part 4, 5.10.4.2 allows it).
//
// Usage: node conveyor_plc_server.js SPEC.json PKI_DIR [PORT]
//   SPEC.json: {"namespace_uri", "root", "tags": {name: {node, type, access, unit, doc}},
//               "rings": {name: {size, head, ack, fields: {field: node}}}, "path"} (the tag
//               map's conveyor section as JSON, plus the endpoint path of config/site.yaml).
//               Optional "security": {"policies": [...], "modes": [...], "allow_anonymous": bool}
//               makes it a securely set-up PLC: only those policies/modes, anonymous as said,
//               and client certificates accepted only when in PKI_DIR/server/trusted/certs
//               (refused ones go to PKI_DIR/server/rejected) - without it, any is accepted.
//   PORT: 0 or absent = any free port; it listens on 127.0.0.1 only.
// Prints one JSON line {"ready": true, "url", "port", "namespace_index", "certificate"} when
// listening ("certificate": the server's own certificate file, PEM), then
// answers one JSON line per request line on stdin (the PLC program's side of the memory):
//   {"id", "op": "set", "values": {name: value}}       the PLC writes scalars (any access)
//   {"id", "op": "get", "names": [name]}               -> {"values": {name: {"type", "value"}}}
//   {"id", "op": "push", "ring", "entries": [{field: value}]}  slots first, then head once
//   {"id", "op": "refuse_timestamps", "on": bool}
//   {"id", "op": "stop"}                                shuts down and exits 0
// Names are tag names, plus "<ring>.head" and "<ring>.ack". Closing stdin also stops it.
"use strict";

const util = require("util");
// stdout carries the JSON lines only: node-opcua's own log lines (console.*) go to stderr.
for (const level of ["log", "info", "warn", "debug", "error"]) {
    console[level] = (...args) => process.stderr.write(util.format(...args) + "\n");
}
const fs = require("fs");
const path = require("path");
const readline = require("readline");
const {
    OPCUAServer,
    OPCUACertificateManager,
    DataType,
    Variant,
    VariantArrayType,
    StatusCodes,
    AttributeIds,
    MessageSecurityMode,
    SecurityPolicy,
} = require("node-opcua");

const TYPES = { Boolean: DataType.Boolean, Int32: DataType.Int32, UInt32: DataType.UInt32, Double: DataType.Double };

function log(...args) {
    process.stderr.write(args.join(" ") + "\n");
}

async function main() {
    const [specPath, pkiDir, portArg] = process.argv.slice(2);
    if (!specPath || !pkiDir) {
        throw new Error("usage: conveyor_plc_server.js SPEC.json PKI_DIR [PORT]");
    }
    const spec = JSON.parse(fs.readFileSync(specPath, "utf8"));
    const security = spec.security || null;
    const certificateManager = new OPCUACertificateManager({
        rootFolder: path.join(pkiDir, "server"),
        automaticallyAcceptUnknownCertificate: !security,
    });
    const server = new OPCUAServer({
        host: "127.0.0.1",
        hostname: "127.0.0.1",
        port: Number(portArg || 0),
        resourcePath: spec.path || "/sortcentre/conveyor",
        serverCertificateManager: certificateManager,
        userCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(pkiDir, "user") }),
        securityPolicies: security
            ? security.policies.map((p) => SecurityPolicy[p])
            : [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
        securityModes: security
            ? security.modes.map((m) => MessageSecurityMode[m])
            : [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
        allowAnonymous: security ? Boolean(security.allow_anonymous) : true,
        // user names and passwords, besides anonymous, when the spec has "users"
        userManager: { isValidUser: (user, password) => Boolean(spec.users) && spec.users[user] === password },
        serverInfo: { applicationUri: "urn:sortcentre:interop:node-opcua-plc", productUri: "sortcentre-interop" },
        buildInfo: { productName: "sortcentre interop PLC (node-opcua)" },
    });
    await server.initialize();

    const addressSpace = server.engine.addressSpace;
    // Another vendor namespace first: ours must not land on ns=2.
    addressSpace.registerNamespace("urn:sortcentre:interop:vendor-system");
    const ns = addressSpace.registerNamespace(spec.namespace_uri);
    const nsIndex = ns.index;

    const objects = new Map(); // "Sorter.Belt" -> UAObject
    function parentOf(node) {
        const parts = node.split(".");
        if (parts[0] !== spec.root || parts.length < 2) {
            throw new Error(`node ${node} is not under ${spec.root}`);
        }
        let parent = null;
        for (let i = 1; i < parts.length; i++) {
            const key = parts.slice(0, i).join(".");
            let obj = objects.get(key);
            if (!obj) {
                const where = parent ? { componentOf: parent } : { organizedBy: addressSpace.rootFolder.objects };
                obj = ns.addObject({ ...where, browseName: parts[i - 1], nodeId: `s=${key}` });
                objects.set(key, obj);
            }
            parent = obj;
        }
        return parent;
    }

    const vars = new Map(); // name -> {variable, type}
    function addScalar(name, node, type, writable, doc) {
        const access = writable ? "CurrentRead | CurrentWrite" : "CurrentRead";
        const variable = ns.addVariable({
            componentOf: parentOf(node),
            browseName: node.split(".").pop(),
            nodeId: `s=${node}`,
            dataType: type,
            valueRank: -1,
            accessLevel: access,
            userAccessLevel: access,
            description: doc || undefined,
            value: new Variant({ dataType: TYPES[type], value: type === "Boolean" ? false : 0 }),
        });
        vars.set(name, { variable, type });
        return variable;
    }

    for (const [name, tag] of Object.entries(spec.tags)) {
        addScalar(name, tag.node, tag.type, tag.access === "w", tag.doc);
    }
    const rings = new Map();
    for (const [rname, ring] of Object.entries(spec.rings)) {
        const head = addScalar(`${rname}.head`, ring.head, "UInt32", false, `${rname} ring head`);
        addScalar(`${rname}.ack`, ring.ack, "UInt32", true, `${rname} ring ack`);
        const fields = {};
        for (const [fname, fnode] of Object.entries(ring.fields)) {
            const column = new Uint32Array(ring.size);
            const variable = ns.addVariable({
                componentOf: parentOf(fnode),
                browseName: fnode.split(".").pop(),
                nodeId: `s=${fnode}`,
                dataType: "UInt32",
                valueRank: 1,
                arrayDimensions: [ring.size],
                accessLevel: "CurrentRead",
                userAccessLevel: "CurrentRead",
                description: `${rname} ring field ${fname}`,
                value: new Variant({ dataType: DataType.UInt32, arrayType: VariantArrayType.Array, value: column }),
            });
            fields[fname] = { variable, column };
        }
        rings.set(rname, { size: ring.size, head, headSeq: 0, fields });
    }

    // A PLC that cannot store client timestamps refuses them (switchable at run time).
    let refuseTimestamps = false;
    const refusedWrites = [];
    for (const { variable } of vars.values()) {
        const original = variable.writeAttribute.bind(variable);
        variable.writeAttribute = function (context, writeValue, callback) {
            const dv = writeValue && writeValue.value;
            if (refuseTimestamps && writeValue.attributeId === AttributeIds.Value && dv
                && (dv.sourceTimestamp || dv.serverTimestamp)) {
                refusedWrites.push(variable.nodeId.toString());
                const status = StatusCodes.BadWriteNotSupported;
                if (callback) {
                    callback(null, status);
                    return undefined;
                }
                return Promise.resolve(status);
            }
            return original(context, writeValue, callback);
        };
    }

    await server.start();
    const port = server.endpoints[0].port;
    const url = `opc.tcp://127.0.0.1:${port}${spec.path || "/sortcentre/conveyor"}`;
    process.stdout.write(JSON.stringify({
        ready: true, url, port, namespace_index: nsIndex, certificate: server.certificateFile,
    }) + "\n");

    function lookup(name) {
        const v = vars.get(name);
        if (!v) {
            throw new Error(`no tag ${name}`);
        }
        return v;
    }

    function set(name, value) {
        const { variable, type } = lookup(name);
        variable.setValueFromSource(new Variant({ dataType: TYPES[type], value }), StatusCodes.Good);
    }

    function push(rname, entries) {
        const ring = rings.get(rname);
        if (!ring) {
            throw new Error(`no ring ${rname}`);
        }
        let seq = ring.headSeq;
        for (const entry of entries) {
            seq += 1;
            const slot = seq % ring.size;
            for (const [fname, { column }] of Object.entries(ring.fields)) {
                column[slot] = fname === "seq" ? seq : (entry[fname] ?? 0);
            }
        }
        for (const { variable, column } of Object.values(ring.fields)) {
            variable.setValueFromSource(new Variant({
                dataType: DataType.UInt32, arrayType: VariantArrayType.Array, value: new Uint32Array(column),
            }));
        }
        ring.headSeq = seq;
        set(`${rname}.head`, seq);
        return seq;
    }

    let stopping = false;
    async function stop() {
        if (stopping) {
            return;
        }
        stopping = true;
        await server.shutdown(0);
        process.exit(0);
    }

    const rl = readline.createInterface({ input: process.stdin, terminal: false });
    rl.on("line", (line) => {
        if (!line.trim()) {
            return;
        }
        let req = {};
        try {
            req = JSON.parse(line);
            let reply = {};
            if (req.op === "set") {
                for (const [name, value] of Object.entries(req.values)) {
                    set(name, value);
                }
            } else if (req.op === "get") {
                const values = {};
                for (const name of req.names) {
                    const dv = lookup(name).variable.readValue();
                    values[name] = { type: DataType[dv.value.dataType], value: dv.value.value };
                }
                reply = { values };
            } else if (req.op === "push") {
                reply = { head: push(req.ring, req.entries) };
            } else if (req.op === "refuse_timestamps") {
                refuseTimestamps = Boolean(req.on);
                reply = { refused_writes: refusedWrites.splice(0) };
            } else if (req.op === "stop") {
                process.stdout.write(JSON.stringify({ id: req.id, ok: true }) + "\n");
                stop();
                return;
            } else {
                throw new Error(`unknown op ${req.op}`);
            }
            process.stdout.write(JSON.stringify({ id: req.id, ok: true, ...reply }) + "\n");
        } catch (err) {
            process.stdout.write(JSON.stringify({ id: req.id, ok: false, error: String(err && err.stack || err) }) + "\n");
        }
    });
    rl.on("close", () => stop());
}

main().catch((err) => {
    log("conveyor_plc_server:", err && err.stack ? err.stack : err);
    process.exit(1);
});
