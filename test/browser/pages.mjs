// Opens each page in PAGES (a JSON list of URLs) in headless Chromium, waits
// for the page to say it is done, and prints one JSON line: for each page,
// what it showed as #answer and #error. The pages themselves fetch a token
// and call bulkhead; this script only drives the browser.
import { chromium } from 'playwright-core';

const pages = JSON.parse(process.env.PAGES || '[]');
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
const out = [];
try {
  for (const url of pages) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const console_ = [];
    page.on('console', (m) => console_.push(m.text()));
    await page.goto(url);
    await page.waitForFunction(() => document.getElementById('status').textContent === 'done', null, { timeout: 30000 });
    out.push({
      url,
      answer: await page.textContent('#answer'),
      error: await page.textContent('#error'),
      console: console_,
    });
    await context.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
