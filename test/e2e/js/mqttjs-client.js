#!/usr/bin/env node
// SPDX-License-Identifier: MIT
//
// A small command-line MQTT.js client for the end-to-end tests (test/e2e/37-*.py).
// It connects (ws:// or wss://, or mqtt:// if asked), subscribes, publishes and waits
// for messages, and says what happened as one JSON object a line on stdout:
//
//   {"event":"connected"}                  CONNACK accepted
//   {"event":"subscribed","granted":[..]}  SUBACK, every filter granted
//   {"event":"ready"}                      subscribed; about to publish (or to wait for
//                                          a line on stdin first, with --wait-stdin)
//   {"event":"message","topic":..,"payload":..,"qos":..,"retain":..}
//   {"event":"published","count":N}        every publish sent (QoS 1/2: acknowledged)
//   {"event":"error","message":..,"code":..}   then exit 1 (2 for --timeout)
//   {"event":"done"}                       then exit 0
//
// Options:
//   --url URL                 ws://127.0.0.1:P/mqtt, wss://127.0.0.1:P/mqtt, ...
//   --ca FILE --cert FILE --key FILE   TLS: the CA the server's certificate must chain
//                             to (always verified), the client's certificate and key
//   --servername NAME         TLS server name (SNI and the name checked), if not the host
//   --username U --password P
//   --protocol-version 4|5    MQTT 3.1.1 or 5 (default 5)
//   --client-id ID            (default: MQTT.js makes one)
//   --sub FILTER              subscribe (repeatable), at --sub-qos (default: --qos)
//   --pub TOPIC --payload TEXT --qos N --count N --retain
//                             publish TEXT (its "{n}" replaced by 1..N) N times
//   --expect N                messages to wait for before "done" (default 0)
//   --wait-stdin              after "ready", wait for a line on stdin before publishing
//   --timeout SECONDS         the whole run is bounded (default 20): exit 2 after
//   --keepalive SECONDS       (default 30)
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');

let mqtt;
try {
    mqtt = require('mqtt');
} catch (e) {
    process.stdout.write(JSON.stringify({
        event: 'error',
        message: 'MQTT.js is not installed in ' + path.join(__dirname, 'node_modules') +
            ': run `make deps` (' + e.message + ')',
    }) + '\n');
    process.exit(1);
}

function say(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

function usage(msg) {
    process.stderr.write('mqttjs-client: ' + msg + '\n');
    process.exit(64);
}

function parse(argv) {
    const o = {
        url: null, ca: null, cert: null, key: null, servername: null, username: null,
        password: null, protocolVersion: 5, clientId: null, subs: [], subQos: null, pub: null,
        payload: '', qos: 0, count: 1, retain: false, expect: 0, waitStdin: false,
        timeout: 20, keepalive: 30,
    };
    const valued = {
        '--url': 'url', '--ca': 'ca', '--cert': 'cert', '--key': 'key',
        '--servername': 'servername', '--username': 'username', '--password': 'password',
        '--client-id': 'clientId', '--pub': 'pub', '--payload': 'payload',
    };
    const numeric = {
        '--protocol-version': 'protocolVersion', '--qos': 'qos', '--sub-qos': 'subQos',
        '--count': 'count', '--expect': 'expect', '--timeout': 'timeout',
        '--keepalive': 'keepalive',
    };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const need = () => {
            if (i + 1 >= argv.length) usage(a + ' needs a value');
            return argv[++i];
        };
        if (a in valued) o[valued[a]] = need();
        else if (a in numeric) {
            const v = Number(need());
            if (!Number.isFinite(v) || v < 0) usage(a + ': not a number');
            o[numeric[a]] = v;
        } else if (a === '--sub') o.subs.push(need());
        else if (a === '--retain') o.retain = true;
        else if (a === '--wait-stdin') o.waitStdin = true;
        else usage('unknown option ' + a);
    }
    if (!o.url) usage('--url is required');
    if (o.protocolVersion !== 4 && o.protocolVersion !== 5) usage('--protocol-version: 4 or 5');
    if (o.qos > 2 || (o.subQos !== null && o.subQos > 2)) usage('--qos: 0, 1 or 2');
    if (o.subQos === null) o.subQos = o.qos;
    return o;
}

const o = parse(process.argv.slice(2));
let finished = false;
let client = null;

function finish(code, obj) {
    if (finished) return;
    finished = true;
    if (obj) say(obj);
    clearTimeout(timer);
    // end() sends DISCONNECT when connected; do not wait long for it
    const exit = () => process.exit(code);
    if (client && client.connected) {
        client.end(false, {}, exit);
        setTimeout(exit, 2000).unref();
    } else {
        if (client) client.end(true);
        exit();
    }
}

const timer = setTimeout(() => {
    finish(2, { event: 'error', message: 'timeout after ' + o.timeout + ' s', timeout: true });
}, o.timeout * 1000);

const opts = {
    protocolVersion: o.protocolVersion,
    keepalive: o.keepalive,
    reconnectPeriod: 0, // one attempt: a refusal is an error, not a retry loop
    connectTimeout: Math.max(1000, Math.min(o.timeout * 1000, 15000)),
    clean: true,
};
if (o.clientId !== null) opts.clientId = o.clientId;
if (o.username !== null) opts.username = o.username;
if (o.password !== null) opts.password = o.password;
if (o.ca || o.cert || o.key) {
    const read = (f) => fs.readFileSync(f);
    if (o.ca) opts.ca = read(o.ca);
    if (o.cert) opts.cert = read(o.cert);
    if (o.key) opts.key = read(o.key);
    opts.rejectUnauthorized = true;
}
opts.wsOptions = { handshakeTimeout: opts.connectTimeout };
if (opts.ca) {
    // MQTT.js copies ca/cert/key into wsOptions only when they are not there already
    Object.assign(opts.wsOptions, { ca: opts.ca, rejectUnauthorized: true });
    if (opts.cert) opts.wsOptions.cert = opts.cert;
    if (opts.key) opts.wsOptions.key = opts.key;
}
if (o.servername) {
    opts.servername = o.servername;
    opts.wsOptions.servername = o.servername;
}

let received = 0;
let published = false;

function maybeDone() {
    if (published && received >= o.expect) finish(0, { event: 'done', received });
}

function publishAll() {
    if (!o.pub) {
        published = true;
        maybeDone();
        return;
    }
    let left = o.count;
    let sent = 0;
    if (left === 0) {
        published = true;
        maybeDone();
        return;
    }
    for (let n = 1; n <= o.count; n++) {
        const payload = o.payload.split('{n}').join(String(n));
        client.publish(o.pub, payload, { qos: o.qos, retain: o.retain }, (err) => {
            if (err) {
                finish(1, { event: 'error', message: err.message, code: err.code });
                return;
            }
            sent++;
            if (--left === 0) {
                say({ event: 'published', count: sent });
                published = true;
                maybeDone();
            }
        });
    }
}

function ready() {
    say({ event: 'ready' });
    if (!o.waitStdin) {
        publishAll();
        return;
    }
    const rl = readline.createInterface({ input: process.stdin });
    let once = false;
    rl.on('line', () => {
        if (once) return;
        once = true;
        rl.close();
        publishAll();
    });
    rl.on('close', () => {
        if (!once) finish(1, { event: 'error', message: 'stdin closed before a line' });
    });
}

try {
    client = mqtt.connect(o.url, opts);
} catch (e) {
    finish(1, { event: 'error', message: e.message });
}

if (client) {
    client.on('connect', (connack) => {
        const c = { event: 'connected' };
        if (connack && connack.sessionPresent !== undefined)
            c.session_present = connack.sessionPresent;
        say(c);
        if (o.subs.length === 0) {
            ready();
            return;
        }
        client.subscribe(o.subs, { qos: o.subQos }, (err, granted) => {
            if (err) {
                finish(1, { event: 'error', message: err.message, code: err.code });
                return;
            }
            say({ event: 'subscribed', granted: (granted || []).map((g) => g.qos) });
            ready();
        });
    });
    client.on('message', (topic, payload, packet) => {
        say({ event: 'message', topic, payload: payload.toString('utf8'), qos: packet.qos,
              retain: !!packet.retain });
        received++;
        maybeDone();
    });
    client.on('error', (err) => {
        finish(1, { event: 'error', message: err.message || String(err), code: err.code });
    });
    client.on('disconnect', (packet) => {
        finish(1, { event: 'error', message: 'DISCONNECT from the server',
                    code: packet && packet.reasonCode });
    });
    client.on('close', () => {
        finish(1, { event: 'error', message: 'connection closed' });
    });
}
