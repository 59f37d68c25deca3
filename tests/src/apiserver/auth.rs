//! Authentication and authorization. A request with `Authorization: Bearer <token>` is
//! authenticated as the ServiceAccount the token was minted for ([`super::ApiServer::token_for`];
//! 401 if the token is unknown or its ServiceAccount is gone) and then authorized by [`rbac`]
//! against the RBAC objects stored (403 with a `Status` body when denied). A request without
//! credentials keeps full access, so the harness and the tests written before RBAC run as they
//! did: only clients given a token are confined.
use axum::http::{HeaderMap, Method, header};

use super::{
    rbac::{Attributes, Policy, User},
    request::Query,
    resources::{RESOURCES, Target, by_kind},
    selector::Selector,
    status::ApiError,
    store::{Filter, Key, Store},
};

/// The token in an `Authorization: Bearer` header; `None` without one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The user of a known token, if its ServiceAccount `(namespace, name)` still exists.
pub fn service_account_user(store: &Store, account: &(String, String)) -> Result<User, ApiError> {
    let (namespace, name) = account;
    let exists = by_kind("v1", "ServiceAccount").is_some_and(|res| {
        let key = Key {
            res,
            ns: namespace.clone(),
            name: name.clone(),
        };
        store.get(&key).is_some()
    });
    if exists {
        Ok(User::service_account(namespace, name))
    } else {
        Err(ApiError::unauthorized())
    }
}

/// The RBAC objects in `store`.
pub fn policy(store: &Store) -> Policy {
    let all = |kind: &str| {
        by_kind("rbac.authorization.k8s.io/v1", kind)
            .map(|res| {
                let filter = Filter {
                    res,
                    ns: None,
                    labels: Selector::default(),
                    fields: Selector::default(),
                };
                store.list(&filter, None, None).0
            })
            .unwrap_or_default()
    };
    Policy {
        roles: all("Role"),
        cluster_roles: all("ClusterRole"),
        role_bindings: all("RoleBinding"),
        cluster_role_bindings: all("ClusterRoleBinding"),
    }
}

/// What a request asks to do, as the real API server's `RequestInfo` reads it.
pub fn attributes(
    method: &Method,
    path: &str,
    target: Option<&Target>,
    query: &Query,
) -> Attributes {
    let Some(Target::Resource(route)) = target else {
        return Attributes::NonResource {
            verb: method.as_str().to_ascii_lowercase(),
            path: path.to_owned(),
        };
    };
    let rt = &RESOURCES[route.res];
    let watching =
        route.watch_path || matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let mut name = route.name.clone();
    let verb = match (method, &name) {
        (&Method::GET, Some(_)) => "get",
        (&Method::GET, None) if watching => "watch",
        (&Method::GET, None) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, Some(_)) => "delete",
        (&Method::DELETE, None) => "deletecollection",
        (other, _) => {
            return Attributes::NonResource {
                verb: other.as_str().to_ascii_lowercase(),
                path: path.to_owned(),
            };
        }
    };
    // A list or watch of one object by name is authorized as that object.
    if matches!(verb, "list" | "watch") {
        name = query
            .get("fieldSelector")
            .and_then(|s| Selector::fields(s).ok())
            .and_then(|s| s.exact("metadata.name").map(str::to_owned));
    }
    // A Namespace is its own namespace.
    let namespace = match (rt.kind, &name) {
        ("Namespace", Some(n)) => Some(n.clone()),
        _ => route.namespace.clone(),
    };
    Attributes::Resource {
        verb: verb.to_owned(),
        group: rt.group.to_owned(),
        resource: rt.plural.to_owned(),
        subresource: route.subresource.clone(),
        namespace,
        name,
    }
}
