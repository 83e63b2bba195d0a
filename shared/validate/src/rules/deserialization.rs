//! `unsafe_deserialization`: pickle/marshal/dill/jsonpickle loads, `yaml.load` without a safe
//! loader, node-serialize; deep merges of request data (prototype pollution).

use selfbuild_core::change::RiskLevel;

use super::{Ctx, Out, norm};
use crate::facts::{Call, Val};
use crate::finding::Rule;
use crate::language::Language;

const PY_LOADS: [&str; 14] = [
    "pickle.loads",
    "pickle.load",
    "pickle.Unpickler",
    "cPickle.loads",
    "cPickle.load",
    "_pickle.loads",
    "marshal.loads",
    "marshal.load",
    "dill.loads",
    "dill.load",
    "jsonpickle.decode",
    "pandas.read_pickle",
    "joblib.load",
    "shelve.open",
];

const SAFE_LOADERS: [&str; 3] = ["SafeLoader", "CSafeLoader", "BaseLoader"];

const JS_DEEP_MERGES: [&str; 14] = [
    "lodash.merge",
    "lodash.mergeWith",
    "lodash.defaultsDeep",
    "lodash.set",
    "lodash.setWith",
    "lodash.zipObjectDeep",
    "lodash/merge",
    "lodash/mergeWith",
    "lodash/defaultsDeep",
    "lodash/set",
    "lodash.merge.default",
    "deepmerge",
    "deep-extend",
    "merge-deep",
];

/// Whether a value holds request data: the Lambda event, an HTTP request body, or a parse of
/// one.
pub(super) fn from_request(v: &Val) -> bool {
    v.all().iter().any(|x| match x {
        Val::Ref(p) => {
            p == "event"
                || p.starts_with("event.")
                || p.starts_with("req.body")
                || p.starts_with("req.query")
                || p.starts_with("request.body")
                || p.starts_with("ctx.request.body")
        }
        _ => false,
    })
}

pub(super) fn check(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    for call in &ctx.facts.calls {
        let message = match ctx.language {
            Language::Python => python(call),
            l if l.is_js_family() => js(call),
            _ => None,
        };
        if let Some((risk, message)) = message {
            out.report(
                ctx.call_changed(call),
                Rule::UnsafeDeserialization,
                risk,
                call.loc,
                message,
            );
        }
    }
}

fn python(call: &Call) -> Option<(RiskLevel, String)> {
    let c = call.callee.as_str();
    if PY_LOADS.contains(&c) && call.args.first().is_some_and(|a| !a.is_constant()) {
        return Some((
            RiskLevel::Critical,
            format!("{c}() deserialises data that can run code; use JSON"),
        ));
    }
    if matches!(c, "yaml.unsafe_load" | "yaml.unsafe_load_all") {
        return Some((
            RiskLevel::Critical,
            format!("{c}() can construct arbitrary objects; use yaml.safe_load"),
        ));
    }
    if matches!(c, "yaml.load" | "yaml.load_all") {
        let loader = call.kwarg("Loader").or_else(|| call.args.get(1));
        let safe = match loader {
            Some(Val::Ref(p)) => SAFE_LOADERS
                .iter()
                .any(|s| p.rsplit('.').next() == Some(*s)),
            _ => false,
        };
        if !safe {
            return Some((
                RiskLevel::Critical,
                format!(
                    "{c}() without a safe Loader can construct arbitrary objects; use yaml.safe_load"
                ),
            ));
        }
    }
    if c == "numpy.load" && matches!(call.kwarg("allow_pickle"), Some(Val::Bool(true))) {
        return Some((
            RiskLevel::Critical,
            "numpy.load(allow_pickle=True) unpickles data".into(),
        ));
    }
    None
}

fn js(call: &Call) -> Option<(RiskLevel, String)> {
    let c = norm(&call.callee);
    if c.starts_with("node-serialize") && call.method == "unserialize" {
        return Some((
            RiskLevel::Critical,
            "node-serialize unserialize() runs functions embedded in the data".into(),
        ));
    }
    let deep_merge = JS_DEEP_MERGES.contains(&c)
        || c == "$.extend" && matches!(call.args.first(), Some(Val::Bool(true)))
        || c == "jQuery.extend" && matches!(call.args.first(), Some(Val::Bool(true)));
    if deep_merge && call.args.iter().any(from_request) {
        return Some((
            RiskLevel::High,
            format!(
                "{c}() deep-merges request data: a __proto__ key pollutes every object's prototype"
            ),
        ));
    }
    None
}
