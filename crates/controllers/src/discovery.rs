//! API discovery shared by the namespace controller and the garbage collector: every served
//! resource at its most stable version, group by group, so one failing group (an aggregated API
//! that is down) does not hide the others.

use kube::discovery::{self, ApiCapabilities, ApiResource, Scope};
use kube::Client;

/// One served resource with what can be done with it.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub resource: ApiResource,
    pub caps: ApiCapabilities,
}

impl Served {
    /// Whether the resource supports every verb in `verbs`.
    pub fn supports(&self, verbs: &[&str]) -> bool {
        verbs.iter().all(|v| self.caps.supports_operation(v))
    }

    /// Whether objects of the resource live in a namespace.
    pub fn namespaced(&self) -> bool {
        matches!(self.caps.scope, Scope::Namespaced)
    }
}

/// What discovery found: the resources of the groups that answered and the groups that did not.
#[derive(Debug, Default)]
pub(crate) struct Discovered {
    pub resources: Vec<Served>,
    /// `(group, error)` for each group whose discovery failed.
    pub failed: Vec<(String, String)>,
}

/// Discovers every group (the core group included) and its resources at their most stable
/// version; fails only when the list of groups itself cannot be read.
pub(crate) async fn discover(client: &Client) -> Result<Discovered, kube::Error> {
    let groups = client.list_api_groups().await?;
    let names = std::iter::once(String::new()).chain(groups.groups.into_iter().map(|g| g.name));
    let mut found = Discovered::default();
    for name in names {
        match discovery::group(client, &name).await {
            Ok(group) => found.resources.extend(
                group.resources_by_stability().into_iter().map(|(resource, caps)| Served { resource, caps }),
            ),
            Err(e) => found.failed.push((name, e.to_string())),
        }
    }
    Ok(found)
}
