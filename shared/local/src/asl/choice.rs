//! Choice rules: `Variable` with one comparison operator, or `And`/`Or`/`Not`.
//!
//! As in Step Functions, a comparison of values of the wrong type is false (not an error),
//! while a `Variable` (or a `…Path` operand) that matches nothing is a `States.Runtime`
//! error, except for `IsPresent`.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::ExecutionFailure;
use super::clock::parse_timestamp;
use super::path::{ContextObject, Path};

/// A top-level rule: a condition and the state to go to when it holds.
#[derive(Debug, Clone)]
pub(crate) struct ChoiceRule {
    /// Where to go.
    pub next: String,
    /// When to go there.
    pub condition: Condition,
}

/// A boolean condition over the state's effective input.
#[derive(Debug, Clone)]
pub(crate) enum Condition {
    /// All hold.
    And(Vec<Condition>),
    /// At least one holds.
    Or(Vec<Condition>),
    /// Does not hold.
    Not(Box<Condition>),
    /// `Variable` compared with a literal or with the value at a path.
    Compare {
        variable: Path,
        operator: Operator,
        operand: Operand,
    },
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Literal(Value),
    Path(Path),
}

/// What a comparison tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operator {
    String(Ordering, bool),
    StringMatches,
    Numeric(Ordering, bool),
    BooleanEquals,
    Timestamp(Ordering, bool),
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

/// What kind of literal an operator takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LiteralKind {
    String,
    Number,
    Boolean,
    Timestamp,
}

/// The comparison operators, their literal kind, and whether a `…Path` form exists.
fn operator(name: &str) -> Option<(Operator, LiteralKind, bool)> {
    use LiteralKind as K;
    use Operator as O;
    use Ordering::{Equal, Greater, Less};
    let (base, is_path) = match name.strip_suffix("Path") {
        Some(base) if !base.starts_with("Is") => (base, true),
        _ => (name, false),
    };
    let found = match base {
        "StringEquals" => (O::String(Equal, false), K::String),
        "StringLessThan" => (O::String(Less, false), K::String),
        "StringGreaterThan" => (O::String(Greater, false), K::String),
        "StringLessThanEquals" => (O::String(Less, true), K::String),
        "StringGreaterThanEquals" => (O::String(Greater, true), K::String),
        "StringMatches" if !is_path => (O::StringMatches, K::String),
        "NumericEquals" => (O::Numeric(Equal, false), K::Number),
        "NumericLessThan" => (O::Numeric(Less, false), K::Number),
        "NumericGreaterThan" => (O::Numeric(Greater, false), K::Number),
        "NumericLessThanEquals" => (O::Numeric(Less, true), K::Number),
        "NumericGreaterThanEquals" => (O::Numeric(Greater, true), K::Number),
        "BooleanEquals" => (O::BooleanEquals, K::Boolean),
        "TimestampEquals" => (O::Timestamp(Equal, false), K::Timestamp),
        "TimestampLessThan" => (O::Timestamp(Less, false), K::Timestamp),
        "TimestampGreaterThan" => (O::Timestamp(Greater, false), K::Timestamp),
        "TimestampLessThanEquals" => (O::Timestamp(Less, true), K::Timestamp),
        "TimestampGreaterThanEquals" => (O::Timestamp(Greater, true), K::Timestamp),
        "IsNull" if !is_path => (O::IsNull, K::Boolean),
        "IsPresent" if !is_path => (O::IsPresent, K::Boolean),
        "IsNumeric" if !is_path => (O::IsNumeric, K::Boolean),
        "IsString" if !is_path => (O::IsString, K::Boolean),
        "IsBoolean" if !is_path => (O::IsBoolean, K::Boolean),
        "IsTimestamp" if !is_path => (O::IsTimestamp, K::Boolean),
        _ => return None,
    };
    Some((found.0, found.1, is_path))
}

/// Why a rule could not be parsed: the field (relative to `Choices`) and the problem;
/// `problem == None` means the field is not supported.
pub(crate) type RuleError = (String, Option<String>);

/// Parses one rule object. `field` names it in errors (`Choices[0]`, `Choices[0].And[1]`);
/// top-level rules must have `Next`, nested ones must not.
pub(crate) fn parse_rule(
    value: &Value,
    field: &str,
    top_level: bool,
) -> Result<(Option<String>, Condition), RuleError> {
    let invalid = |sub: &str, problem: String| (join(field, sub), Some(problem));
    let Value::Object(map) = value else {
        return Err((field.to_owned(), Some("must be a JSON object".to_owned())));
    };
    let next = match map.get("Next") {
        None if top_level => {
            return Err(invalid(
                "Next",
                "is required in a top-level rule".to_owned(),
            ));
        }
        None => None,
        Some(_) if !top_level => {
            return Err(invalid(
                "Next",
                "is only allowed in a top-level rule".to_owned(),
            ));
        }
        Some(Value::String(next)) => Some(next.clone()),
        Some(_) => return Err(invalid("Next", "must be a string".to_owned())),
    };
    if let Some(comment) = map.get("Comment")
        && !comment.is_string()
    {
        return Err(invalid("Comment", "must be a string".to_owned()));
    }
    let mut condition: Option<Condition> = None;
    let mut set = |c: Condition, key: &str| {
        if condition.is_some() {
            return Err(invalid(
                key,
                "is a second condition in the same rule (use And/Or)".to_owned(),
            ));
        }
        condition = Some(c);
        Ok(())
    };
    let variable = match map.get("Variable") {
        None => None,
        Some(Value::String(text)) => {
            Some(Path::parse(text).map_err(|problem| invalid("Variable", problem))?)
        }
        Some(_) => return Err(invalid("Variable", "must be a string".to_owned())),
    };
    for (key, member) in map {
        match key.as_str() {
            "Next" | "Comment" | "Variable" => {}
            "And" | "Or" => {
                let Value::Array(items) = member else {
                    return Err(invalid(key, "must be an array of rules".to_owned()));
                };
                if items.is_empty() {
                    return Err(invalid(key, "must not be empty".to_owned()));
                }
                let mut rules = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    rules.push(parse_rule(item, &join(field, &format!("{key}[{i}]")), false)?.1);
                }
                set(
                    if key == "And" {
                        Condition::And(rules)
                    } else {
                        Condition::Or(rules)
                    },
                    key,
                )?;
            }
            "Not" => {
                let inner = parse_rule(member, &join(field, "Not"), false)?.1;
                set(Condition::Not(Box::new(inner)), key)?;
            }
            name => {
                let Some((operator, kind, is_path)) = operator(name) else {
                    return Err((join(field, name), None));
                };
                let Some(variable) = variable.clone() else {
                    return Err(invalid("Variable", format!("is required with {name}")));
                };
                let operand = if is_path {
                    let Value::String(text) = member else {
                        return Err(invalid(name, "must be a path string".to_owned()));
                    };
                    Operand::Path(Path::parse(text).map_err(|problem| invalid(name, problem))?)
                } else {
                    check_literal(member, kind).map_err(|problem| invalid(name, problem))?;
                    Operand::Literal(member.clone())
                };
                set(
                    Condition::Compare {
                        variable,
                        operator,
                        operand,
                    },
                    name,
                )?;
            }
        }
    }
    match condition {
        Some(condition) => {
            if variable.is_some() && !matches!(condition, Condition::Compare { .. }) {
                return Err(invalid(
                    "Variable",
                    "cannot be combined with And/Or/Not".to_owned(),
                ));
            }
            Ok((next, condition))
        }
        None => Err((
            field.to_owned(),
            Some("has no condition (a comparison operator, And, Or or Not)".to_owned()),
        )),
    }
}

fn join(field: &str, sub: &str) -> String {
    format!("{field}.{sub}")
}

fn check_literal(value: &Value, kind: LiteralKind) -> Result<(), String> {
    let ok = match kind {
        LiteralKind::String => value.is_string(),
        LiteralKind::Number => value.is_number(),
        LiteralKind::Boolean => value.is_boolean(),
        LiteralKind::Timestamp => value.as_str().and_then(parse_timestamp).is_some(),
    };
    if ok {
        Ok(())
    } else {
        Err(match kind {
            LiteralKind::String => "must be a string",
            LiteralKind::Number => "must be a number",
            LiteralKind::Boolean => "must be true or false",
            LiteralKind::Timestamp => "must be an RFC 3339 timestamp (e.g. 2024-05-01T12:00:00Z)",
        }
        .to_owned())
    }
}

impl Condition {
    /// Whether the condition holds for `input`.
    pub(crate) fn holds(
        &self,
        input: &Value,
        context: &ContextObject<'_>,
    ) -> Result<bool, ExecutionFailure> {
        match self {
            Self::And(rules) => {
                for rule in rules {
                    if !rule.holds(input, context)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Self::Or(rules) => {
                for rule in rules {
                    if rule.holds(input, context)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Self::Not(rule) => Ok(!rule.holds(input, context)?),
            Self::Compare {
                variable,
                operator,
                operand,
            } => {
                let value = variable.lookup(input, context);
                let expected = match operand {
                    Operand::Literal(v) => v.clone(),
                    Operand::Path(path) => path.lookup(input, context).ok_or_else(|| {
                        ExecutionFailure::runtime(format!(
                            "the choice rule's comparison path \"{path}\" matches nothing"
                        ))
                    })?,
                };
                if *operator == Operator::IsPresent {
                    return Ok(Some(value.is_some()) == expected.as_bool());
                }
                let Some(value) = value else {
                    return Err(ExecutionFailure::runtime(format!(
                        "the choice rule's Variable \"{variable}\" matches nothing"
                    )));
                };
                Ok(compare(*operator, &value, &expected))
            }
        }
    }
}

fn compare(operator: Operator, value: &Value, expected: &Value) -> bool {
    let ordered = |found: Option<Ordering>, wanted: Ordering, or_equal: bool| match found {
        Some(o) => o == wanted || (or_equal && o == Ordering::Equal),
        None => false,
    };
    match operator {
        Operator::String(wanted, or_equal) => match (value, expected) {
            (Value::String(a), Value::String(b)) => ordered(Some(a.cmp(b)), wanted, or_equal),
            _ => false,
        },
        Operator::StringMatches => match (value, expected) {
            (Value::String(a), Value::String(pattern)) => matches_pattern(a, pattern),
            _ => false,
        },
        Operator::Numeric(wanted, or_equal) => match (value, expected) {
            (Value::Number(a), Value::Number(b)) => {
                ordered(compare_numbers(a, b), wanted, or_equal)
            }
            _ => false,
        },
        Operator::BooleanEquals => match (value, expected) {
            (Value::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        },
        Operator::Timestamp(wanted, or_equal) => {
            let a = value.as_str().and_then(parse_timestamp);
            let b = expected.as_str().and_then(parse_timestamp);
            match (a, b) {
                (Some(a), Some(b)) => ordered(Some(a.cmp(&b)), wanted, or_equal),
                _ => false,
            }
        }
        Operator::IsNull => Some(value.is_null()) == expected.as_bool(),
        Operator::IsNumeric => Some(value.is_number()) == expected.as_bool(),
        Operator::IsString => Some(value.is_string()) == expected.as_bool(),
        Operator::IsBoolean => Some(value.is_boolean()) == expected.as_bool(),
        Operator::IsTimestamp => {
            Some(value.as_str().and_then(parse_timestamp).is_some()) == expected.as_bool()
        }
        // Handled before the variable is required.
        Operator::IsPresent => true,
    }
}

/// Compares JSON numbers exactly when both are integers.
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// `StringMatches`: `*` matches any run of characters; `\*` is a literal `*` and `\\` a
/// literal `\`.
fn matches_pattern(text: &str, pattern: &str) -> bool {
    #[derive(PartialEq)]
    enum Token {
        Star,
        Char(char),
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '\\' => match chars.next() {
                Some(escaped) => Token::Char(escaped),
                None => Token::Char('\\'),
            },
            '*' => Token::Star,
            other => Token::Char(other),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // Greedy matching with backtracking to the last star.
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Star) => {
                star = Some((p, t));
                p += 1;
            }
            Some(Token::Char(c)) if text.get(t) == Some(c) => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    tokens
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|tok| *tok == Token::Star)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(rule: Value, input: Value) -> Result<bool, ExecutionFailure> {
        let (_, condition) = parse_rule(&rule, "Choices[0]", false).unwrap();
        let ctx = ContextObject {
            execution_input: &input,
            rest: json!({}),
        };
        condition.holds(&input, &ctx)
    }

    #[test]
    fn string_number_boolean_and_timestamp_operators() {
        let input = json!({"s": "canary", "n": 5, "b": true, "t": "2024-05-01T12:00:00Z", "other": "canary", "max": 10});
        let yes = |rule: Value| assert!(holds(rule.clone(), input.clone()).unwrap(), "{rule}");
        let no = |rule: Value| assert!(!holds(rule.clone(), input.clone()).unwrap(), "{rule}");
        yes(json!({"Variable": "$.s", "StringEquals": "canary"}));
        yes(json!({"Variable": "$.s", "StringEqualsPath": "$.other"}));
        yes(json!({"Variable": "$.s", "StringMatches": "can*y"}));
        yes(json!({"Variable": "$.s", "StringMatches": "*"}));
        no(json!({"Variable": "$.s", "StringMatches": "can\\*"}));
        yes(json!({"Variable": "$.s", "StringLessThan": "dog"}));
        no(json!({"Variable": "$.n", "StringEquals": "5"}));
        yes(json!({"Variable": "$.n", "NumericEquals": 5.0}));
        yes(json!({"Variable": "$.n", "NumericLessThanPath": "$.max"}));
        yes(json!({"Variable": "$.n", "NumericGreaterThanEquals": 5}));
        no(json!({"Variable": "$.n", "NumericGreaterThan": 5}));
        yes(json!({"Variable": "$.n", "NumericLessThanEquals": 5}));
        yes(json!({"Variable": "$.b", "BooleanEquals": true}));
        no(json!({"Variable": "$.s", "BooleanEquals": true}));
        yes(json!({"Variable": "$.t", "TimestampGreaterThan": "2024-05-01T11:59:59Z"}));
        yes(json!({"Variable": "$.t", "TimestampEquals": "2024-05-01T14:00:00+02:00"}));
        no(json!({"Variable": "$.t", "TimestampLessThan": "2024-05-01T12:00:00Z"}));
        yes(json!({"Variable": "$.t", "IsTimestamp": true}));
        yes(json!({"Variable": "$.s", "IsString": true}));
        yes(json!({"Variable": "$.n", "IsNumeric": true}));
        yes(json!({"Variable": "$.b", "IsBoolean": true}));
        no(json!({"Variable": "$.b", "IsNull": true}));
        yes(json!({"Variable": "$.missing", "IsPresent": false}));
    }

    #[test]
    fn and_or_not_combine() {
        let input = json!({"n": 5, "s": "x"});
        let rule = json!({"And": [
            {"Variable": "$.n", "NumericGreaterThan": 1},
            {"Or": [{"Variable": "$.s", "StringEquals": "y"}, {"Not": {"Variable": "$.s", "StringEquals": "z"}}]}
        ]});
        assert!(holds(rule, input.clone()).unwrap());
        let rule = json!({"Not": {"Variable": "$.n", "NumericEquals": 5}});
        assert!(!holds(rule, input).unwrap());
    }

    #[test]
    fn a_missing_variable_is_a_runtime_error() {
        let err = holds(
            json!({"Variable": "$.nope", "StringEquals": "x"}),
            json!({}),
        )
        .unwrap_err();
        assert_eq!(err.error, super::super::errors::RUNTIME);
    }

    #[test]
    fn bad_rules_are_refused() {
        let refuse = |rule: Value, field: &str| {
            let (f, _) = parse_rule(&rule, "Choices[0]", true).unwrap_err();
            assert_eq!(f, field, "{rule}");
        };
        refuse(
            json!({"Variable": "$.x", "StringSoundsLike": "a", "Next": "A"}),
            "Choices[0].StringSoundsLike",
        );
        refuse(
            json!({"Variable": "$.x", "NumericEquals": "1", "Next": "A"}),
            "Choices[0].NumericEquals",
        );
        refuse(
            json!({"Variable": "$.x", "StringEquals": "1"}),
            "Choices[0].Next",
        );
        refuse(
            json!({"Variable": "$.x", "IsNullPath": "$.y", "Next": "A"}),
            "Choices[0].IsNullPath",
        );
        refuse(
            json!({"Variable": "$.x", "StringEquals": "a", "StringMatches": "a", "Next": "A"}),
            "Choices[0].StringMatches",
        );
        refuse(json!({"Next": "A"}), "Choices[0]");
        refuse(
            json!({"And": [{"Variable": "$.x", "IsNull": true, "Next": "B"}], "Next": "A"}),
            "Choices[0].And[0].Next",
        );
        let (_, problem) = parse_rule(
            &json!({"Variable": "$.x", "Foo": 1, "Next": "A"}),
            "Choices[0]",
            true,
        )
        .unwrap_err();
        assert!(
            problem.is_none(),
            "an unknown operator is reported as not supported"
        );
    }
}
