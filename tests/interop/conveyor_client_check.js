#!/usr/bin/env node
// A node-opcua client that does what a third-party controller or HMI would do with the
// simulator's conveyor PLC (plc_sim/servers/opcua_server.py), using only docs/plc-interface.md:
// find the namespace by URI, browse to every node by browse path, read its attributes, write
// the host-written variables with their declared types, drive the belt command handshake with
// a host heartbeat, and read a ring (head + every field array) in one Read request.
//
// It judges little itself: it prints one JSON report on stdout and
// tests/interop/test_opcua_node.py asserts on it against the tag map.
//
// Usage: node conveyor_client_check.js URL SPEC.json PKI_DIR
//   SPEC.json: {"namespace_uri", "root",
//     "items": [{"key", "node", "type", "access", "unit", "doc", "size"}]  (tags, ring heads,
//               acks and field arrays; size only for arrays),
//     "probe": {key: value}   a value of the declared type to write to each host-written scalar,
//     "wrong": {type: [type]} variant types to try on a variable of each type (must be refused),
//     "commands": [int]       PackML commands to run through the handshake, in order,
//     "ring": {"name", "head", "ack", "fields": {field: key}, "min_head", "within_ms"}}
"use strict";

const util = require("util");
// stdout carries the JSON report only: node-opcua's own log lines (console.*) go to stderr.
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
    NodeClass,
    MessageSecurityMode,
    SecurityPolicy,
    VariantArrayType,
    resolveNodeId,
} = require("node-opcua");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const HIERARCHICAL = resolveNodeId("HierarchicalReferences");
const HAS_PROPERTY = resolveNodeId("HasProperty");

function plain(value) {
    // Variant values as JSON: typed arrays to lists, Int64 pairs as they are.
    if (value === null || value === undefined) {
        return null;
    }
    if (ArrayBuffer.isView(value)) {
        return Array.from(value);
    }
    if (Array.isArray(value)) {
        return value.map(plain);
    }
    if (typeof value === "object" && typeof value.toString === "function" && value.constructor
        && value.constructor.name === "NodeId") {
        return value.toString();
    }
    return value;
}

function browsePath(start, parts, ns, referenceTypeId) {
    return {
        startingNode: start,
        relativePath: {
            elements: parts.map((name) => ({
                referenceTypeId,
                isInverse: false,
                includeSubtypes: true,
                targetName: { namespaceIndex: ns, name },
            })),
        },
    };
}

async function main() {
    const [url, specPath, pkiDir] = process.argv.slice(2);
    if (!url || !specPath || !pkiDir) {
        throw new Error("usage: conveyor_client_check.js URL SPEC.json PKI_DIR");
    }
    const spec = JSON.parse(fs.readFileSync(specPath, "utf8"));
    const items = spec.items;
    const byKey = new Map(items.map((it) => [it.key, it]));
    const report = { timings_ms: {} };
    const t0 = Date.now();
    const lap = (what) => { report.timings_ms[what] = Date.now() - t0; };

    const client = OPCUAClient.create({
        applicationName: "sortcentre-interop-node-opcua-client",
        endpointMustExist: false,
        connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
        securityMode: MessageSecurityMode.None,
        securityPolicy: SecurityPolicy.None,
        requestedSessionTimeout: 60000,
        clientCertificateManager: new OPCUACertificateManager({ rootFolder: path.join(pkiDir, "client") }),
    });
    await client.connect(url);
    const session = await client.createSession();
    lap("session");
    let heartbeat = null;
    try {
        // -- namespace by URI ----------------------------------------------------------------
        const nsArray = (await session.read({ nodeId: "i=2255", attributeId: AttributeIds.Value })).value.value;
        const ns = nsArray.indexOf(spec.namespace_uri);
        report.namespace_array = nsArray;
        report.namespace_index = ns;
        if (ns < 0) {
            throw new Error(`no namespace ${spec.namespace_uri} in ${nsArray}`);
        }

        // -- every object on the way, and every variable, by browse path from Objects --------
        const objectKeys = new Set();
        for (const it of items) {
            const parts = it.node.split(".");
            for (let i = 1; i < parts.length; i++) {
                objectKeys.add(parts.slice(0, i).join("."));
            }
        }
        const objectList = [...objectKeys].sort();
        const paths = [...objectList, ...items.map((it) => it.node)].map(
            (node) => browsePath("i=85", node.split("."), ns, HIERARCHICAL));
        const results = await session.translateBrowsePath(paths);
        const resolved = new Map();
        report.objects = {};
        report.nodes = {};
        results.forEach((res, i) => {
            const ok = res.statusCode.isGood() && res.targets && res.targets.length === 1;
            const entry = {
                path_status: res.statusCode.name,
                targets: res.targets ? res.targets.length : 0,
                node_id: ok ? res.targets[0].targetId.toString() : null,
            };
            if (i < objectList.length) {
                report.objects[objectList[i]] = entry;
                if (ok) {
                    resolved.set(`object:${objectList[i]}`, res.targets[0].targetId);
                }
            } else {
                const it = items[i - objectList.length];
                report.nodes[it.key] = entry;
                if (ok) {
                    resolved.set(it.key, res.targets[0].targetId);
                }
            }
        });
        lap("browse");

        // node class of the objects
        const objIds = objectList.filter((k) => resolved.has(`object:${k}`));
        const objClasses = await session.read(objIds.map((k) => ({
            nodeId: resolved.get(`object:${k}`), attributeId: AttributeIds.NodeClass,
        })));
        objIds.forEach((k, i) => { report.objects[k].node_class = NodeClass[objClasses[i].value.value]; });

        // -- attributes of every variable, one Read ------------------------------------------
        const attrs = {
            node_class: AttributeIds.NodeClass,
            browse_name: AttributeIds.BrowseName,
            description: AttributeIds.Description,
            data_type: AttributeIds.DataType,
            value_rank: AttributeIds.ValueRank,
            array_dimensions: AttributeIds.ArrayDimensions,
            access_level: AttributeIds.AccessLevel,
            user_access_level: AttributeIds.UserAccessLevel,
            value: AttributeIds.Value,
        };
        const found = items.filter((it) => resolved.has(it.key));
        const reads = [];
        for (const it of found) {
            for (const attributeId of Object.values(attrs)) {
                reads.push({ nodeId: resolved.get(it.key), attributeId });
            }
        }
        const dvs = await session.read(reads);
        let k = 0;
        for (const it of found) {
            const entry = report.nodes[it.key];
            for (const name of Object.keys(attrs)) {
                const dv = dvs[k++];
                if (!dv.statusCode.isGood()) {
                    entry[name] = { status: dv.statusCode.name };
                    continue;
                }
                const v = dv.value.value;
                if (name === "node_class") {
                    entry[name] = NodeClass[v];
                } else if (name === "browse_name") {
                    entry[name] = { ns: v.namespaceIndex, name: v.name };
                } else if (name === "description") {
                    entry[name] = v ? v.text : null;
                } else if (name === "data_type") {
                    entry[name] = v.toString();
                } else if (name === "value") {
                    entry.value_type = DataType[dv.value.dataType];
                    entry.value_is_array = dv.value.arrayType !== VariantArrayType.Scalar;
                    entry.value = plain(v);
                } else {
                    entry[name] = plain(v);
                }
            }
        }
        // EngineeringUnits property (EUInformation), where the tag has a unit
        const withUnit = found.filter((it) => it.unit);
        const euPaths = await session.translateBrowsePath(withUnit.map(
            (it) => browsePath(resolved.get(it.key), ["EngineeringUnits"], 0, HAS_PROPERTY)));
        const euIds = [];
        withUnit.forEach((it, i) => {
            const res = euPaths[i];
            const ok = res.statusCode.isGood() && res.targets && res.targets.length === 1;
            report.nodes[it.key].eu = { path_status: res.statusCode.name };
            if (ok) {
                euIds.push([it, res.targets[0].targetId]);
            }
        });
        const euValues = await session.read(euIds.map(([, nodeId]) => ({ nodeId, attributeId: AttributeIds.Value })));
        euIds.forEach(([it], i) => {
            const dv = euValues[i];
            const v = dv.value && dv.value.value;
            report.nodes[it.key].eu = {
                path_status: "Good",
                status: dv.statusCode.name,
                value_type: dv.value ? DataType[dv.value.dataType] : null,
                decoded_as: v && v.constructor ? v.constructor.name : null,
                display_name: v && v.displayName ? v.displayName.text : null,
            };
        });
        lap("attributes");

        // -- writes ------------------------------------------------------------------------
        const nodeOf = (key) => {
            const id = resolved.get(key);
            if (!id) {
                throw new Error(`${key} did not resolve by browse path`);
            }
            return id;
        };
        const readValues = async (keys) => {
            const got = await session.read(keys.map((key) => ({ nodeId: nodeOf(key), attributeId: AttributeIds.Value })));
            return got.map((dv) => ({ status: dv.statusCode.name, type: DataType[dv.value.dataType], value: plain(dv.value.value) }));
        };
        const writeOne = async (key, type, value) => {
            const [status] = await session.write([{
                nodeId: nodeOf(key),
                attributeId: AttributeIds.Value,
                value: { value: { dataType: DataType[type], arrayType: VariantArrayType.Scalar, value } },
            }]);
            return status.name;
        };

        report.writes = {};
        const probeKeys = Object.keys(spec.probe).filter((key) => resolved.has(key));
        const before = await readValues(probeKeys);
        for (const [i, key] of probeKeys.entries()) {
            const it = byKey.get(key);
            const status = await writeOne(key, it.type, spec.probe[key]);
            const [after] = await readValues([key]);
            const restore = await writeOne(key, it.type, before[i].value);
            const [restored] = await readValues([key]);
            report.writes[key] = {
                before: before[i], wrote: spec.probe[key], status, readback: after, restore_status: restore, restored,
            };
        }
        lap("writes");

        // a write of another variant type must be refused, and change nothing
        report.wrong_type = [];
        const samples = { Boolean: true, Byte: 1, Int32: 1, UInt32: 1, Int64: [0, 1], UInt64: [0, 1], Float: 1.5, Double: 1.5 };
        for (const key of probeKeys) {
            const it = byKey.get(key);
            for (const sent of spec.wrong[it.type] || []) {
                const [prior] = await readValues([key]);
                const status = await writeOne(key, sent, samples[sent]);
                const [after] = await readValues([key]);
                report.wrong_type.push({ key, type: it.type, sent, status, before: prior, after });
            }
        }
        // a write to a PLC-owned variable must be refused, and change nothing
        report.plc_owned = [];
        for (const it of found.filter((x) => x.access === "r")) {
            const [prior] = await readValues([it.key]);
            const value = it.size ? new Array(it.size).fill(7) : (it.type === "Boolean" ? true : (it.type === "Double" ? 7.5 : 7));
            const [status] = await session.write([{
                nodeId: nodeOf(it.key),
                attributeId: AttributeIds.Value,
                value: { value: it.size
                    ? { dataType: DataType.UInt32, arrayType: VariantArrayType.Array, value: new Uint32Array(value) }
                    : { dataType: DataType[it.type], arrayType: VariantArrayType.Scalar, value } },
            }]);
            const [after] = await readValues([it.key]);
            report.plc_owned.push({ key: it.key, status: status.name, before: prior, after });
        }
        lap("refusals");

        // -- drive the PLC: host heartbeat, command handshake ---------------------------------
        let beat = (await readValues(["host_heartbeat"]))[0].value;
        let beatErrors = 0;
        heartbeat = setInterval(() => {
            beat = (beat + 1) >>> 0;
            writeOne("host_heartbeat", "UInt32", beat).then((s) => { if (s !== "Good") beatErrors++; }, () => { beatErrors++; });
        }, 50);
        report.commands = [];
        let seq = (await readValues(["belt_command_seq"]))[0].value;
        for (const command of spec.commands) {
            seq += 1;
            const started = Date.now();
            // belt_command then belt_command_seq, in one Write request (the doc allows it)
            const statuses = await session.write([
                { nodeId: nodeOf("belt_command"), attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Int32, value: command } } },
                { nodeId: nodeOf("belt_command_seq"), attributeId: AttributeIds.Value, value: { value: { dataType: DataType.UInt32, value: seq } } },
            ]);
            let ack = null;
            while (Date.now() - started < 5000) {
                ack = (await readValues(["belt_command_ack"]))[0].value;
                if (ack === seq) {
                    break;
                }
                await sleep(20);
            }
            // an accepted command starts an acting state (Resetting, Starting, ...) that completes by
            // itself (docs/plc-interface.md, "The belt follows PackML strictly"): wait for it
            const ACTING = new Set([1, 3, 7, 8, 10, 12, 13, 14, 15, 16]);
            let [result, state] = await readValues(["belt_command_result", "belt_state"]);
            while (result.value === 0 && ACTING.has(state.value) && Date.now() - started < 5000) {
                await sleep(20);
                [result, state] = await readValues(["belt_command_result", "belt_state"]);
            }
            report.commands.push({
                command, seq, write_status: statuses.map((s) => s.name), ack, result: result.value,
                belt_state: state.value, ms: Date.now() - started,
            });
        }
        lap("commands");

        // -- a ring: wait for entries, then head + every field array in ONE Read -------------
        const ring = spec.ring;
        const fieldNames = Object.keys(ring.fields);
        const ringStart = Date.now();
        let head = 0;
        while (Date.now() - ringStart < ring.within_ms) {
            head = (await readValues([ring.head]))[0].value;
            if (head >= ring.min_head) {
                break;
            }
            await sleep(50);
        }
        const snapshot = await session.read([ring.head, ...fieldNames.map((f) => ring.fields[f])].map(
            (key) => ({ nodeId: nodeOf(key), attributeId: AttributeIds.Value })));
        report.ring = {
            name: ring.name,
            waited_ms: Date.now() - ringStart,
            statuses: snapshot.map((dv) => dv.statusCode.name),
            head: snapshot[0].value.value,
            head_type: DataType[snapshot[0].value.dataType],
            fields: {},
            field_types: {},
        };
        fieldNames.forEach((f, i) => {
            const dv = snapshot[i + 1];
            report.ring.fields[f] = plain(dv.value.value);
            report.ring.field_types[f] = DataType[dv.value.dataType];
        });
        report.ring.ack_status = await writeOne(ring.ack, "UInt32", report.ring.head);
        report.ring.ack_readback = (await readValues([ring.ack]))[0].value;
        clearInterval(heartbeat);
        heartbeat = null;
        await sleep(200); // let the last heartbeat write land
        report.heartbeat = { last: beat, errors: beatErrors, readback: (await readValues(["host_heartbeat"]))[0].value };
        lap("ring");
    } finally {
        if (heartbeat) {
            clearInterval(heartbeat);
        }
        await session.close();
        await client.disconnect();
    }
    lap("done");
    process.stdout.write(JSON.stringify(report) + "\n");
}

main().then(() => process.exit(0), (err) => {
    process.stderr.write(`conveyor_client_check: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
});
