//! Resource attributes: what a series is about, by the OpenTelemetry semantic
//! conventions. One resource per traced process (`service.name`, `process.pid`,
//! `process.executable.path`, `process.runtime.name`/`version`, `container.id`,
//! `k8s.pod.uid`, `host.name`) and one for the agent itself. The environment has its
//! say as the OpenTelemetry SDKs give it: `OTEL_SERVICE_NAME` names every service,
//! `OTEL_RESOURCE_ATTRIBUTES` (`key=value,…`, values percent-encoded) adds attributes
//! that the process's own facts do not already set.

use std::fmt;

/// An attribute value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AttrValue {
    Str(String),
    Int(i64),
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Str(s) => f.write_str(s),
            AttrValue::Int(i) => write!(f, "{i}"),
        }
    }
}

/// A resource: attributes in a fixed order (the semantic conventions' first, then
/// the environment's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    pub attributes: Vec<(String, AttrValue)>,
}

impl Resource {
    pub fn get(&self, key: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn set(&mut self, key: &str, value: AttrValue) {
        match self.attributes.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.attributes.push((key.to_string(), value)),
        }
    }

    fn set_if_absent(&mut self, key: &str, value: AttrValue) {
        if self.get(key).is_none() {
            self.attributes.push((key.to_string(), value));
        }
    }
}

/// The attributes that tell one process's series from another's in Prometheus,
/// where a resource is not a separate thing: these become labels on every sample
/// (the others are on `target_info`).
pub const IDENTIFYING: &[&str] = &["service.name", "process.pid", "container.id", "k8s.pod.uid"];

/// What the agent knows of a traced process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessFacts {
    pub pid: u32,
    /// The executable as the process sees it (inside its mount namespace).
    pub executable: String,
    /// The main module's path from the Go build info (`github.com/x/y`), if any.
    pub main_module: Option<String>,
    /// `go1.25.5`.
    pub go_version: Option<String>,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
}

/// The environment's part: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceEnv {
    pub service_name: Option<String>,
    pub attributes: Vec<(String, String)>,
    pub host_name: Option<String>,
}

impl ResourceEnv {
    /// Reads the variables through `var` (`std::env::var` in the agent, a table in
    /// tests) and the host name from the kernel.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> ResourceEnv {
        ResourceEnv {
            service_name: var("OTEL_SERVICE_NAME").filter(|s| !s.is_empty()),
            attributes: var("OTEL_RESOURCE_ATTRIBUTES")
                .map(|s| parse_key_values(&s))
                .unwrap_or_default(),
            host_name: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
        }
    }

    fn finish(&self, mut r: Resource) -> Resource {
        if let Some(h) = &self.host_name {
            r.set_if_absent("host.name", AttrValue::Str(h.clone()));
        }
        for (k, v) in &self.attributes {
            if k == "service.name" {
                if self.service_name.is_none() {
                    r.set("service.name", AttrValue::Str(v.clone()));
                }
                continue;
            }
            r.set_if_absent(k, AttrValue::Str(v.clone()));
        }
        if let Some(s) = &self.service_name {
            r.set("service.name", AttrValue::Str(s.clone()));
        }
        r
    }

    /// A traced process's resource.
    pub fn process(&self, p: &ProcessFacts) -> Resource {
        let mut r = Resource::default();
        r.set("service.name", AttrValue::Str(service_name(p)));
        r.set("process.pid", AttrValue::Int(i64::from(p.pid)));
        r.set(
            "process.executable.path",
            AttrValue::Str(p.executable.clone()),
        );
        r.set("process.runtime.name", AttrValue::Str("go".into()));
        if let Some(v) = &p.go_version {
            r.set("process.runtime.version", AttrValue::Str(v.clone()));
        }
        if let Some(c) = &p.container_id {
            r.set("container.id", AttrValue::Str(c.clone()));
        }
        if let Some(u) = &p.pod_uid {
            r.set("k8s.pod.uid", AttrValue::Str(u.clone()));
        }
        self.finish(r)
    }

    /// The agent's own resource. `OTEL_SERVICE_NAME` names the traced services, not
    /// the agent, so the agent stays `gotap`.
    pub fn agent(&self, pid: u32) -> Resource {
        let mut r = Resource::default();
        r.set("service.name", AttrValue::Str("gotap".into()));
        r.set("process.pid", AttrValue::Int(i64::from(pid)));
        r.set(
            "service.version",
            AttrValue::Str(env!("CARGO_PKG_VERSION").into()),
        );
        let mut r = ResourceEnv {
            service_name: None,
            ..self.clone()
        }
        .finish(r);
        r.set("service.name", AttrValue::Str("gotap".into()));
        r
    }
}

/// The main module's path; without one (`go build x.go`), the SDKs' fallback
/// `unknown_service:` and the executable's name.
fn service_name(p: &ProcessFacts) -> String {
    match p.main_module.as_deref() {
        Some(m) if !m.is_empty() && m != "command-line-arguments" => m.to_string(),
        _ => {
            let exe = p.executable.rsplit('/').next().unwrap_or("");
            format!("unknown_service:{exe}")
        }
    }
}

/// `key=value,key2=value2` with percent-encoded values, as `OTEL_RESOURCE_ATTRIBUTES`
/// and `OTEL_EXPORTER_OTLP_HEADERS` write them; malformed pairs are skipped, as the
/// specification asks.
pub fn parse_key_values(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            if k.is_empty() {
                return None;
            }
            Some((k.to_string(), percent_decode(v.trim())?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> ProcessFacts {
        ProcessFacts {
            pid: 42,
            executable: "/srv/bin/api".into(),
            main_module: Some("example.com/shop/api".into()),
            go_version: Some("go1.25.5".into()),
            container_id: Some("c0ffee".into()),
            pod_uid: None,
        }
    }

    fn env(vars: &[(&str, &str)]) -> ResourceEnv {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut e =
            ResourceEnv::from_env(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()));
        e.host_name = Some("node-1".into());
        e
    }

    #[test]
    fn a_process_resource_follows_the_semantic_conventions() {
        let r = env(&[]).process(&facts());
        let s = |k| r.get(k).map(ToString::to_string);
        assert_eq!(s("service.name").as_deref(), Some("example.com/shop/api"));
        assert_eq!(r.get("process.pid"), Some(&AttrValue::Int(42)));
        assert_eq!(
            s("process.executable.path").as_deref(),
            Some("/srv/bin/api")
        );
        assert_eq!(s("process.runtime.name").as_deref(), Some("go"));
        assert_eq!(s("process.runtime.version").as_deref(), Some("go1.25.5"));
        assert_eq!(s("container.id").as_deref(), Some("c0ffee"));
        assert_eq!(s("host.name").as_deref(), Some("node-1"));
        assert_eq!(r.get("k8s.pod.uid"), None);
    }

    #[test]
    fn the_environment_names_the_service_and_adds_but_does_not_override() {
        let r = env(&[
            ("OTEL_SERVICE_NAME", "checkout"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,process.pid=1,service.name=x,team=a%2Cb,bad",
            ),
        ])
        .process(&facts());
        assert_eq!(r.get("service.name").unwrap().to_string(), "checkout");
        assert_eq!(r.get("process.pid"), Some(&AttrValue::Int(42)));
        assert_eq!(r.get("deployment.environment").unwrap().to_string(), "prod");
        assert_eq!(r.get("team").unwrap().to_string(), "a,b");
        let r = env(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs")]).process(&facts());
        assert_eq!(r.get("service.name").unwrap().to_string(), "from-attrs");
    }

    #[test]
    fn without_a_module_the_service_is_unknown_by_its_executable() {
        let mut f = facts();
        f.main_module = Some("command-line-arguments".into());
        let r = env(&[]).process(&f);
        assert_eq!(
            r.get("service.name").unwrap().to_string(),
            "unknown_service:api"
        );
        let a = env(&[("OTEL_SERVICE_NAME", "checkout")]).agent(7);
        assert_eq!(a.get("service.name").unwrap().to_string(), "gotap");
    }

    #[test]
    fn key_values_skip_what_is_malformed() {
        assert_eq!(
            parse_key_values("a=1, b = x%20y ,=z,c,d=%zz"),
            vec![("a".into(), "1".into()), ("b".into(), "x y".into())]
        );
    }
}
