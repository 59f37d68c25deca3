//! HTTP routing and the non-streaming verbs: list, get, create, replace, patch, delete.
use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    Audited, Shared, auth, discovery,
    meta::WriteMode,
    openapi,
    patch::{self, PatchKind},
    rbac::{Attributes, forbidden_message},
    request::{Query, to_metadata_only, wants_metadata_only},
    resources::{RESOURCES, Route, Target, parse_path},
    selector::Selector,
    status::ApiError,
    store::{Filter, Key, Store},
    validate::{self, FieldValidation},
    watch,
};

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

pub fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(err: &ApiError) -> Response {
    let code = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &err.to_status())
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let line = format!("{method} {uri}");
    shared.log_request(line.clone());
    let query: Query = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let target = parse_path(uri.path());
    // Without credentials: full access (the harness, and clients not under test for RBAC).
    let Some(token) = auth::bearer(&headers) else {
        shared.log_anonymous(line);
        return serve(&shared, &method, &uri, target, &query, &headers, &body);
    };
    let user = match shared.token_account(token) {
        Some(account) => shared.read(|s| auth::service_account_user(s, &account)),
        None => Err(ApiError::unauthorized()),
    };
    let user = match user {
        Ok(user) => user,
        Err(e) => {
            shared.log_audit(Audited {
                user: None,
                request: line,
                code: e.code,
            });
            return error_response(&e);
        }
    };
    let attrs = auth::attributes(&method, uri.path(), target.as_ref(), &query);
    let response = if shared.read(|s| auth::policy(s).allows(&user, &attrs)) {
        serve(&shared, &method, &uri, target, &query, &headers, &body)
    } else {
        let about = match &attrs {
            Attributes::Resource {
                resource,
                name: Some(name),
                ..
            } => Some((resource.clone(), name.clone())),
            _ => None,
        };
        error_response(&ApiError::forbidden(
            forbidden_message(&user, &attrs),
            about,
        ))
    };
    shared.log_audit(Audited {
        user: Some(user.name),
        request: line,
        code: response.status().as_u16(),
    });
    response
}

/// Answers a request that may be served.
fn serve(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    target: Option<Target>,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let result = match target {
        None => Err(ApiError::path_not_found(uri.path())),
        Some(Target::Version) if method == Method::GET => {
            Ok(json_response(StatusCode::OK, &discovery::version()))
        }
        Some(Target::Discovery(segs)) if method == Method::GET => {
            let served: Vec<bool> =
                shared.read(|s| (0..RESOURCES.len()).map(|r| s.serves(r)).collect());
            discovery::document(&segs, &served)
                .map(|doc| json_response(StatusCode::OK, &doc))
                .ok_or_else(|| ApiError::path_not_found(uri.path()))
        }
        Some(Target::OpenApi(segs)) if method == Method::GET => {
            let served: Vec<bool> =
                shared.read(|s| (0..RESOURCES.len()).map(|r| s.serves(r)).collect());
            openapi::serve(&segs, &served)
                .map(|doc| json_response(StatusCode::OK, &doc))
                .ok_or_else(|| ApiError::path_not_found(uri.path()))
        }
        Some(Target::OpenApiV2) if method == Method::GET => Ok((
            [(header::CONTENT_TYPE, openapi::V2_CONTENT_TYPE)],
            Bytes::new(),
        )
            .into_response()),
        Some(Target::Version | Target::Discovery(_) | Target::OpenApi(_) | Target::OpenApiV2) => {
            Err(ApiError::method_not_allowed(method.as_str()))
        }
        Some(Target::Resource(route)) if !shared.read(|s| s.serves(route.res)) => {
            Err(ApiError::path_not_found(uri.path()))
        }
        Some(Target::Resource(route)) => resource(shared, method, &route, query, headers, body),
    };
    result.unwrap_or_else(|e| error_response(&e))
}

/// Whether the client asked for `PartialObjectMetadata` (metadata-only lists and watches).
fn body_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("decoding the request body: {e}")))
}

fn resource(
    shared: &Arc<Shared>,
    method: &Method,
    route: &Route,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let rt = &RESOURCES[route.res];
    let ns = route.namespace.clone().unwrap_or_default();
    let key = route.name.as_ref().map(|name| Key {
        res: route.res,
        ns: ns.clone(),
        name: name.clone(),
    });
    let status_mode = match route.subresource.as_deref() {
        None => WriteMode::Main,
        Some("status") if rt.has_status => WriteMode::Status,
        Some(sub) => return Err(ApiError::path_not_found(&format!("{}/{sub}", rt.plural))),
    };
    let watching =
        route.watch_path || matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    // A dry run is validated and answered as if it were applied, and stores nothing.
    let dry_run = match query.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: {other:?}: supported values: \"All\""
            )));
        }
    };
    let fields = FieldValidation::from_query(query.get("fieldValidation").map(String::as_str))?;
    let ok = |v: &Value| Ok(json_response(StatusCode::OK, v));
    match (method, key) {
        (&Method::GET, None) => {
            let filter = Filter {
                res: route.res,
                ns: route.namespace.clone(),
                labels: selector(query, "labelSelector", Selector::labels)?,
                fields: selector(query, "fieldSelector", Selector::fields)?,
            };
            if watching {
                watch::serve(shared, filter, query, wants_metadata_only(headers))
            } else {
                ok(&list(shared, &filter, query, wants_metadata_only(headers))?)
            }
        }
        (&Method::GET, Some(key)) => match shared.read(|s| s.get(&key).cloned()) {
            Some(obj) => ok(&obj),
            None => Err(ApiError::not_found(rt, &key.name)),
        },
        (&Method::POST, None)
            if route.subresource.is_none() && (route.namespace.is_some() || !rt.namespaced) =>
        {
            let obj = body_json(body)?;
            validate::check(rt, &obj, fields)?;
            let created = match dry_run {
                true => shared.read(|s| s.create_dry_run(route.res, &ns, obj))?,
                false => shared.write(|s| s.create(route.res, &ns, obj))?,
            };
            Ok(json_response(StatusCode::CREATED, &created))
        }
        (&Method::PUT, Some(key)) => {
            let obj = body_json(body)?;
            if status_mode == WriteMode::Main {
                validate::check(rt, &obj, fields)?;
            }
            ok(&match dry_run {
                true => shared.read(|s| s.update_dry_run(&key, obj, status_mode, true))?,
                false => shared.write(|s| s.update(&key, obj, status_mode, true))?,
            })
        }
        (&Method::PATCH, Some(key)) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let kind = PatchKind::from_content_type(ct)
                .ok_or_else(|| ApiError::unsupported_media_type(ct))?;
            let patch = patch::parse_body(kind, body).map_err(ApiError::bad_request)?;
            let patched = |s: &Store| -> Result<Patched, ApiError> {
                let (obj, existed) = match s.get(&key).cloned() {
                    Some(mut current) => {
                        patch::apply(kind, &mut current, &patch).map_err(ApiError::bad_request)?;
                        (current, true)
                    }
                    // Server-side apply creates what is missing.
                    None if kind == PatchKind::Apply && status_mode == WriteMode::Main => {
                        let mut obj = patch.clone();
                        obj["metadata"]["name"] = json!(key.name);
                        (obj, false)
                    }
                    None => return Err(ApiError::not_found(rt, &key.name)),
                };
                if status_mode == WriteMode::Main {
                    validate::check(rt, &obj, fields)?;
                }
                Ok(Patched { obj, existed })
            };
            let (code, obj) = match dry_run {
                true => shared.read(|s| match patched(s)? {
                    Patched { obj, existed: true } => Ok::<_, ApiError>((
                        StatusCode::OK,
                        s.update_dry_run(&key, obj, status_mode, true)?,
                    )),
                    Patched { obj, .. } => Ok((
                        StatusCode::CREATED,
                        s.create_dry_run(key.res, &key.ns, obj)?,
                    )),
                })?,
                false => shared.write(|s| match patched(s)? {
                    Patched { obj, existed: true } => {
                        Ok::<_, ApiError>((StatusCode::OK, s.update(&key, obj, status_mode, true)?))
                    }
                    Patched { obj, .. } => {
                        Ok((StatusCode::CREATED, s.create(key.res, &key.ns, obj)?))
                    }
                })?,
            };
            Ok(json_response(code, &obj))
        }
        (&Method::DELETE, Some(key)) if route.subresource.is_none() => ok(&match dry_run {
            true => shared
                .read(|s| s.get(&key).cloned())
                .ok_or_else(|| ApiError::not_found(rt, &key.name))?,
            false => shared.write(|s| s.delete(&key))?,
        }),
        _ => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

/// A PATCH's result: the object to store, and whether it replaces one (else it is created).
struct Patched {
    obj: Value,
    existed: bool,
}

fn selector(
    query: &Query,
    param: &str,
    parse: fn(&str) -> Result<Selector, String>,
) -> Result<Selector, ApiError> {
    query
        .get(param)
        .map_or(Ok(Selector::default()), |s| parse(s))
        .map_err(|e| ApiError::bad_request(format!("invalid {param}: {e}")))
}

/// A list, paginated with `limit` and `continue` tokens (`{rv}/{namespace}/{name}` of the last
/// item served). Later pages show current objects under the first page's resourceVersion, so a
/// watch from it replays anything that changed meanwhile.
fn list(
    shared: &Shared,
    filter: &Filter,
    query: &Query,
    metadata_only: bool,
) -> Result<Value, ApiError> {
    let rt = &RESOURCES[filter.res];
    let limit = match query.get("limit") {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        ),
        None => None,
    };
    let (first_rv, after) = match query.get("continue").filter(|t| !t.is_empty()) {
        Some(t) => {
            let bad = || ApiError::bad_request(format!("invalid continue token {t:?}"));
            let mut parts = t.splitn(3, '/');
            let rv = parts
                .next()
                .and_then(|r| r.parse::<u64>().ok())
                .ok_or_else(bad)?;
            let ns = parts.next().ok_or_else(bad)?;
            let name = parts.next().ok_or_else(bad)?;
            (Some(rv), Some((ns, name)))
        }
        None => (None, None),
    };
    let (items, more, current) = shared.read(|s| {
        let (items, more) = s.list(filter, after, limit);
        (items, more, s.rv())
    });
    let rv = first_rv.unwrap_or(current);
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if more && let Some(last) = items.last() {
        let field = |f: &str| last["metadata"][f].as_str().unwrap_or_default().to_string();
        metadata["continue"] = json!(format!("{rv}/{}/{}", field("namespace"), field("name")));
    }
    let (kind, api_version, items) = if metadata_only {
        let items: Vec<Value> = items.iter().map(to_metadata_only).collect();
        (
            "PartialObjectMetadataList".to_string(),
            "meta.k8s.io/v1".to_string(),
            items,
        )
    } else {
        (rt.list_kind(), rt.api_version(), items)
    };
    Ok(json!({"kind": kind, "apiVersion": api_version, "metadata": metadata, "items": items}))
}
