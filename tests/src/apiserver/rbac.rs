//! RBAC as the real API server evaluates it, from the Role, ClusterRole, RoleBinding and
//! ClusterRoleBinding objects stored (rbac.authorization.k8s.io/v1): a request is allowed when a
//! rule of a role bound to its user (or one of the user's groups) matches its verb, API group,
//! resource (`plural` or `plural/subresource`) and name. ClusterRoleBindings grant everywhere,
//! RoleBindings only in their own namespace. Pure: plain JSON in, a decision out.
//!
//! Not modelled: aggregated ClusterRoles (`aggregationRule`), escalation checks on writes to
//! RBAC objects, and every default role but `system:discovery` (bound to `system:authenticated`).
use serde_json::Value;

/// An authenticated user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    /// The user a ServiceAccount's token authenticates as.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }
}

/// What a request asks to do, as the authorizer sees it (Kubernetes' `RequestInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attributes {
    Resource {
        /// get, list, watch, create, update, patch, delete, deletecollection.
        verb: String,
        /// "" for the core group.
        group: String,
        /// The plural, e.g. `services`.
        resource: String,
        subresource: Option<String>,
        /// `None`: cluster-scoped, or every namespace.
        namespace: Option<String>,
        /// The object's name; for list and watch, a `metadata.name=` field selector's.
        name: Option<String>,
    },
    /// A path outside the resource tree (`/version`, discovery).
    NonResource { verb: String, path: String },
}

/// Paths every authenticated user may GET: the default ClusterRole `system:discovery`.
const DISCOVERY: &[&str] = &[
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/openapi",
    "/openapi/*",
    "/version",
    "/version/",
];

/// The stored RBAC objects.
#[derive(Debug, Default)]
pub struct Policy {
    pub roles: Vec<Value>,
    pub cluster_roles: Vec<Value>,
    pub role_bindings: Vec<Value>,
    pub cluster_role_bindings: Vec<Value>,
}

fn strings(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

fn has(list: &Value, want: &str) -> bool {
    strings(list).any(|s| s == want || s == "*")
}

fn field<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

/// Whether `subject` of a binding in `binding_ns` ("" for a ClusterRoleBinding) names `user`.
fn names_user(subject: &Value, binding_ns: &str, user: &User) -> bool {
    let name = field(subject, "/name");
    match field(subject, "/kind") {
        "User" => name == user.name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = match field(subject, "/namespace") {
                "" => binding_ns,
                ns => ns,
            };
            !ns.is_empty() && user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// Whether `rule` (one PolicyRule) allows `attrs`.
pub fn rule_allows(rule: &Value, attrs: &Attributes) -> bool {
    match attrs {
        Attributes::Resource {
            verb,
            group,
            resource,
            subresource,
            name,
            ..
        } => {
            let combined = match subresource {
                Some(sub) => format!("{resource}/{sub}"),
                None => resource.clone(),
            };
            let resource_matches = strings(&rule["resources"]).any(|r| {
                r == "*"
                    || r == combined
                    || subresource
                        .as_ref()
                        .is_some_and(|sub| r.strip_prefix("*/") == Some(sub))
            });
            // A rule naming objects never matches a request without a name (create, list).
            let names = &rule["resourceNames"];
            let name_matches = strings(names).next().is_none()
                || name
                    .as_ref()
                    .is_some_and(|n| strings(names).any(|r| r == n));
            has(&rule["verbs"], verb)
                && has(&rule["apiGroups"], group)
                && resource_matches
                && name_matches
        }
        Attributes::NonResource { verb, path } => {
            has(&rule["verbs"], verb)
                && strings(&rule["nonResourceURLs"]).any(|u| url_matches(u, path))
        }
    }
}

/// `*` matches any path, `/prefix/*` any path under the prefix.
fn url_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

impl Policy {
    fn cluster_role(&self, name: &str) -> Option<&Value> {
        self.cluster_roles
            .iter()
            .find(|r| field(r, "/metadata/name") == name)
    }

    fn role(&self, namespace: &str, name: &str) -> Option<&Value> {
        self.roles.iter().find(|r| {
            field(r, "/metadata/namespace") == namespace && field(r, "/metadata/name") == name
        })
    }

    /// The role a binding in `binding_ns` refers to, if it exists.
    fn role_ref(&self, binding: &Value, binding_ns: &str) -> Option<&Value> {
        let name = field(binding, "/roleRef/name");
        match field(binding, "/roleRef/kind") {
            "ClusterRole" => self.cluster_role(name),
            "Role" if !binding_ns.is_empty() => self.role(binding_ns, name),
            _ => None,
        }
    }

    fn binding_allows(&self, binding: &Value, ns: &str, user: &User, attrs: &Attributes) -> bool {
        let bound = binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| names_user(s, ns, user));
        bound
            && self.role_ref(binding, ns).is_some_and(|role| {
                role["rules"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|rule| rule_allows(rule, attrs))
            })
    }

    /// Whether `user` may do `attrs`.
    pub fn allows(&self, user: &User, attrs: &Attributes) -> bool {
        if let Attributes::NonResource { verb, path } = attrs
            && verb == "get"
            && user.groups.iter().any(|g| g == "system:authenticated")
            && DISCOVERY.iter().any(|p| url_matches(p, path))
        {
            return true;
        }
        if self
            .cluster_role_bindings
            .iter()
            .any(|b| self.binding_allows(b, "", user, attrs))
        {
            return true;
        }
        // A RoleBinding grants only inside its namespace, never cluster-wide or across all.
        let Attributes::Resource {
            namespace: Some(ns),
            ..
        } = attrs
        else {
            return false;
        };
        self.role_bindings
            .iter()
            .filter(|b| field(b, "/metadata/namespace") == ns)
            .any(|b| self.binding_allows(b, ns, user, attrs))
    }
}

/// The message of the real API server's 403.
pub fn forbidden_message(user: &User, attrs: &Attributes) -> String {
    match attrs {
        Attributes::Resource {
            verb,
            group,
            resource,
            subresource,
            namespace,
            name,
        } => {
            let what = match (group.as_str(), name) {
                ("", Some(n)) => format!("{resource} \"{n}\""),
                ("", None) => resource.clone(),
                (g, Some(n)) => format!("{resource}.{g} \"{n}\""),
                (g, None) => format!("{resource}.{g}"),
            };
            let combined = match subresource {
                Some(sub) => format!("{resource}/{sub}"),
                None => resource.clone(),
            };
            let scope = match namespace {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".to_owned(),
            };
            format!(
                "{what} is forbidden: User \"{}\" cannot {verb} resource \"{combined}\" in API \
                 group \"{group}\" {scope}",
                user.name
            )
        }
        Attributes::NonResource { verb, path } => {
            format!(
                "forbidden: User \"{}\" cannot {verb} path \"{path}\"",
                user.name
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn res(
        verb: &str,
        group: &str,
        resource: &str,
        ns: Option<&str>,
        name: Option<&str>,
    ) -> Attributes {
        let (resource, subresource) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s.to_owned())),
            None => (resource, None),
        };
        Attributes::Resource {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource,
            namespace: ns.map(str::to_owned),
            name: name.map(str::to_owned),
        }
    }

    fn sa(ns: &str, name: &str) -> Value {
        json!({"kind": "ServiceAccount", "name": name, "namespace": ns})
    }

    fn policy() -> Policy {
        Policy {
            cluster_roles: vec![
                json!({"metadata": {"name": "reader"}, "rules": [
                    {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch"]},
                    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
                ]}),
                json!({"metadata": {"name": "status-writer"}, "rules": [
                    {"apiGroups": [""], "resources": ["services/status"], "verbs": ["patch"]},
                ]}),
                json!({"metadata": {"name": "anything-status"}, "rules": [
                    {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]},
                ]}),
                json!({"metadata": {"name": "metrics"}, "rules": [
                    {"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]},
                ]}),
            ],
            roles: vec![
                json!({"metadata": {"name": "lease", "namespace": "l3lb-system"}, "rules": [
                    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
                    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                     "resourceNames": ["l3lb-allocator"], "verbs": ["get", "update"]},
                ]}),
            ],
            cluster_role_bindings: vec![
                json!({"metadata": {"name": "node-reader"},
                       "roleRef": {"kind": "ClusterRole", "name": "reader"},
                       "subjects": [sa("l3lb-system", "node")]}),
                json!({"metadata": {"name": "ops-status"},
                       "roleRef": {"kind": "ClusterRole", "name": "anything-status"},
                       "subjects": [{"kind": "Group", "name": "ops"}]}),
                json!({"metadata": {"name": "scrapers"},
                       "roleRef": {"kind": "ClusterRole", "name": "metrics"},
                       "subjects": [{"kind": "User", "name": "prometheus"}]}),
            ],
            role_bindings: vec![
                json!({"metadata": {"name": "lease", "namespace": "l3lb-system"},
                       "roleRef": {"kind": "Role", "name": "lease"},
                       "subjects": [sa("l3lb-system", "alloc")]}),
                // A ClusterRole bound in one namespace grants only there; the subject's
                // namespace defaults to the binding's.
                json!({"metadata": {"name": "status", "namespace": "web"},
                       "roleRef": {"kind": "ClusterRole", "name": "status-writer"},
                       "subjects": [{"kind": "ServiceAccount", "name": "alloc"}]}),
                json!({"metadata": {"name": "status", "namespace": "default"},
                       "roleRef": {"kind": "ClusterRole", "name": "status-writer"},
                       "subjects": [sa("l3lb-system", "alloc")]}),
                // Refers to a Role that does not exist: grants nothing.
                json!({"metadata": {"name": "dangling", "namespace": "default"},
                       "roleRef": {"kind": "Role", "name": "nope"},
                       "subjects": [sa("l3lb-system", "node")]}),
            ],
        }
    }

    #[test]
    fn decisions() {
        let p = policy();
        let node = User::service_account("l3lb-system", "node");
        let alloc = User::service_account("l3lb-system", "alloc");
        let web_alloc = User::service_account("web", "alloc");
        let ops = User {
            name: "alice".into(),
            groups: vec!["ops".into()],
        };
        let prometheus = User {
            name: "prometheus".into(),
            groups: vec![],
        };
        let lease = |verb, name| {
            res(
                verb,
                "coordination.k8s.io",
                "leases",
                Some("l3lb-system"),
                name,
            )
        };
        let cases: &[(&User, Attributes, bool)] = &[
            // ClusterRoleBinding: everywhere, only the verbs, groups and resources listed.
            (&node, res("list", "", "services", None, None), true),
            (&node, res("watch", "", "services", Some("a"), None), true),
            (
                &node,
                res("get", "", "services", Some("a"), Some("x")),
                false,
            ),
            (
                &node,
                res("list", "discovery.k8s.io", "endpointslices", None, None),
                true,
            ),
            (&node, res("list", "", "endpointslices", None, None), false),
            (&node, res("list", "", "services/status", None, None), false),
            (
                &node,
                res("patch", "", "services/status", Some("default"), Some("web")),
                false,
            ),
            // RoleBinding to a ClusterRole: only in the binding's namespace.
            (
                &alloc,
                res("patch", "", "services/status", Some("default"), Some("web")),
                true,
            ),
            (
                &alloc,
                res("patch", "", "services/status", Some("other"), Some("web")),
                false,
            ),
            (
                &alloc,
                res("patch", "", "services/status", None, None),
                false,
            ),
            (
                &alloc,
                res("patch", "", "services", Some("default"), Some("web")),
                false,
            ),
            // The subject without a namespace is the binding's namespace's account.
            (
                &web_alloc,
                res("patch", "", "services/status", Some("web"), Some("w")),
                true,
            ),
            (
                &alloc,
                res("patch", "", "services/status", Some("web"), Some("w")),
                false,
            ),
            // resourceNames: only that object, and never a create or list.
            (&alloc, lease("get", Some("l3lb-allocator")), true),
            (&alloc, lease("update", Some("l3lb-allocator")), true),
            (&alloc, lease("update", Some("other")), false),
            (&alloc, lease("list", None), false),
            (&alloc, lease("create", None), true),
            (&alloc, lease("delete", Some("l3lb-allocator")), false),
            (
                &alloc,
                res(
                    "get",
                    "coordination.k8s.io",
                    "leases",
                    Some("default"),
                    Some("l3lb-allocator"),
                ),
                false,
            ),
            (&node, lease("get", Some("l3lb-allocator")), false),
            // Groups, wildcards and */subresource.
            (
                &ops,
                res("update", "apps", "deployments/status", Some("x"), Some("d")),
                true,
            ),
            (
                &ops,
                res("update", "apps", "deployments", Some("x"), Some("d")),
                false,
            ),
            // Non-resource URLs: discovery for every authenticated user, the rest as bound.
            (
                &node,
                Attributes::NonResource {
                    verb: "get".into(),
                    path: "/apis/l3lb.io/v1alpha1".into(),
                },
                true,
            ),
            (
                &node,
                Attributes::NonResource {
                    verb: "get".into(),
                    path: "/version".into(),
                },
                true,
            ),
            (
                &prometheus,
                Attributes::NonResource {
                    verb: "get".into(),
                    path: "/version".into(),
                },
                false,
            ),
            (
                &node,
                Attributes::NonResource {
                    verb: "get".into(),
                    path: "/metrics".into(),
                },
                false,
            ),
            (
                &prometheus,
                Attributes::NonResource {
                    verb: "get".into(),
                    path: "/metrics".into(),
                },
                true,
            ),
            (
                &prometheus,
                Attributes::NonResource {
                    verb: "get".into(),
                    path: "/logs/kubelet".into(),
                },
                true,
            ),
            (
                &prometheus,
                Attributes::NonResource {
                    verb: "post".into(),
                    path: "/metrics".into(),
                },
                false,
            ),
        ];
        for (user, attrs, want) in cases {
            assert_eq!(p.allows(user, attrs), *want, "{} {attrs:?}", user.name);
        }
        // Nobody is allowed anything by an empty policy, but discovery.
        let empty = Policy::default();
        assert!(!empty.allows(&alloc, &lease("create", None)));
    }

    #[test]
    fn forbidden_messages_read_like_the_real_ones() {
        let node = User::service_account("l3lb-system", "l3lb-node");
        assert_eq!(
            forbidden_message(
                &node,
                &res("patch", "", "services/status", Some("default"), Some("web"))
            ),
            "services \"web\" is forbidden: User \"system:serviceaccount:l3lb-system:l3lb-node\" \
             cannot patch resource \"services/status\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(
            forbidden_message(&node, &res("list", "l3lb.io", "l3lbpools", None, None)),
            "l3lbpools.l3lb.io is forbidden: User \"system:serviceaccount:l3lb-system:l3lb-node\" \
             cannot list resource \"l3lbpools\" in API group \"l3lb.io\" at the cluster scope"
        );
    }
}
