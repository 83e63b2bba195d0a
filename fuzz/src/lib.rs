//! What the fuzz targets share: checks that an error names a field of the input.
//!
//! The targets are in `fuzz_targets/`; each asserts properties of what it parses (round
//! trips, limits, errors that name the field), not only that nothing panics.

use serde_json::Value;

/// Whether a path from an error message (`detail.state.value`, `metrics[0].id`,
/// `change.config`) names something in `root`: the member itself, or its parent object when
/// the error is that the member is missing.
///
/// Keys may contain `.` or `[` themselves (they are the input's text), so every key of an
/// object that the rest of the path starts with is tried.
pub fn names_a_field(root: &Value, path: &str) -> bool {
    resolves(root, path, true)
}

fn resolves(at: &Value, rest: &str, may_be_missing: bool) -> bool {
    if rest.is_empty() {
        return true;
    }
    if let Some(items) = at.as_array() {
        // An index past the end names no member.
        let Some((index, after)) = rest
            .strip_prefix('[')
            .and_then(|inner| inner.split_once(']'))
        else {
            return false;
        };
        return match index.parse::<usize>().ok().and_then(|i| items.get(i)) {
            Some(item) => resolves(
                item,
                after.strip_prefix('.').unwrap_or(after),
                may_be_missing,
            ),
            None => false,
        };
    }
    let Some(object) = at.as_object() else {
        return false;
    };
    for (key, value) in object {
        if let Some(after) = rest.strip_prefix(key.as_str()) {
            let next = if let Some(after) = after.strip_prefix('.') {
                Some(after)
            } else if after.is_empty() || after.starts_with('[') {
                Some(after)
            } else {
                None
            };
            if let Some(next) = next
                && resolves(value, next, may_be_missing)
            {
                return true;
            }
        }
    }
    // The last segment may be the missing member itself.
    may_be_missing && !rest.contains(['.', '['])
}

/// The part of an error message before its first `": "`, the field it names.
pub fn field_of(message: &str) -> &str {
    message.split_once(": ").map_or(message, |(field, _)| field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_resolve_through_objects_and_arrays() {
        let v = json!({"detail": {"state": {"value": 1}, "m": [{"a.b": {"c": 2}}]}, "detail-type": "x"});
        assert!(names_a_field(&v, "detail.state.value"));
        assert!(names_a_field(&v, "detail-type"));
        assert!(names_a_field(&v, "detail.m[0].a.b.c"));
        assert!(names_a_field(&v, "detail.state.missing"));
        assert!(!names_a_field(&v, "detail.nothere.value"));
        assert!(!names_a_field(&v, "detail.m[3]"));
        // A key may look like an index or hold a dot.
        let v = json!({"w": {"[m": 1, "a.b": {"c": 2}}});
        assert!(names_a_field(&v, "w.[m"));
        assert!(names_a_field(&v, "w.a.b.c"));
        assert_eq!(field_of("time: is wrong: really"), "time");
    }
}
