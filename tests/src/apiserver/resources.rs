//! The resource types the test API server serves, and how request paths map onto them.

/// One served resource type (a group/version/plural with its kind).
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a `/status` subresource: writes to the main resource keep the stored status.
    pub has_status: bool,
    /// A custom resource: served only while a CustomResourceDefinition for it is stored.
    pub custom: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether objects of this type are Events (recorded for [`super::ApiServer::events`]).
    pub fn is_event(&self) -> bool {
        self.kind == "Event"
    }

    /// The name its CustomResourceDefinition must have.
    pub fn crd_name(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }
}

/// The type CustomResourceDefinitions are stored as.
pub const CRD_KIND: (&str, &str) = ("apiextensions.k8s.io/v1", "CustomResourceDefinition");

const fn rt(
    group: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    has_status: bool,
) -> ResourceType {
    ResourceType {
        group,
        version: "v1",
        plural,
        kind,
        namespaced,
        has_status,
        custom: false,
    }
}

/// A custom resource type (with a status subresource: its CRD declares one).
const fn custom(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> ResourceType {
    ResourceType {
        group,
        version,
        plural,
        kind,
        namespaced,
        has_status: true,
        custom: true,
    }
}

/// Every served type; an index into this table identifies a type inside the store.
pub static RESOURCES: &[ResourceType] = &[
    rt("", "namespaces", "Namespace", false, true),
    rt("", "nodes", "Node", false, true),
    rt("", "pods", "Pod", true, true),
    rt("", "services", "Service", true, true),
    rt("", "endpoints", "Endpoints", true, false),
    rt("", "configmaps", "ConfigMap", true, false),
    rt("", "secrets", "Secret", true, false),
    rt("", "serviceaccounts", "ServiceAccount", true, false),
    rt("", "events", "Event", true, false),
    rt(
        "discovery.k8s.io",
        "endpointslices",
        "EndpointSlice",
        true,
        false,
    ),
    rt("coordination.k8s.io", "leases", "Lease", true, false),
    rt("events.k8s.io", "events", "Event", true, false),
    // The workloads l3lb ships (deploy/base): applied with server-side dry runs in tests.
    rt("apps", "daemonsets", "DaemonSet", true, true),
    rt("apps", "deployments", "Deployment", true, true),
    rt(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        true,
    ),
    // RBAC, enforced for clients with a ServiceAccount token (see `auth`).
    rt("rbac.authorization.k8s.io", "roles", "Role", true, false),
    rt(
        "rbac.authorization.k8s.io",
        "clusterroles",
        "ClusterRole",
        false,
        false,
    ),
    rt(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "RoleBinding",
        true,
        false,
    ),
    rt(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        false,
    ),
    // l3lb's address pools (deploy/base/crd.yaml), once their CRD is applied.
    custom("l3lb.io", "v1alpha1", "l3lbpools", "L3lbPool", false),
];

/// Index of the type served at `group/version/plural`.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Index of the type with this `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.api_version() == api_version && r.kind == kind)
}

/// A parsed resource request path.
#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    pub res: usize,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The legacy `/watch/` path form was used.
    pub watch_path: bool,
}

/// What a request path addresses.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Version,
    /// `/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`.
    Discovery(Vec<String>),
    /// `/openapi/v3` and below: the segments after it.
    OpenApi(Vec<String>),
    /// `/openapi/v2`.
    OpenApiV2,
    Resource(Route),
}

/// Parses an API path; `None` means nothing is served there.
pub fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Some(Target::Version),
        ["openapi", "v2"] => return Some(Target::OpenApiV2),
        ["openapi", "v3", rest @ ..] => {
            return Some(Target::OpenApi(
                rest.iter().map(|s| s.to_string()).collect(),
            ));
        }
        ["api"] | ["apis"] | ["api", "v1"] => {
            return Some(Target::Discovery(
                segs.iter().map(|s| s.to_string()).collect(),
            ));
        }
        ["apis", group, version]
            if RESOURCES
                .iter()
                .any(|r| r.group == *group && r.version == *version) =>
        {
            return Some(Target::Discovery(
                segs.iter().map(|s| s.to_string()).collect(),
            ));
        }
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (watch_path, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    // `namespaces/{ns}/{plural}...` unless it is a namespace's own subresource.
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "status" | "finalize") => (
            Some(ns.to_string()),
            std::iter::once(*plural)
                .chain(tail.iter().copied())
                .collect(),
        ),
        rest => (None, rest.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    let res = by_path(group, version, plural)?;
    let rtype = &RESOURCES[res];
    if namespace.is_some() && !rtype.namespaced {
        return None;
    }
    if rtype.namespaced && namespace.is_none() && name.is_some() {
        return None;
    }
    if name.as_deref() == Some("") || namespace.as_deref() == Some("") {
        return None;
    }
    Some(Target::Resource(Route {
        res,
        namespace,
        name,
        subresource,
        watch_path,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> Route {
        match parse_path(path) {
            Some(Target::Resource(r)) => r,
            other => panic!("{path}: expected a resource route, got {other:?}"),
        }
    }

    #[test]
    fn parses_namespaced_and_cluster_paths() {
        let r = route("/api/v1/namespaces/default/services/web/status");
        assert_eq!(RESOURCES[r.res].plural, "services");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("status"));

        let r = route("/apis/discovery.k8s.io/v1/endpointslices");
        assert_eq!(RESOURCES[r.res].kind, "EndpointSlice");
        assert_eq!(r.namespace, None);

        let r = route("/api/v1/namespaces/kube-system");
        assert_eq!(RESOURCES[r.res].kind, "Namespace");
        assert_eq!(r.name.as_deref(), Some("kube-system"));

        let r = route("/api/v1/namespaces/kube-system/status");
        assert_eq!(r.subresource.as_deref(), Some("status"));

        let r = route("/api/v1/watch/namespaces/a/services");
        assert!(r.watch_path);
    }

    #[test]
    fn rejects_unknown_or_misscoped_paths() {
        assert_eq!(parse_path("/api/v1/widgets"), None);
        assert_eq!(parse_path("/api/v1/namespaces/a/nodes"), None);
        assert_eq!(parse_path("/api/v1/services/web"), None);
        assert_eq!(parse_path("/healthz"), None);
        assert_eq!(parse_path("/apis/nope.io/v1"), None);
        assert_eq!(
            parse_path("/openapi/v3/apis/apps/v1"),
            Some(Target::OpenApi(vec![
                "apis".into(),
                "apps".into(),
                "v1".into()
            ]))
        );
    }
}
