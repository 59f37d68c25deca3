//! `Status` objects: the error bodies (and watch ERROR events) the API server returns.
use serde_json::{Value, json};

use super::resources::ResourceType;

/// A failed request, rendered as a Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    details: Option<(String, String)>,
    /// The fields at fault in an Invalid object: (field path, what is wrong with it).
    causes: Vec<(String, String)>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> Self {
        Self {
            code,
            reason,
            message,
            details: None,
            causes: Vec::new(),
        }
    }

    fn about(mut self, rt: &ResourceType, name: &str) -> Self {
        self.details = Some((rt.plural.to_string(), name.to_string()));
        self
    }

    fn what(rt: &ResourceType) -> String {
        if rt.group.is_empty() {
            rt.plural.to_string()
        } else {
            format!("{}.{}", rt.plural, rt.group)
        }
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", Self::what(rt)),
        )
        .about(rt, name)
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", Self::what(rt)),
        )
        .about(rt, name)
    }

    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        let msg = format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again",
            Self::what(rt)
        );
        Self::new(409, "Conflict", msg).about(rt, name)
    }

    /// `detail`: `<field path>: <what is wrong>`, as the real server words a cause (kubectl
    /// prints the causes, not the message).
    pub fn invalid(rt: &ResourceType, name: &str, detail: &str) -> Self {
        let msg = format!("{} \"{name}\" is invalid: {detail}", rt.kind);
        let (field, why) = detail.split_once(": ").unwrap_or(("", detail));
        Self {
            causes: vec![(field.to_owned(), why.to_owned())],
            ..Self::new(422, "Invalid", msg).about(rt, name)
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into())
    }

    pub fn path_not_found(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method ({method}) here"),
        )
    }

    pub fn unsupported_media_type(ct: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {ct}"),
        )
    }

    /// No credentials the server accepts (an unknown token).
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized".into())
    }

    /// Authenticated, but RBAC allows it nothing of the kind.
    pub fn forbidden(message: String, about: Option<(String, String)>) -> Self {
        Self {
            details: about,
            ..Self::new(403, "Forbidden", message)
        }
    }

    /// A watch from a resourceVersion older than the retained history.
    pub fn gone(rv: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {rv} ({oldest})"),
        )
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some((kind, name)) = &self.details {
            status["details"] = json!({"name": name, "kind": kind});
        }
        let causes: Vec<Value> = self
            .causes
            .iter()
            .map(|(field, why)| {
                let reason = match why.starts_with("Required value") {
                    true => "FieldValueRequired",
                    false => "FieldValueInvalid",
                };
                json!({"reason": reason, "message": why, "field": field})
            })
            .collect();
        if !causes.is_empty() {
            status["details"]["causes"] = json!(causes);
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}
