//! `Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid` and `Impersonate-Extra-<key>`:
//! a user allowed the verb `impersonate` on `users`, `groups`, `serviceaccounts`, `uids` and
//! `userextras/<key>` acts as another (kubectl `--as`, `--as-group`), like kube-apiserver's
//! impersonation filter.

use axum::http::HeaderMap;

use super::{forbidden, Attributes, Authorizer};
use crate::error::{ApiError, Result};
use crate::Identity;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA: &str = "impersonate-extra-";

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect()
}

/// The identity `user` acts as: itself without impersonation headers, else the impersonated
/// user after checking every `impersonate` permission it needs.
pub(super) fn apply(authz: &Authorizer, user: Identity, headers: &HeaderMap) -> Result<Identity> {
    let users = values(headers, USER);
    let groups: Vec<String> = values(headers, GROUP).into_iter().map(str::to_string).collect();
    let uids = values(headers, UID);
    let extras: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            let key = k.as_str().strip_prefix(EXTRA)?;
            let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy().into_owned();
            Some((key, v.to_str().ok()?.to_string()))
        })
        .collect();
    let Some(target) = users.first().map(|u| u.to_string()) else {
        if groups.is_empty() && uids.is_empty() && extras.is_empty() {
            return Ok(user);
        }
        let mut requested: Vec<String> = groups.iter().map(|g| format!("{{Group {g}}}")).collect();
        requested.extend(uids.iter().map(|u| format!("{{UID {u}}}")));
        requested.extend(extras.iter().map(|(k, v)| format!("{{Extra {k}={v}}}")));
        return Err(ApiError::Internal(format!(
            "requested [{}] without impersonating a user",
            requested.join(" ")
        )));
    };
    let check = |attrs: Attributes| -> Result<()> {
        let decision = authz.authorize(&user, &attrs);
        if decision.allowed {
            Ok(())
        } else {
            Err(forbidden(&user, &attrs, &decision.reason))
        }
    };
    let service_account = target
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains(':'));
    match service_account {
        Some((ns, name)) => check(Attributes::resource("impersonate", "", "serviceaccounts", ns, name))?,
        None => check(Attributes::resource("impersonate", "", "users", "", &target))?,
    }
    for g in &groups {
        check(Attributes::resource("impersonate", "", "groups", "", g))?;
    }
    for uid in &uids {
        check(Attributes::resource("impersonate", "authentication.k8s.io", "uids", "", uid))?;
    }
    for (key, value) in &extras {
        let attrs = Attributes {
            subresource: key.clone(),
            ..Attributes::resource("impersonate", "authentication.k8s.io", "userextras", "", value)
        };
        check(attrs)?;
    }
    let mut all_groups = groups;
    if let Some((ns, _)) = service_account {
        if all_groups.is_empty() {
            all_groups = vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}")];
        }
    }
    if target == "system:anonymous" {
        if !all_groups.iter().any(|g| g == "system:unauthenticated") {
            all_groups.push("system:unauthenticated".into());
        }
        return Ok(Identity { user: target, groups: all_groups });
    }
    Ok(Identity::new(target, all_groups))
}
