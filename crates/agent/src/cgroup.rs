//! What a process's cgroup path says about its container: the container id (64 hex
//! digits, as Docker, containerd, CRI-O and Podman name them, bare under the cgroupfs
//! driver or wrapped as `docker-ID.scope`, `cri-containerd-ID.scope`, `crio-ID.scope`,
//! `libpod-ID.scope` under systemd) and the Kubernetes pod UID (`pod` and a UUID,
//! `_`-separated inside systemd slice names). Pure: the caller reads
//! `/proc/PID/cgroup`.

/// The ids a cgroup path holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ids {
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
}

/// The cgroup path of a process from its `/proc/PID/cgroup`: the unified (v2)
/// hierarchy's (`0::PATH`) when it is not the root, else the first non-root v1 path.
pub fn path_of(proc_cgroup: &str) -> String {
    let paths: Vec<(&str, &str)> = proc_cgroup
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let id = parts.next()?;
            let _controllers = parts.next()?;
            Some((id, parts.next()?))
        })
        .collect();
    let v2 = paths.iter().find(|(id, _)| *id == "0").map(|(_, p)| *p);
    match v2 {
        Some(p) if p != "/" => p.to_string(),
        _ => paths
            .iter()
            .map(|(_, p)| *p)
            .find(|p| *p != "/")
            .or(v2)
            .unwrap_or("/")
            .to_string(),
    }
}

/// The ids in `path`; the innermost component that holds one wins.
pub fn ids(path: &str) -> Ids {
    let mut out = Ids::default();
    for comp in path.split('/').rev() {
        if out.container_id.is_none() {
            out.container_id = container_id(comp);
        }
        if out.pod_uid.is_none() {
            out.pod_uid = pod_uid(comp);
        }
    }
    out
}

fn container_id(comp: &str) -> Option<String> {
    let stem = comp.strip_suffix(".scope").unwrap_or(comp);
    let id = stem.rsplit(['-', ':']).next()?;
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

fn pod_uid(comp: &str) -> Option<String> {
    let stem = comp.strip_suffix(".slice").unwrap_or(comp);
    let at = stem.rfind("pod")?;
    let uid = stem[at + 3..].replace('_', "-");
    is_uuid(&uid).then_some(uid.to_ascii_lowercase())
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "3f1c0a6d9b4e7f2a1c5d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";
    const UID: &str = "0b3c9d7e-1a2b-4c3d-8e9f-0123456789ab";

    #[test]
    fn container_runtimes_and_kubernetes_layouts() {
        let uid_ = UID.replace('-', "_");
        for (path, cid, uid) in [
            (format!("/docker/{CID}"), Some(CID), None),
            (format!("/system.slice/docker-{CID}.scope"), Some(CID), None),
            (
                format!("/machine.slice/libpod-{CID}.scope/container"),
                Some(CID),
                None,
            ),
            (
                format!("/kubepods/burstable/pod{UID}/{CID}"),
                Some(CID),
                Some(UID),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{CID}.scope"
                ),
                Some(CID),
                Some(UID),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{uid_}.slice/crio-{CID}.scope"),
                Some(CID),
                Some(UID),
            ),
            (
                "/user.slice/user-1000.slice/session-3.scope".to_string(),
                None,
                None,
            ),
            ("/".to_string(), None, None),
        ] {
            let got = ids(&path);
            assert_eq!(got.container_id.as_deref(), cid, "{path}");
            assert_eq!(got.pod_uid.as_deref(), uid, "{path}");
        }
    }

    #[test]
    fn the_unified_path_is_preferred_then_the_first_v1_one() {
        let hybrid = "4:memory:/process_api/abc\n1:cpu:/\n0::/\n";
        assert_eq!(path_of(hybrid), "/process_api/abc");
        let v2 = "4:memory:/x\n0::/kubepods/pod1/c\n";
        assert_eq!(path_of(v2), "/kubepods/pod1/c");
        assert_eq!(path_of("0::/\n"), "/");
        assert_eq!(path_of(""), "/");
    }
}
