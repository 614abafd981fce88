#!/usr/bin/env node
// SPDX-License-Identifier: MIT
//
// Drives Debian's headless Chromium (puppeteer-core) through ws-page.html, for
// test/e2e/37-websockets-clients.py: the page connects with MQTT.js's browser bundle
// over WebSockets, subscribes, and optionally publishes a message of its own.
//
//   node browser.js --url ws://127.0.0.1:P/mqtt [--topic FILTER]
//        [--publish-topic T --publish-payload TEXT] [--version 4|5] [--client-id ID]
//        [--expect N] [--timeout SECONDS] [--screenshot FILE] [--chromium PATH]
//
// Prints, one a line on stdout:
//   CHROMIUM <pid>        the browser's process (leads its own process group), for
//                         a caller that must stop it when this script could not
//   READY                 the page has subscribed (publish now)
//   PUBLISHED             the page's own publish was acknowledged (with --publish-topic)
//   GOT <payload>         the first message the page received
//   MESSAGES <json>       the page's list of messages ("topic payload" each), at the end
//   CONSOLE <type> <text> the page's console errors and warnings, as they come
//   PAGEERROR <text>      an exception in the page
//   ERROR <text>          what went wrong (exit 1, or 2 for a timeout)
//   DONE                  exit 0
// Every wait is bounded by --timeout (default 30 s, for the whole run).
'use strict';

const fs = require('fs');
const path = require('path');
const url = require('url');

function out(line) {
    process.stdout.write(line + '\n');
}

let puppeteer;
try {
    puppeteer = require('puppeteer-core');
} catch (e) {
    out('ERROR puppeteer-core is not installed in ' + path.join(__dirname, 'node_modules') +
        ': run `make deps` (' + e.message + ')');
    process.exit(1);
}

function usage(msg) {
    process.stderr.write('browser.js: ' + msg + '\n');
    process.exit(64);
}

const o = { url: null, topic: 'test/#', pubTopic: null, pubPayload: '', version: '5',
            clientId: null, expect: 1, timeout: 30, screenshot: null,
            chromium: '/usr/bin/chromium' };
{
    const map = { '--url': 'url', '--topic': 'topic', '--publish-topic': 'pubTopic',
                  '--publish-payload': 'pubPayload', '--version': 'version',
                  '--client-id': 'clientId', '--expect': 'expect', '--timeout': 'timeout',
                  '--screenshot': 'screenshot', '--chromium': 'chromium' };
    const argv = process.argv.slice(2);
    for (let i = 0; i < argv.length; i++) {
        const k = map[argv[i]];
        if (!k) usage('unknown option ' + argv[i]);
        if (i + 1 >= argv.length) usage(argv[i] + ' needs a value');
        o[k] = argv[++i];
    }
    if (!o.url) usage('--url is required');
    o.expect = Number(o.expect);
    o.timeout = Number(o.timeout);
    if (!(o.timeout > 0) || !(o.expect >= 0)) usage('--timeout and --expect are numbers');
}

const deadline = Date.now() + o.timeout * 1000;
const left = () => Math.max(1, deadline - Date.now());
let browser = null;

class Timeout extends Error {}

// the last resort: whatever hangs, the run ends (puppeteer kills Chromium on exit)
const hard = setTimeout(() => {
    out('ERROR timeout after ' + o.timeout + ' s (hard limit)');
    if (browser && browser.process()) browser.process().kill('SIGKILL');
    process.exit(2);
}, o.timeout * 1000 + 5000);
hard.unref();

async function waitTitle(page, pred, what) {
    try {
        await page.waitForFunction(pred, { timeout: left(), polling: 50 });
    } catch (e) {
        const title = await page.title().catch(() => '?');
        const state = await page.$eval('#state', (el) => el.textContent).catch(() => '?');
        throw new Timeout('timeout waiting for ' + what + ' (title "' + title + '", state "' +
                          state + '")');
    }
    const title = await page.title();
    if (title.startsWith('error:')) throw new Error('page: ' + title.slice(6));
    return title;
}

async function main() {
    const q = new URLSearchParams({ url: o.url, topic: o.topic, version: o.version });
    if (o.pubTopic) {
        q.set('pubtopic', o.pubTopic);
        q.set('pubmsg', o.pubPayload);
    }
    if (o.clientId) q.set('clientid', o.clientId);
    const page_url = url.pathToFileURL(path.join(__dirname, 'ws-page.html')).href + '?' + q;

    browser = await puppeteer.launch({
        executablePath: o.chromium,
        headless: true,
        timeout: left(),
        protocolTimeout: Math.max(left(), 10000),
        args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
               '--no-first-run', '--no-default-browser-check', '--window-size=900,600'],
    });
    if (browser.process()) out('CHROMIUM ' + browser.process().pid);
    const page = await browser.newPage();
    page.setDefaultTimeout(left());
    page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warn' || m.type() === 'warning')
            out('CONSOLE ' + m.type() + ' ' + m.text().replace(/\n/g, ' '));
    });
    page.on('pageerror', (e) => out('PAGEERROR ' + String(e.message || e).replace(/\n/g, ' ')));
    page.on('requestfailed', (r) =>
        out('CONSOLE requestfailed ' + r.url().split('?')[0] + ' ' +
            ((r.failure() && r.failure().errorText) || '')));
    await page.goto(page_url, { waitUntil: 'load', timeout: left() });

    await waitTitle(page, () => document.title === 'subscribed' ||
                              document.title.startsWith('got:') ||
                              document.title.startsWith('error:'), 'the subscription');
    out('READY');
    if (o.pubTopic) {
        await page.waitForFunction(() => {
            const p = document.getElementById('published').textContent;
            return p === 'published' || document.title.startsWith('error:');
        }, { timeout: left(), polling: 50 }).catch(() => {
            throw new Timeout('timeout waiting for the page\'s publish to be acknowledged');
        });
        const title = await page.title();
        if (title.startsWith('error:')) throw new Error('page: ' + title.slice(6));
        out('PUBLISHED');
    }
    if (o.expect > 0) {
        const title = await waitTitle(page, () => document.title.startsWith('got:') ||
                                                document.title.startsWith('error:'),
                                      'a message');
        out('GOT ' + title.slice(4));
        const n = o.expect;
        await page.waitForFunction((k) => document.querySelectorAll('#messages li').length >= k,
                                   { timeout: left(), polling: 50 }, n).catch(() => {
            throw new Timeout('timeout waiting for ' + n + ' messages');
        });
    }
    const msgs = await page.$$eval('#messages li', (lis) => lis.map((li) => li.textContent));
    out('MESSAGES ' + JSON.stringify(msgs));
    if (o.screenshot) {
        await page.screenshot({ path: o.screenshot });
        if (!fs.existsSync(o.screenshot)) throw new Error('no screenshot written');
    }
}

// close Chromium, bounded: killed if it does not go within 5 s
async function closeBrowser() {
    if (!browser) return;
    const proc = browser.process();
    let t;
    await Promise.race([browser.close().catch(() => {}),
                        new Promise((r) => { t = setTimeout(r, 5000); })]);
    clearTimeout(t);
    if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
}

main().then(async () => {
    await closeBrowser();
    out('DONE');
    process.exit(0);
}, async (e) => {
    out('ERROR ' + String(e && e.message || e).replace(/\n/g, ' '));
    await closeBrowser();
    process.exit(e instanceof Timeout || (e && e.name === 'TimeoutError') ? 2 : 1);
});
