//! Label and field selectors, as far as list/watch clients use them.
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq(String),
    Ne(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    key: String,
    op: Op,
}

impl Term {
    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::Eq(want), Some(v)) => v == want,
            (Op::Eq(_), None) => false,
            (Op::Ne(want), v) => v != Some(want.as_str()),
            (Op::In(set), Some(v)) => set.iter().any(|s| s == v),
            (Op::In(_), None) => false,
            (Op::NotIn(set), v) => v.is_none_or(|v| !set.iter().any(|s| s == v)),
            (Op::Exists, v) => v.is_some(),
            (Op::NotExists, v) => v.is_none(),
        }
    }
}

/// A parsed `labelSelector` or `fieldSelector`; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    terms: Vec<Term>,
    fields: bool,
}

/// Splits at commas that are not inside `( )`.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_term(t: &str) -> Result<Term, String> {
    let term = |key: &str, op| Term {
        key: key.trim().to_string(),
        op,
    };
    if let Some(open) = t.find('(') {
        let close = t
            .rfind(')')
            .filter(|c| *c > open)
            .ok_or(format!("unbalanced parentheses in {t:?}"))?;
        let values: Vec<String> = t[open + 1..close]
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        return match t[..open].split_whitespace().collect::<Vec<_>>().as_slice() {
            [key, "in"] => Ok(term(key, Op::In(values))),
            [key, "notin"] => Ok(term(key, Op::NotIn(values))),
            _ => Err(format!("unsupported set-based requirement {t:?}")),
        };
    }
    if let Some(key) = t.strip_prefix('!') {
        return Ok(term(key, Op::NotExists));
    }
    if let Some((k, v)) = t.split_once("!=") {
        return Ok(term(k, Op::Ne(v.trim().to_string())));
    }
    if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
        return Ok(term(k, Op::Eq(v.trim().to_string())));
    }
    Ok(term(t, Op::Exists))
}

impl Selector {
    /// Parses a label selector (`a=b,c!=d,e in (f,g),!h,i`).
    pub fn labels(s: &str) -> Result<Self, String> {
        let terms = split_terms(s)
            .into_iter()
            .map(parse_term)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            terms,
            fields: false,
        })
    }

    /// Parses a field selector (`metadata.name=x,spec.nodeName!=y`); paths are dotted object paths.
    pub fn fields(s: &str) -> Result<Self, String> {
        let terms: Vec<Term> = split_terms(s)
            .into_iter()
            .map(parse_term)
            .collect::<Result<_, _>>()?;
        if let Some(t) = terms
            .iter()
            .find(|t| !matches!(t.op, Op::Eq(_) | Op::Ne(_)))
        {
            return Err(format!(
                "field selector {:?}: only =, == and != are supported",
                t.key
            ));
        }
        Ok(Self {
            terms,
            fields: true,
        })
    }

    /// The value `key` must equal, if a term requires exactly that (`key=value`).
    pub fn exact(&self, key: &str) -> Option<&str> {
        self.terms.iter().find_map(|t| match &t.op {
            Op::Eq(v) if t.key == key => Some(v.as_str()),
            _ => None,
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            if self.fields {
                t.matches(Some(&field_value(obj, &t.key)))
            } else {
                let labels = obj.pointer("/metadata/labels");
                t.matches(labels.and_then(|l| l.get(&t.key)).and_then(Value::as_str))
            }
        })
    }
}

/// A field's value as a selector compares it: strings as is, scalars printed, missing as "".
fn field_value(obj: &Value, path: &str) -> String {
    let found = path.split('.').try_fold(obj, |v, seg| v.get(seg));
    match found {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj() -> Value {
        json!({"metadata": {"name": "web-abc", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web", "tier": "front"}},
            "spec": {"nodeName": "n1"}})
    }

    #[test]
    fn label_selectors() {
        let cases = [
            ("", true),
            ("kubernetes.io/service-name=web", true),
            ("kubernetes.io/service-name==web", true),
            ("kubernetes.io/service-name=db", false),
            ("kubernetes.io/service-name!=db", true),
            ("tier in (front, back)", true),
            ("tier notin (front)", false),
            ("tier,kubernetes.io/service-name=web", true),
            ("missing", false),
            ("!missing", true),
            ("!tier", false),
            ("missing!=x", true),
            ("tier in (back),tier", false),
        ];
        for (sel, want) in cases {
            assert_eq!(
                Selector::labels(sel).unwrap().matches(&obj()),
                want,
                "selector {sel:?}"
            );
        }
    }

    #[test]
    fn field_selectors() {
        let cases = [
            ("metadata.name=web-abc", true),
            ("metadata.namespace!=default", false),
            ("spec.nodeName=n1,metadata.name=web-abc", true),
            ("spec.missing=", true),
        ];
        for (sel, want) in cases {
            assert_eq!(
                Selector::fields(sel).unwrap().matches(&obj()),
                want,
                "selector {sel:?}"
            );
        }
        assert!(Selector::fields("a in (b)").is_err());
        let s = Selector::fields("spec.nodeName!=n2,metadata.name==node1").unwrap();
        assert_eq!(s.exact("metadata.name"), Some("node1"));
        assert_eq!(s.exact("spec.nodeName"), None, "!= is not an exact match");
    }
}
