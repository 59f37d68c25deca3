//! Which Services are l3lb's: type LoadBalancer, and `spec.loadBalancerClass` naming l3lb's class
//! (or no class, when l3lb is the cluster's default implementation). Services of another class
//! belong to another implementation: l3lb neither serves, allocates for nor refuses them. Pure.
use k8s_openapi::api::core::v1::Service;

/// The class l3lb answers to unless `--load-balancer-class` says otherwise.
pub const DEFAULT_CLASS: &str = "l3lb.io/l3lb";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassFilter {
    /// `spec.loadBalancerClass` of the Services l3lb handles.
    pub class: String,
    /// Also handle LoadBalancer Services without a class.
    pub default: bool,
}

impl Default for ClassFilter {
    fn default() -> Self {
        Self {
            class: DEFAULT_CLASS.to_owned(),
            default: false,
        }
    }
}

impl ClassFilter {
    /// Whether `svc` is a LoadBalancer Service l3lb handles.
    pub fn owns(&self, svc: &Service) -> bool {
        let Some(spec) = &svc.spec else { return false };
        if spec.type_.as_deref() != Some("LoadBalancer") {
            return false;
        }
        match spec.load_balancer_class.as_deref() {
            None | Some("") => self.default,
            Some(class) => class == self.class,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn svc(type_: &str, class: Option<&str>) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": "a", "name": "s"},
            "spec": {"type": type_, "loadBalancerClass": class},
        }))
        .unwrap()
    }

    #[test]
    fn ours_by_class_and_default() {
        let only_ours = ClassFilter::default();
        let also_default = ClassFilter {
            default: true,
            ..ClassFilter::default()
        };
        let cases = [
            // (type, class, owned without --default-load-balancer, owned with it)
            ("LoadBalancer", Some(DEFAULT_CLASS), true, true),
            ("LoadBalancer", None, false, true),
            ("LoadBalancer", Some("metallb.io/metallb"), false, false),
            ("ClusterIP", Some(DEFAULT_CLASS), false, false),
            ("NodePort", None, false, false),
        ];
        for (type_, class, want, want_default) in cases {
            let s = svc(type_, class);
            assert_eq!(only_ours.owns(&s), want, "{type_} {class:?}");
            assert_eq!(
                also_default.owns(&s),
                want_default,
                "{type_} {class:?} default"
            );
        }
        assert!(!only_ours.owns(&Service::default()), "no spec");
    }
}
