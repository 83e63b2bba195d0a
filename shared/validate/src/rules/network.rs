//! `tls_verification`: certificate checks turned off. `egress_host`: an outbound call to a
//! host off `EGRESS_ALLOWED_HOSTS` (AWS endpoints always allowed) or to an IP literal.
//! `exfiltration`: the environment, credentials, or the whole event sent out (or logged).

use std::net::IpAddr;

use selfbuild_core::change::RiskLevel;

use super::{Ctx, Out, norm};
use crate::facts::{Call, Val};
use crate::finding::Rule;

const HTTP_ROOTS: [&str; 21] = [
    "requests",
    "httpx",
    "urllib",
    "urllib3",
    "aiohttp",
    "http",
    "https",
    "http.client",
    "axios",
    "got",
    "node-fetch",
    "undici",
    "superagent",
    "needle",
    "reqwest",
    "hyper",
    "ureq",
    "isahc",
    "socket",
    "net",
    "tls",
];
const HTTP_METHODS: [&str; 16] = [
    "get",
    "post",
    "put",
    "patch",
    "delete",
    "head",
    "request",
    "urlopen",
    "Request",
    "fetch",
    "connect",
    "create_connection",
    "HTTPSConnection",
    "HTTPConnection",
    "createConnection",
    "WebSocket",
];
const SEND_METHODS: [&str; 10] = [
    "publish",
    "send_message",
    "sendMessage",
    "put_object",
    "put_record",
    "put_events",
    "sendto",
    "sendall",
    "send",
    "write",
];
const CREDENTIAL_VARS: [&str; 4] = [
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECURITY_TOKEN",
];

fn root(callee: &str) -> &str {
    let c = norm(callee);
    c.split(['.', '(']).next().unwrap_or(c)
}

fn url_value(call: &Call) -> Option<&Val> {
    for k in ["url", "uri", "host", "hostname", "address"] {
        if let Some(v) = call.kwarg(k) {
            return Some(v);
        }
    }
    let first = call.args.first()?;
    if let Val::Map(_) = first {
        return ["url", "uri", "hostname", "host"]
            .iter()
            .find_map(|k| first.get(k));
    }
    Some(first)
}

/// The destination host of a URL or address value, when the source fixes it.
fn host_of(v: &Val) -> Option<String> {
    match v {
        Val::List(items) => items.first().and_then(Val::as_str).map(str::to_owned),
        Val::Str(s) => parse_host(s, true),
        Val::Built(fragments, _) => fragments.first().and_then(|f| parse_host(f, false)),
        _ => None,
    }
}

fn parse_host(text: &str, complete: bool) -> Option<String> {
    let text = text.trim();
    let (scheme, rest) = text.split_once("://")?;
    if !matches!(
        scheme.to_ascii_lowercase().as_str(),
        "http" | "https" | "ws" | "wss" | "ftp" | "tcp"
    ) {
        return None;
    }
    let end = rest.find(['/', '?', '#']);
    if end.is_none() && !complete {
        return None;
    }
    let authority = &rest[..end.unwrap_or(rest.len())];
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    (!host.is_empty() && !host.contains(['{', '$', '%', ' '])).then(|| host.to_ascii_lowercase())
}

fn is_sink(call: &Call) -> bool {
    let r = root(&call.callee);
    HTTP_ROOTS.contains(&r)
        || matches!(norm(&call.callee), "fetch" | "axios" | "got")
        || call.method_in(&HTTP_METHODS) && url_value(call).and_then(host_of).is_some()
}

fn is_log(call: &Call) -> bool {
    let c = call.callee.as_str();
    c == "print"
        || c.starts_with("console.")
        || c.starts_with("logging.")
        || c.starts_with("logger.")
        || c.starts_with("log.")
        || c.starts_with("LOGGER.")
}

/// What sensitive thing a value carries: the environment, credentials, the whole event.
fn sensitive(v: &Val) -> Option<&'static str> {
    for x in v.all() {
        match x {
            Val::Ref(p) => {
                if matches!(p.as_str(), "os.environ" | "process.env" | "os.environ[]") {
                    return Some("the whole environment");
                }
                if CREDENTIAL_VARS.iter().any(|c| p.ends_with(c)) || p.contains("get_credentials()")
                {
                    return Some("AWS credentials");
                }
            }
            Val::Call { callee, args } => {
                if [
                    "os.environ.copy",
                    "os.environ.items",
                    "os.environ.values",
                    "std.env.vars",
                    "std.env.vars_os",
                ]
                .iter()
                .any(|p| callee.starts_with(p))
                {
                    return Some("the whole environment");
                }
                if callee.ends_with("get_credentials") || callee.ends_with("get_frozen_credentials")
                {
                    return Some("AWS credentials");
                }
                if args
                    .iter()
                    .any(|a| a.as_str().is_some_and(|s| CREDENTIAL_VARS.contains(&s)))
                {
                    return Some("AWS credentials");
                }
            }
            _ => {}
        }
    }
    None
}

fn whole_event(v: &Val) -> bool {
    v.all()
        .iter()
        .any(|x| matches!(x, Val::Ref(p) if p == "event"))
}

pub(super) fn check(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    tls(ctx, out);
    for call in &ctx.facts.calls {
        let changed = ctx.call_changed(call);
        let sink = is_sink(call);
        let host = if sink {
            url_value(call).and_then(host_of)
        } else {
            None
        };
        let allowed = host.as_deref().is_none_or(|h| allowed_host(ctx, h));
        if sink || call.method_in(&SEND_METHODS) {
            let mut what = None;
            for v in call.all_args() {
                if let Some(s) = sensitive(v) {
                    what = Some(s);
                    break;
                }
                if !allowed && whole_event(v) {
                    what = Some("the whole event");
                    break;
                }
            }
            if let Some(what) = what {
                out.report(
                    changed,
                    Rule::Exfiltration,
                    RiskLevel::Critical,
                    call.loc,
                    format!("{}() sends {what} out", call.method),
                );
                continue;
            }
        }
        if is_log(call)
            && let Some(what) = call.all_args().find_map(sensitive)
        {
            out.report(
                changed,
                Rule::Exfiltration,
                RiskLevel::Critical,
                call.loc,
                format!("{}() writes {what} to the logs", call.callee),
            );
            continue;
        }
        if let Some(h) = host {
            if let Ok(ip) = h.parse::<IpAddr>() {
                if !ip.is_loopback() {
                    out.report(
                        changed,
                        Rule::EgressHost,
                        RiskLevel::High,
                        call.loc,
                        format!("{}() connects to the IP literal {h}; name the host and allow it in EGRESS_ALLOWED_HOSTS", call.method),
                    );
                }
            } else if !allowed {
                out.report(
                    changed,
                    Rule::EgressHost,
                    RiskLevel::High,
                    call.loc,
                    format!(
                        "{}() calls {h}, which is not in EGRESS_ALLOWED_HOSTS",
                        call.method
                    ),
                );
            }
        }
    }
}

fn allowed_host(ctx: &Ctx<'_, '_>, host: &str) -> bool {
    host == "localhost"
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        || ctx.settings.egress_allowed_hosts.matching(host).is_some()
}

fn tls(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    for call in &ctx.facts.calls {
        let c = call.callee.as_str();
        let message = if matches!(call.kwarg("verify"), Some(Val::Bool(false)))
            || matches!(call.kwarg("ssl"), Some(Val::Bool(false)))
        {
            Some(format!(
                "{}() turns certificate verification off",
                call.method
            ))
        } else if c == "ssl._create_unverified_context" {
            Some("ssl._create_unverified_context() skips certificate verification".to_owned())
        } else if call.method_in(&[
            "danger_accept_invalid_certs",
            "danger_accept_invalid_hostnames",
        ]) && matches!(call.args.first(), Some(Val::Bool(true)))
        {
            Some(format!(
                "{}(true) turns certificate verification off",
                call.method
            ))
        } else if call.method_in(&[
            "set_certificate_verifier",
            "with_custom_certificate_verifier",
        ]) {
            Some(format!(
                "{}() replaces certificate verification",
                call.method
            ))
        } else {
            None
        };
        if let Some(message) = message {
            out.report(
                ctx.call_changed(call),
                Rule::TlsVerification,
                RiskLevel::High,
                call.loc,
                message,
            );
        }
    }
    for named in &ctx.facts.named {
        if named.compared {
            continue;
        }
        let n = named.name.as_str();
        let off = match (&named.value, n.rsplit('.').next().unwrap_or(n)) {
            (Val::Bool(false), "rejectUnauthorized" | "check_hostname" | "verify") => true,
            (Val::Ref(p), "verify_mode") => p.ends_with("CERT_NONE"),
            (Val::Ref(p), "_create_default_https_context") => {
                p.ends_with("_create_unverified_context")
            }
            (v, "NODE_TLS_REJECT_UNAUTHORIZED") => {
                matches!(v.as_str(), Some("0")) || *v == Val::Num
            }
            (_, "checkServerIdentity") => true,
            _ => false,
        };
        if off {
            out.report(
                ctx.changed(named.loc),
                Rule::TlsVerification,
                RiskLevel::High,
                named.loc,
                format!("{n} turns certificate verification off"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_come_from_fixed_urls_only() {
        assert_eq!(
            parse_host("https://api.example.com/v1", true).as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            parse_host("http://user:pw@10.0.0.1:8080/x", true).as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            parse_host("https://[::1]:443/", true).as_deref(),
            Some("::1")
        );
        assert_eq!(parse_host("https://api.", false), None);
        assert_eq!(
            parse_host("https://api.example.com/", false).as_deref(),
            Some("api.example.com")
        );
        assert_eq!(parse_host("file:///etc/passwd", true), None);
        assert_eq!(parse_host("not a url", true), None);
    }
}
