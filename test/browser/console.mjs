// Drives the console of a live `bulkhead serve` (BASE, admin token ADMIN) in
// headless Chromium as the operator and then as a tenant, writes a
// screenshot of each page to SHOTS, and prints one JSON line of what it saw
// for cmd/bulkhead's TestBrowserConsole to check. Any step that cannot be
// done throws, and the process exits non-zero.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const base = process.env.BASE;
const admin = process.env.ADMIN;
const shots = process.env.SHOTS;
if (!base || !admin || !shots) throw new Error('BASE, ADMIN and SHOTS are required');
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
const out = { errors: [] };

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1200, height: 860 } });
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  page.on('dialog', (d) => d.accept()); // the confirmations of console.js
  // Script errors and CSP refusals; a page's own 4xx status is expected.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) out.errors.push(m.text());
  });
  page.on('pageerror', (e) => out.errors.push(String(e)));
  return { context, page };
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, name + '.png'), fullPage: true });
}

async function signIn(page, credential) {
  await page.goto(base + '/console/');
  await page.fill('#credential', credential);
  await Promise.all([page.waitForLoadState('load'), page.click('button[type=submit]')]);
}

try {
  // The operator.
  const op = await newPage();
  let page = op.page;
  await page.goto(base + '/console/');
  out.signinURL = new URL(page.url()).pathname;
  await shot(page, 'signin');
  await signIn(page, admin);
  out.operatorHome = new URL(page.url()).pathname;

  for (const [id, name, prompt] of [['globex', 'Globex', 'You are Globex support.'], ['acme', 'Acme Corp', "You are Acme's support assistant."]]) {
    await page.goto(base + '/console/tenants');
    await page.fill('#id', id);
    await page.fill('#name', name);
    await page.fill('#system_prompt', prompt);
    await Promise.all([page.waitForURL(`**/console/tenants/${id}?done=created`), page.click('#create-tenant button[type=submit]')]);
  }
  out.created = (await page.textContent('.flash')) || '';

  // Keys: create two, revoke the first.
  const keys = [];
  for (const name of ['backend', 'console-demo']) {
    await page.goto(base + '/console/tenants/acme/keys');
    await page.fill('#key-name', name);
    await Promise.all([page.waitForSelector('#new-key-value'), page.click('#create-key button[type=submit]')]);
    keys.push((await page.textContent('#new-key-value')).trim());
  }
  out.keys = keys.map((k) => k.slice(0, 3));
  const revokedID = keys[0].split('_')[1];
  await shot(page, 'keys-created');
  await page.goto(base + '/console/tenants/acme/keys');
  await Promise.all([page.waitForURL('**/keys?done=revoked'), page.click(`tr[data-key="${revokedID}"] button`)]);
  out.revokedRow = (await page.textContent(`tr[data-key="${revokedID}"]`)) || '';
  await shot(page, 'keys');
  out.revokedKeyAPI = (await fetch(base + '/v1/models', { headers: { Authorization: 'Bearer ' + keys[0] } })).status;

  // Traffic for the usage pages: acme's end user through the console's key,
  // globex's through a key made with the admin API.
  const chat = async (key, user) => {
    const resp = await fetch(base + '/v1/chat/completions', {
      method: 'POST',
      headers: { Authorization: 'Bearer ' + key, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'default', user, messages: [{ role: 'user', content: 'Where is my order?' }] }),
    });
    if (resp.status !== 200) throw new Error(`chat as ${user}: ${resp.status} ${await resp.text()}`);
  };
  const globexKey = await fetch(base + '/admin/v1/tenants/globex/keys', { method: 'POST', headers: { Authorization: 'Bearer ' + admin } });
  if (globexKey.status !== 201) throw new Error('globex key: ' + globexKey.status);
  const gk = (await globexKey.json()).key;
  for (let i = 0; i < 3; i++) await chat(keys[1], 'alice-at-acme');
  await chat(gk, 'bob-at-globex');

  // A bad policy: the error is shown at its line.
  await page.goto(base + '/console/tenants/acme');
  await page.fill('#policy-text', '@id("refunds")\nforbid (principal, action, resource) when { context.amount >= };\n');
  await Promise.all([page.waitForSelector('#policy-error'), page.click('#policy-form button[type=submit]')]);
  out.policyError = await page.textContent('#policy-error');
  out.policyBadLine = await page.textContent('#policy-bad-line');
  await shot(page, 'tenant-policy-error');
  await page.fill('#policy-text', '@id("refunds")\nforbid (principal, action, resource) when { context has amount && context.amount >= 500 };\n');
  await Promise.all([page.waitForURL('**/console/tenants/acme?done=policy*'), page.click('#policy-form button[type=submit]')]);
  await shot(page, 'tenant');

  // The audit chain, verified.
  await page.goto(base + '/console/tenants/acme/audit');
  await Promise.all([page.waitForSelector('#verify-result'), page.click('#verify')]);
  out.verify = (await page.textContent('#verify-result')).trim();
  await shot(page, 'audit');
  await page.selectOption('#type', 'key.revoke');
  await Promise.all([page.waitForURL('**type=key.revoke**'), page.click('#audit-filter button:not(#verify)')]);
  out.filteredTypes = await page.$$eval('#audit tbody tr td:nth-child(3)', (tds) => [...new Set(tds.map((td) => td.textContent))]);

  await page.goto(base + '/console/tenants/acme/guard');
  await shot(page, 'guard');
  await page.goto(base + '/console/usage');
  out.allUsageText = await page.textContent('main');
  out.allUsageCharts = await page.$$eval('main svg rect.bar', (bars) => bars.length);
  await shot(page, 'usage-all');
  await page.goto(base + '/console/tenants');
  await shot(page, 'tenants');

  // A change without the anti-forgery token, with the session's cookie.
  const forged = await op.context.request.post(base + '/console/tenants', { form: { id: 'forged' }, maxRedirects: 0 });
  out.forgedStatus = forged.status();
  await page.goto(base + '/console/tenants');
  out.forgedListed = (await page.$$eval('tbody td:first-child', (tds) => tds.map((td) => td.textContent.trim()))).includes('forged');
  await op.context.close();

  // The tenant, with its key: its own pages, nothing else.
  const tn = await newPage();
  page = tn.page;
  await signIn(page, keys[0]);
  out.revokedSignIn = (await page.textContent('#error')) || '';
  await signIn(page, keys[1]);
  out.tenantHome = new URL(page.url()).pathname;
  await shot(page, 'tenant-view');
  await page.goto(base + '/console/tenants/acme/usage');
  out.tenantUsage = (await page.textContent('main h1')).trim();
  out.tenantUsageText = await page.textContent('main');
  out.tenantUsageCharts = await page.$$eval('main svg rect.bar', (bars) => bars.length);
  await shot(page, 'usage');
  await page.goto(base + '/console/tenants/acme/audit');
  out.tenantAuditTypes = await page.$$eval('#audit tbody tr td:nth-child(3)', (tds) => [...new Set(tds.map((td) => td.textContent))]);
  await shot(page, 'tenant-audit');
  out.otherTenant = {};
  for (const path of ['/console/tenants/globex', '/console/tenants/globex/audit', '/console/tenants/globex/usage', '/console/tenants', '/console/usage']) {
    const resp = await page.goto(base + path);
    out.otherTenant[path] = resp.status();
  }
  await shot(page, 'tenant-404');
  await tn.context.close();
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
